"""The README's demo command renders a service and migrates its default database."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa
from harness import ROOT
from harness.project import clean_environ


def test_demo_renders_and_migrates_the_default_sqlite_database(tmp_path: Path) -> None:
    folder = tmp_path / "my-demo"
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py"), str(folder)],
        env=clean_environ(tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )

    database = folder / ".data" / "demo_service" / "main.db"
    assert f"Database: {database}" in result.stdout
    assert "Tables:   alembic_version, item" in result.stdout
    engine = sa.create_engine(f"sqlite:///{database}")
    assert set(sa.inspect(engine).get_table_names()) == {"alembic_version", "item"}
    engine.dispose()
    assert not (tmp_path / "home" / ".local").exists()  # the real data dir is untouched


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
