"""Start several commands at the same moment, so that they really race.

Eight ``python -m alembic upgrade head`` started one after the other on two
CPU cores would mostly not overlap: each spends half a second importing before
it touches the database.  :func:`run_together` forks a launcher from the warm
interpreter of that Python (``warm_python.py``), which has imported what the
commands import; the launcher forks one process per command; each waits at a
barrier (a file that appears), then runs
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
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

# The warm interpreter imports this file from its own folder, without harness's parent.
try:
    from harness.warm_python import become, warm
except ImportError:
    from warm_python import become, warm  # type: ignore[no-redef]


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
        launched: list[subprocess.CompletedProcess[str]] = []

        def launch_warm() -> None:
            launched.append(warm(python).together(plan, cwd=cwd, env=env, timeout=timeout))

        launcher = threading.Thread(target=launch_warm, daemon=True)
        launcher.start()

        deadline = time.monotonic() + timeout
        while not all(Path(run["ready"]).exists() for run in runs):
            if not launcher.is_alive():
                raise RuntimeError(f"the launcher exited before the race:\n{_output(launched)}")
            if time.monotonic() > deadline:
                # The warm interpreter's own timeout kills the launcher and its children.
                raise TimeoutError("the processes did not all reach the barrier")
            time.sleep(0.005)
        released = time.monotonic()
        (folder / "go").touch()
        launcher.join(max(1.0, deadline - time.monotonic()))
        seconds = time.monotonic() - released
        if not launched or launched[0].returncode != 0:
            raise RuntimeError(f"the launcher failed:\n{_output(launched)}")

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


def _output(launched: list[subprocess.CompletedProcess[str]]) -> str:
    """What the launcher printed, if it got as far as exiting."""
    if not launched:
        return "(the launcher did not finish)"
    return launched[0].stdout + launched[0].stderr


def launch(plan_file: Path) -> None:
    """In the warm interpreter's fork: fork one process per run, wait for them all."""
    plan = json.loads(plan_file.read_text())
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
