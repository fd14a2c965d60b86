"""Render a demo service from this checkout, install it, and run its first migration.

    uv run scripts/demo.py [FOLDER] [--program-name NAME]

Renders the template (this working tree, uncommitted changes included) into
FOLDER (default: demo-service), gives it a virtual environment (FOLDER/.venv,
the project installed with its test tools, as its README says), then runs the
rendered project's first migration exactly as its README says: ``alembic
revision --autogenerate`` and ``alembic upgrade head``.  The database is a
SQLite file in FOLDER/.data, never your real data folder.  At the end it
prints the commands that keep working in the service from a new shell.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import sqlalchemy as sa
from copier import run_copy

ROOT = Path(__file__).resolve().parents[1]


def run(command: list[str], cwd: Path, env: dict[str, str]) -> None:
    """Show ``command`` as a shell would take it, then run it."""
    print(f"$ {shlex.join(command)}", flush=True)
    subprocess.run(command, cwd=cwd, env=env, check=True)


def make_venv(destination: Path, env: dict[str, str]) -> Path:
    """FOLDER/.venv with the project installed (uv if there is one, else venv and pip)."""
    venv = destination / ".venv"
    uv = os.environ.get("UV") or shutil.which("uv")
    if uv:
        run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], destination, env)
        python = str(venv / "bin" / "python")
        install = [uv, "pip", "install", "--quiet", "--python", python]
        run([*install, "-e", ".[test]"], destination, env)
    else:
        run([sys.executable, "-m", "venv", str(venv)], destination, env)
        python = str(venv / "bin" / "python")
        run([python, "-m", "pip", "install", "--quiet", "-e", ".[test]"], destination, env)
    return venv


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", default="demo-service", type=Path)
    parser.add_argument("--program-name", default="demo_service")
    args = parser.parse_args()
    destination: Path = args.folder.resolve()
    if destination.exists() and any(destination.iterdir()):
        print(f"{destination} exists and is not empty: choose another folder.", file=sys.stderr)
        return 2

    print(f"Rendering the template into {destination} ...", flush=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "dirty template changes included": wanted here
        run_copy(
            str(ROOT),
            destination,
            data={"program_name": args.program_name},
            defaults=True,
            vcs_ref="HEAD",
            quiet=True,
        )

    database = destination / ".data" / "main.db"
    database.parent.mkdir(parents=True)
    url_variable = f"{args.program_name.upper()}_DATABASE_URL"
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV" and k != url_variable}
    venv = make_venv(destination, env)
    env = {**env, url_variable: f"sqlite:///{database}", "PATH": f"{venv / 'bin'}:{env['PATH']}"}
    run(["alembic", "revision", "--autogenerate", "-m", "create initial tables"], destination, env)
    run(["alembic", "upgrade", "head"], destination, env)

    engine = sa.create_engine(f"sqlite:///{database}")
    tables = sorted(sa.inspect(engine).get_table_names())
    engine.dispose()
    print()
    print(f"Service:  {destination}")
    print(f"Database: {database}")
    print(f"Tables:   {', '.join(tables)}")
    print()
    print("Keep working in it from a new shell:")
    for line in (
        f"cd {shlex.quote(str(destination))}",
        ". .venv/bin/activate",
        f"export {url_variable}={shlex.quote(env[url_variable])}",
        "alembic current",
        "pytest",
    ):
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
