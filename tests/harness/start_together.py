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

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

# This file runs as a script (the launcher): its folder is on sys.path, not harness's parent.
try:
    from harness.warm_python import WARM_PYTHON, become, preload
except ImportError:
    from warm_python import WARM_PYTHON, become, preload  # type: ignore[no-redef]


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
        launcher = Launcher(python, plan, cwd=cwd, env=env, timeout=timeout)

        deadline = time.monotonic() + timeout
        while not all(Path(run["ready"]).exists() for run in runs):
            if launcher.finished():
                _, output = launcher.wait(1.0)
                raise RuntimeError(f"the launcher exited before the race:\n{output}")
            if time.monotonic() > deadline:
                launcher.kill()
                raise TimeoutError("the processes did not all reach the barrier")
            time.sleep(0.005)
        released = time.monotonic()
        (folder / "go").touch()
        status, launcher_output = launcher.wait(max(1.0, deadline - time.monotonic()))
        seconds = time.monotonic() - released
        if status != 0:
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


class Launcher:
    """The launcher of one race: forked from this worker's warm Python when the commands
    are this interpreter's (no imports to wait for), else started as a new process."""

    def __init__(self, python: str, plan: Path, *, cwd: Path, env: dict[str, str], timeout: float):
        self._process: subprocess.Popen[str] | None = None
        self._result: subprocess.CompletedProcess[str] | None = None
        self._thread: threading.Thread | None = None
        if python == sys.executable:
            self._thread = threading.Thread(
                target=self._warm, args=(plan, cwd, env, timeout), daemon=True
            )
            self._thread.start()
        else:
            self._process = subprocess.Popen(
                [python, __file__, str(plan)],
                cwd=cwd,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )

    def _warm(self, plan: Path, cwd: Path, env: dict[str, str], timeout: float) -> None:
        self._result = WARM_PYTHON.together(plan, cwd=cwd, env=env, timeout=timeout)

    def finished(self) -> bool:
        if self._process is not None:
            return self._process.poll() is not None
        assert self._thread is not None
        return not self._thread.is_alive()

    def wait(self, timeout: float) -> tuple[int, str]:
        """The launcher's exit status and output, once it is done."""
        if self._process is not None:
            output, _ = self._process.communicate(timeout=timeout)
            return self._process.returncode, output
        assert self._thread is not None
        self._thread.join(timeout)
        if self._result is None:
            return 1, "the warm launcher did not finish"
        return self._result.returncode, self._result.stdout + self._result.stderr

    def kill(self) -> None:
        if self._process is not None:
            self._process.kill()


def launch(plan_file: Path) -> None:
    """Import once, fork one process per run, wait for them all."""
    plan = json.loads(plan_file.read_text())
    preload()
    children = {}
    barrier = Path(plan["barrier"])
    for run in plan["runs"]:
        pid = os.fork()
        if pid == 0:  # the child: never returns
            command = {**run, "cwd": os.getcwd(), "env": {**os.environ, **run["env"]}}
            become(command, before=lambda run=run: _ready(barrier, run))
        children[pid] = run
    for _ in children:
        pid, wait_status = os.wait()
        Path(children[pid]["status"]).write_text(str(os.waitstatus_to_exitcode(wait_status)))


def _ready(barrier: Path, run: dict[str, object]) -> None:
    """In a forked child, all set: say so, then wait at the barrier."""
    Path(str(run["ready"])).touch()
    while not barrier.exists():
        time.sleep(0.001)


if __name__ == "__main__":
    launch(Path(sys.argv[1]))
