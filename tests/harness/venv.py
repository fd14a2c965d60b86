"""Fresh virtual environments, made with uv from its package cache in seconds."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def uv_binary() -> str:
    """The uv running these tests (``uv run`` sets $UV), else the one on PATH."""
    uv = os.environ.get("UV") or shutil.which("uv")
    if uv is None:
        pytest.fail("uv is not on PATH: the packaging tests build and install with uv.")
    return uv


def uv(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``uv ARGS`` in the real environment (HOME included, for uv's cache)."""
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    command = [uv_binary(), *args]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout}{result.stderr}"
    return result


def make_venv(path: Path, *requirements: str, compile_bytecode: bool = True) -> Path:
    """Create a virtual environment at ``path``, install ``requirements``; return its python.

    ``compile_bytecode``: worth its seconds for an environment that runs many
    commands (each imports SQLAlchemy and Alembic), not for one that runs two.
    """
    uv("venv", "--quiet", "--python", sys.executable, str(path))
    python = path / "bin" / "python"
    uv("pip", "install", "--quiet", "--python", str(python), *requirements)
    if compile_bytecode:
        compile_what_runs(python)
    return python


#: Packages whose Python files never run: mypy and mypyc are compiled by mypyc
#: (their .so files run), pygments only colours what pytest prints to a
#: terminal.  They are half of the files a test extra brings.
NEVER_IMPORTED = r"/site-packages/(mypy|mypyc|pygments)/"


def compile_what_runs(python: Path) -> None:
    """Bytecode for the environment's packages but :data:`NEVER_IMPORTED`: half the time of
    uv's ``--compile-bytecode``, the same start-up for every command."""
    # The environment's Python is this one (make_venv): its version names the folder.
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    site_packages = python.parent.parent / "lib" / version / "site-packages"
    subprocess.run(
        [
            str(python),
            "-m",
            "compileall",
            "-q",
            "-j",
            "0",
            "-x",
            NEVER_IMPORTED,
            str(site_packages),
        ],
        capture_output=True,
        check=True,
    )
