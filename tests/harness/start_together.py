"""Start several commands at the same moment, so that they really race.

Eight ``python -m alembic upgrade head`` started one after the other on two
CPU cores would mostly not overlap: each spends half a second importing before
it touches the database.  :func:`run_together` starts every process through
this file as a script, which imports what the command will import, reports
ready, waits at a barrier (a file that appears), then runs ``python -m MODULE
ARGS`` in the same process, exactly as the command line would.

    results, seconds = run_together(python, [["-m", "alembic", "upgrade", "head"]] * 8,
                                    cwd=project, env=env)
"""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
import tempfile
import time
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
        barrier = Path(tmp) / "go"
        started = []
        for number, command in enumerate(commands):
            assert command[0] == "-m", f"expected ['-m', module, ...], got {command}"
            ready = Path(tmp) / f"ready-{number}"
            out, err = (Path(tmp) / f"{number}.{name}" for name in ("out", "err"))
            args = [python, __file__, str(barrier), str(ready), *command[1:]]
            with out.open("w") as stdout, err.open("w") as stderr:
                own_env = {**env, **(envs[number] if envs is not None else {})}
                process = subprocess.Popen(args, cwd=cwd, env=own_env, stdout=stdout, stderr=stderr)
            started.append((args, process, ready, out, err))

        deadline = time.monotonic() + timeout
        while not all(ready.exists() or p.poll() is not None for _, p, ready, _, _ in started):
            if time.monotonic() > deadline:
                raise TimeoutError("the processes did not all reach the barrier")
            time.sleep(0.01)
        released = time.monotonic()
        barrier.touch()

        results = []
        for args, process, _, out, err in started:
            returncode = process.wait(timeout=max(1.0, deadline - time.monotonic()))
            results.append(
                subprocess.CompletedProcess(args, returncode, out.read_text(), err.read_text())
            )
        return results, time.monotonic() - released


def _main(barrier: Path, ready: Path, module: str, args: list[str]) -> None:
    # What `python -m alembic` / `python -m <package>` import before they touch
    # the database: importing it now means the race starts at the barrier.
    import alembic.command  # noqa: F401
    import alembic.config  # noqa: F401
    import sqlalchemy.orm  # noqa: F401

    try:
        import psycopg  # noqa: F401
    except ImportError:
        pass
    ready.touch()
    while not barrier.exists():
        time.sleep(0.001)
    # Exactly what `python -m module args` does: cwd first on sys.path.
    sys.path[0] = os.getcwd()
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    _main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4:])
