"""Render a demo service from this checkout and migrate its default SQLite database.

    uv run scripts/demo.py [FOLDER] [--program-name NAME]

Renders the template (this working tree, uncommitted changes included) into
FOLDER (default: demo-service), then runs the rendered project's first
migration exactly as its README says: ``alembic revision --autogenerate`` and
``alembic upgrade head``, with no database URL set.  The default database lives
in the user data folder; the demo points XDG_DATA_HOME into FOLDER/.data so it
never touches your real one and can be run again into another folder.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import warnings
from pathlib import Path

import sqlalchemy as sa
from copier import run_copy

ROOT = Path(__file__).resolve().parents[1]


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
            data={"program_name": args.program_name, "author_name": "Demo"},
            defaults=True,
            vcs_ref="HEAD",
            quiet=True,
        )

    env = {k: v for k, v in os.environ.items() if not k.endswith("_DATABASE_URL")}
    env["XDG_DATA_HOME"] = str(destination / ".data")
    for command in (
        ["revision", "--autogenerate", "-m", "create initial tables"],
        ["upgrade", "head"],
    ):
        print(f"$ alembic {' '.join(command)}", flush=True)
        subprocess.run(
            [sys.executable, "-m", "alembic", *command], cwd=destination, env=env, check=True
        )

    database = destination / ".data" / args.program_name / "main.db"
    engine = sa.create_engine(f"sqlite:///{database}")
    tables = sorted(sa.inspect(engine).get_table_names())
    engine.dispose()
    print()
    print(f"Service:  {destination}")
    print(f"Database: {database}")
    print(f"Tables:   {', '.join(tables)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
