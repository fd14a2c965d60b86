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


#: Installed packages whose sources no command imports: mypy and mypyc run compiled
#: (their extension modules come first), pygments only colours a traceback.
NOT_IMPORTED = r"/site-packages/(mypy|mypyc|pygments)/"


def make_venv(path: Path, *requirements: str) -> Path:
    """Create a virtual environment at ``path``, install ``requirements``; return its python.

    The installed packages' bytecode is compiled ahead, as in a deployed
    environment: the tests' commands run with ``PYTHONDONTWRITEBYTECODE``
    (harness.project.clean_environ), so without it each would compile
    SQLAlchemy, Alembic and pytest from source again, a second or more each.
    Not by uv (``--no-config``: not this repository's ``compile-bytecode``),
    which would compile :data:`NOT_IMPORTED` too, a third of the files.
    """
    uv("venv", "--quiet", "--python", sys.executable, str(path))
    python = path / "bin" / "python"
    uv("pip", "install", "--quiet", "--no-config", "--python", str(python), *requirements)
    site_packages = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    compile_all = [str(python), "-m", "compileall", "-q", "-j", "0", "-x", NOT_IMPORTED]
    subprocess.run([*compile_all, site_packages], capture_output=True, check=True)
    return python
