"""The README's demo command leaves a service a user can keep working in."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from harness import ROOT
from harness.project import clean_environ, revision_id
from harness.venv import uv


def user_environ(home: Path) -> dict[str, str]:
    """A user's shell with an empty home: each command leaves its bytecode, as Python does."""
    env = clean_environ(home)
    del env["PYTHONDONTWRITEBYTECODE"]  # (set for the tests that edit models.py)
    return env


def test_demo_leaves_a_service_to_keep_working_in(tmp_path: Path) -> None:
    folder = tmp_path / "my demo"  # a space: the printed commands must quote it
    env = user_environ(tmp_path / "home")
    env["UV_CACHE_DIR"] = uv("cache", "dir").stdout.strip()  # the machine's cache, not a new one
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py"), str(folder)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr

    # It shows each command as a shell would take it.
    assert "$ alembic revision --autogenerate -m 'create initial tables'" in result.stdout
    database = folder / ".data" / "main.db"
    assert f"Database: {database}" in result.stdout
    assert "Tables:   alembic_version, alembic_version_history, item" in result.stdout
    assert not (tmp_path / "home" / ".local").exists()  # the real data dir is untouched

    # What it prints to do next works as printed, from a new shell elsewhere.
    printed = result.stdout.split("Keep working in it from a new shell:\n")[1]
    script = "\n".join(line.strip() for line in printed.splitlines() if line.strip())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shell = subprocess.run(
        ["bash", "--noprofile", "--norc", "-e", "-c", script],
        cwd=elsewhere,
        env=user_environ(tmp_path / "another-home"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = shell.stdout + shell.stderr
    assert shell.returncode == 0, output
    (revision,) = (folder / "demo_service" / "migrations" / "versions").glob("*.py")
    assert f"{revision_id(revision)} (head)" in shell.stdout  # the demo's database
    assert re.search(r"=+ \d+ passed", shell.stdout), output


def test_demo_refuses_a_folder_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "not empty" in result.stderr
    assert (tmp_path / "keep.txt").read_text() == "mine"
