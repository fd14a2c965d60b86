"""Run ``python -m MODULE ARGS`` as its own process, without paying the imports each time.

Every ``python -m alembic ...`` or ``python -m <package> db ...`` a test runs
spends half a second importing SQLAlchemy and Alembic before it does anything;
a suite runs dozens.  :class:`WarmPython` keeps one interpreter (this file as a
script) that has imported them, and forks it for each command: the child sets
the command's working directory, environment (``PYTHONPATH`` included) and
arguments, then runs the module exactly as ``python -m`` would, in its own
process, with its own exit status and output.  The imports are paid once per
test worker.  ``start_together.py`` forks the same way, to start commands at
one instant.

Each interpreter gets its own warm one (:func:`warm`): this suite's, or a
virtual environment's where the project is installed; the warm one imports
what that environment has, so an import that fails there fails in the command.
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import runpy
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

#: What ``python -m alembic`` and ``python -m <package>`` import before they
#: touch a database; the forked commands start with it done.
PRELOADED = (
    "sqlalchemy.orm",
    "sqlalchemy.ext.asyncio",
    "alembic.command",
    "alembic.config",
    "alembic.autogenerate",
    "psycopg",
    "asyncpg",
    "aiosqlite",
    "platformdirs",
    "filelock",
)


def preload() -> None:
    for module in PRELOADED:
        try:
            importlib.import_module(module)
        except ImportError:
            pass


def enter(run: dict[str, Any]) -> None:
    """In a forked child: take the run's working directory, environment and output files."""
    os.chdir(str(run["cwd"]))
    for fd, path, flags in (
        (0, os.devnull, os.O_RDONLY),
        (1, run["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
        (2, run["err"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
    ):
        os.dup2(os.open(str(path), flags), fd)
    os.environ.clear()
    os.environ.update(run["env"])
    sys.dont_write_bytecode = bool(os.environ.get("PYTHONDONTWRITEBYTECODE"))


def become(run: dict[str, Any], before: Callable[[], None] | None = None) -> None:
    """In a forked child: be ``python -m MODULE ARGS`` with the run's cwd and environment.

    ``before`` runs once all is set, just before the module (start_together's
    barrier).  Never returns: exits with the command's status.
    """
    status = 1
    try:
        enter(run)
        extra = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        # What `python -m` does: the working directory first, then PYTHONPATH.
        sys.path[:1] = [os.getcwd(), *extra]
        importlib.invalidate_caches()
        if before is not None:
            before()
        sys.argv = [str(run["module"]), *run["args"]]
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
        exit_as_python_does(status)


def exit_as_python_does(status: int) -> None:
    """End a forked child as an interpreter ends: non-daemon threads joined, atexit run."""
    try:
        threading._shutdown()  # type: ignore[attr-defined]
        atexit._run_exitfuncs()
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


def launch_together(run: dict[str, Any]) -> None:
    """In a forked child: be start_together's launcher for the run's plan; never returns."""
    status = 1
    try:
        enter(run)
        from start_together import launch  # this script's folder: harness/

        launch(Path(run["together"]))
        status = 0
    except BaseException:
        traceback.print_exc()
    finally:
        exit_as_python_does(status)


class WarmPython:
    """A warm interpreter that forks one process per ``python -m`` command."""

    def __init__(self, python: str) -> None:
        self.python = python
        self._process: subprocess.Popen[str] | None = None
        self._installed_at_start: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    def run(
        self,
        module: str,
        args: list[str],
        *,
        cwd: Path,
        env: dict[str, str],
        timeout: float,
    ) -> subprocess.CompletedProcess[str]:
        """``python -m module *args`` in ``cwd`` with exactly ``env``; its exit and output."""
        command = [self.python, "-m", module, *args]
        return self._request({"module": module, "args": args}, command, cwd, env, timeout)

    def together(
        self, plan: Path, *, cwd: Path, env: dict[str, str], timeout: float
    ) -> subprocess.CompletedProcess[str]:
        """start_together's launcher for ``plan``, forked warm (see start_together.py)."""
        command = [self.python, "start_together.py", str(plan)]
        return self._request({"together": str(plan)}, command, cwd, env, timeout)

    def _request(
        self,
        request: dict[str, Any],
        command: list[str],
        cwd: Path,
        env: dict[str, str],
        timeout: float,
    ) -> subprocess.CompletedProcess[str]:
        """Have the warm interpreter fork ``request``; ``command`` is what it stands for."""
        with self._lock, tempfile.TemporaryDirectory(prefix="warm-python-") as tmp:
            run = {
                **request,
                "cwd": str(cwd),
                "env": env,
                "out": str(Path(tmp) / "out"),
                "err": str(Path(tmp) / "err"),
                "timeout": timeout,
            }
            process = self._zygote()
            assert process.stdin is not None and process.stdout is not None
            process.stdin.write(json.dumps(run) + "\n")
            process.stdin.flush()
            reply = process.stdout.readline()
            if not reply:
                self._process = None
                raise RuntimeError("the warm Python process died")
            status = json.loads(reply)["status"]
            if status is None:
                raise subprocess.TimeoutExpired(command, timeout)
            return subprocess.CompletedProcess(
                command,
                status,
                Path(run["out"]).read_text(),
                Path(run["err"]).read_text(),
            )

    def _installed(self) -> frozenset[str]:
        """What is installed for this Python: its site-packages' distributions and .pth files.

        An interpreter reads .pth files (editable installs) only as it starts.
        """
        prefix = Path(self.python).parent.parent
        found = prefix.glob("lib/python3*/site-packages/*")
        return frozenset(p.name for p in found if p.suffix in (".pth", ".dist-info"))

    def _zygote(self) -> subprocess.Popen[str]:
        installed = self._installed()
        if self._process is not None and installed != self._installed_at_start:
            self.close()  # something was installed since: start anew, as a new command would
        if self._process is None or self._process.poll() is not None:
            self._installed_at_start = installed
            self._process = subprocess.Popen(
                [self.python, __file__],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
            )
        return self._process

    def close(self) -> None:
        if self._process is not None:
            if self._process.stdin is not None:
                self._process.stdin.close()
            self._process.wait(timeout=10)
            if self._process.stdout is not None:
                self._process.stdout.close()
            self._process = None


def serve(requests: IO[str], replies: IO[str]) -> None:
    """The zygote: one JSON request a line, one forked child each, its status replied."""
    preload()
    for line in requests:
        run = json.loads(line)
        pid = os.fork()
        if pid == 0:
            os.setpgid(0, 0)  # a group of its own: a timeout kills what it started too
            if "together" in run:
                launch_together(run)
            become(run)
        deadline = time.monotonic() + float(run["timeout"])
        while True:
            done, wait_status = os.waitpid(pid, os.WNOHANG)
            if done:
                status = os.waitstatus_to_exitcode(wait_status)
                break
            if time.monotonic() > deadline:
                os.killpg(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                status = None  # timed out
                break
            time.sleep(0.002)
        replies.write(json.dumps({"status": status}) + "\n")
        replies.flush()


#: What an interpreter reads from the environment only as it starts: a command
#: setting one of these other than the warm interpreter had them is started anew.
READ_AT_START_UP = frozenset(
    {
        "PYTHONWARNINGS", "PYTHONIOENCODING", "PYTHONHASHSEED", "PYTHONDEVMODE", "PYTHONUTF8",
        "PYTHONSAFEPATH", "PYTHONNOUSERSITE", "PYTHONOPTIMIZE", "PYTHONSTARTUP", "PYTHONHOME",
        "PYTHONUSERBASE", "TZ", "LANG", "LC_ALL", "LC_CTYPE",
    }
)  # fmt: skip


def forkable(env: dict[str, str]) -> bool:
    """Whether a command with ``env`` sees the same start-up settings as the warm one."""
    return all(env.get(name) == os.environ.get(name) for name in READ_AT_START_UP)


#: Each Python's warm interpreter in this process (a test worker), closed at exit.
_WARM: dict[str, WarmPython] = {}


def warm(python: str) -> WarmPython:
    """The warm interpreter of ``python`` (started on first use, closed at exit)."""
    if python not in _WARM:
        _WARM[python] = WarmPython(python)
        atexit.register(_WARM[python].close)
    return _WARM[python]


if __name__ == "__main__":
    serve(sys.stdin, sys.stdout)
