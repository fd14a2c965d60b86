"""The whole migration workflow on a real PostgreSQL server.

The same story as on SQLite (render, autogenerate, upgrade, edit a model,
``alembic check``, add and drop a column, downgrade), against a fresh
database owned by a role whose password is ``p%w@:/?#x`` (URL-quoted in the
environment variable).  It runs for a service rendered with
``database=postgresql`` and, since env.py takes any SQLAlchemy URL, for one
rendered with ``database=sqlite``.  No command may print the password.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import Render, Service, revision_id
from migration_helpers import assert_no_password, query

pytestmark = pytest.mark.postgres


class Checked:
    """Runs the service's commands and checks that none prints the password."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def alembic(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = self.service.alembic(*args, check=check)
        assert_no_password(result)
        return result

    def db(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``python -m <package> db ARGS``."""
        service = self.service
        result = service.run(service.python, "-m", service.program_name, "db", *args, check=check)
        assert_no_password(result)
        return result

    def autogenerate(self, message: str) -> Path:
        before = set(self.service.versions())
        self.alembic("revision", "--autogenerate", "-m", message)
        (written,) = set(self.service.versions()) - before
        return written


def test_the_whole_workflow_on_postgresql(render: Render, pg_url: str) -> None:
    service = render(database_url=pg_url, database="postgresql", program_name="billing_service")
    run = Checked(service)

    # First revision: the example table, created by upgrade.
    first = run.autogenerate("create initial tables")
    assert "op.create_table('item'" in first.read_text()
    assert service.tables() == set()
    run.alembic("upgrade", "head")
    assert service.tables() == {"item", "alembic_version"}
    run.alembic("check")

    # A model change: a new table and a longer column.  check and autogenerate see it.
    service.replace_in_models("String(100)", "String(250)")
    service.add_to_models(
        """
from sqlalchemy import ForeignKey


class Customer(Base):
    __tablename__ = "customer"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(200), unique=True)
    item_id: Mapped[int | None] = mapped_column(ForeignKey("item.id"), index=True)
"""
    )
    check = run.alembic("check", check=False)
    assert check.returncode != 0
    assert "customer" in check.stdout + check.stderr
    second = run.autogenerate("customers, longer item names").read_text()
    assert "op.create_table('customer'" in second
    assert "type_=sa.String(length=250)" in second
    run.alembic("upgrade", "head")
    run.alembic("check")
    assert {"customer", "item"} <= service.tables()
    length = "SELECT character_maximum_length FROM information_schema.columns"
    name_column = f"{length} WHERE table_name = 'item' AND column_name = 'name'"
    assert query(service.database_url, name_column) == [(250,)]

    # Add, then drop, a column; step back one revision and forward again.
    note = "    note: Mapped[str | None] = mapped_column(String(200))\n"
    service.replace_in_models(
        "    created_at: Mapped[datetime]", note + "    created_at: Mapped[datetime]"
    )
    run.autogenerate("add note")
    run.alembic("upgrade", "head")
    assert "note" in service.columns("item")
    service.replace_in_models(note, "")
    dropped = run.autogenerate("drop note")
    assert "drop_column('note')" in dropped.read_text()
    run.alembic("upgrade", "head")
    assert "note" not in service.columns("item")
    run.alembic("downgrade", "-1")
    assert "note" in service.columns("item")
    run.db("upgrade", "head")
    assert "note" not in service.columns("item")
    head = revision_id(dropped)
    assert service.version_rows() == [head]

    # Back to an empty database.
    run.alembic("downgrade", "base")
    assert service.tables() - {"alembic_version"} == set()
    assert service.version_rows() == []
    assert query(service.database_url, "SELECT relname FROM pg_class WHERE relkind = 'S'") == []


def test_a_service_rendered_for_sqlite_migrates_postgresql(render: Render, pg_url: str) -> None:
    """env.py takes any SQLAlchemy URL, whatever database was chosen at copy time."""
    service = render(database_url=pg_url, database="sqlite", program_name="shop")
    run = Checked(service)

    revision = run.autogenerate("create initial tables")
    run.alembic("upgrade", "head")
    assert service.tables() == {"item", "alembic_version"}
    assert service.version_rows() == [revision_id(revision)]
    assert "Context impl PostgresqlImpl" in run.db("check").stderr
    run.alembic("downgrade", "base")
    assert service.tables() == {"alembic_version"}
