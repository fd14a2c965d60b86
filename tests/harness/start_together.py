"""Start several commands at the same moment, so that they really race.

Eight ``python -m alembic upgrade head`` started one after the other on two
CPU cores would mostly not overlap: each spends half a second importing before
it touches the database.  :func:`run_together` starts one interpreter (this
file as a script) that imports what the commands import, then forks one
process per command; each waits at a barrier (a file that appears), then runs
``python -m MODULE ARGS`` exactly as the command line would, in its own
process, with its own database connections, exit status and output.  The
imports are paid once, not eight times: the race, not Python's start-up, is
what the tests and benchmarks measure.

    results, seconds = run_together(python, [["-m", "alembic", "upgrade", "head"]] * 8,
                                    cwd=project, env=env)
"""

from __future__ import annotations

import importlib
import json
import os
import runpy
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path


def run_together(
    python: str,
    commands: Sequence[Sequence[str]],
    *,
    cwd: Path,
    env: dict[str, str],
    envs: Sequence[dict[str, str]] | None = None,
    timeout: float = 300,
) -> tuple[list[subprocess.CompletedProcess[str]], float]:
    """Run each ``python -m MODULE ARGS`` of ``commands``, all released at once.

    ``envs``, one per command, adds to ``env`` (each its own database, say).
    Returns the finished processes, in order, and the seconds from the release
    to the exit of the last one.
    """
    with tempfile.TemporaryDirectory(prefix="start-together-") as tmp:
        folder = Path(tmp)
        runs = []
        for number, command in enumerate(commands):
            assert command[0] == "-m", f"expected ['-m', module, ...], got {command}"
            runs.append(
                {
                    "module": command[1],
                    "args": list(command[2:]),
                    "env": envs[number] if envs is not None else {},
                    "ready": str(folder / f"ready-{number}"),
                    "out": str(folder / f"{number}.out"),
                    "err": str(folder / f"{number}.err"),
                    "status": str(folder / f"{number}.status"),
                }
            )
        plan = folder / "plan.json"
        plan.write_text(json.dumps({"barrier": str(folder / "go"), "runs": runs}))
        launcher = subprocess.Popen(
            [python, __file__, str(plan)],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

        deadline = time.monotonic() + timeout
        while not all(Path(run["ready"]).exists() for run in runs):
            if launcher.poll() is not None:
                output = launcher.stdout.read() if launcher.stdout else ""
                raise RuntimeError(f"the launcher exited before the race:\n{output}")
            if time.monotonic() > deadline:
                launcher.kill()
                raise TimeoutError("the processes did not all reach the barrier")
            time.sleep(0.005)
        released = time.monotonic()
        (folder / "go").touch()
        launcher_output, _ = launcher.communicate(timeout=max(1.0, deadline - time.monotonic()))
        seconds = time.monotonic() - released
        if launcher.returncode != 0:
            raise RuntimeError(f"the launcher failed:\n{launcher_output}")

        results = []
        for run, command in zip(runs, commands, strict=True):
            results.append(
                subprocess.CompletedProcess(
                    [python, *command],
                    int(Path(run["status"]).read_text()),
                    Path(run["out"]).read_text(),
                    Path(run["err"]).read_text(),
                )
            )
        return results, seconds


def _launch(plan_file: Path) -> None:
    """Import once, fork one process per run, wait for them all."""
    plan = json.loads(plan_file.read_text())
    # What `python -m alembic` / `python -m <package>` import before they touch
    # the database: the forked processes start with it done.
    import alembic.command  # noqa: F401
    import alembic.config  # noqa: F401
    import sqlalchemy.orm  # noqa: F401

    for driver in ("psycopg", "asyncpg", "aiosqlite", "sqlalchemy.ext.asyncio"):
        try:
            importlib.import_module(driver)
        except ImportError:
            pass
    children = {}
    for run in plan["runs"]:
        pid = os.fork()
        if pid == 0:  # the child: never returns
            _run(Path(plan["barrier"]), run)
        children[pid] = run
    for _ in children:
        pid, wait_status = os.wait()
        Path(children[pid]["status"]).write_text(str(os.waitstatus_to_exitcode(wait_status)))


def _run(barrier: Path, run: dict[str, object]) -> None:
    """In a forked process: wait at the barrier, then be `python -m MODULE ARGS`."""
    status = 1
    try:
        out = os.open(str(run["out"]), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        err = os.open(str(run["err"]), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(out, 1)
        os.dup2(err, 2)
        os.environ.update(run["env"])  # type: ignore[arg-type]
        Path(str(run["ready"])).touch()
        while not barrier.exists():
            time.sleep(0.001)
        # Exactly what `python -m module args` does: cwd first on sys.path.
        sys.path[0] = os.getcwd()
        sys.argv = [str(run["module"]), *run["args"]]  # type: ignore[misc]
        try:
            runpy.run_module(str(run["module"]), run_name="__main__", alter_sys=True)
            status = 0
        except SystemExit as done:
            if done.code is None or isinstance(done.code, int):
                status = done.code or 0
            else:
                print(done.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


if __name__ == "__main__":
    _launch(Path(sys.argv[1]))
