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


def make_venv(path: Path, *requirements: str) -> Path:
    """Create a virtual environment at ``path``, install ``requirements``; return its python.

    No bytecode compiled ahead: Python writes it for the modules the first
    command imports, a second faster than compiling every installed package.
    """
    uv("venv", "--quiet", "--python", sys.executable, str(path))
    python = path / "bin" / "python"
    uv("pip", "install", "--quiet", "--python", str(python), *requirements)
    return python
