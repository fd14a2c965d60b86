"""A migration that fails half way loses nothing, on SQLite as on PostgreSQL.

The failing revision does real damage before it raises: it creates a table,
rebuilds another one (a batch "move and copy", the riskiest SQLite
operation), deletes every row, then fails.  Each revision runs in its own
transaction, so the database ends exactly as it was before that revision
(DDL, rows and version row), and the revisions before it in the same run
stay applied.
"""

from __future__ import annotations

import pytest
from conftest import Render, Service
from migration_helpers import assert_no_password, query, snapshot, write_revision

ERROR = "ledger import failed: 3 accounts rejected"


@pytest.fixture
def service(render: Render, backend_url: str) -> Service:
    """A service with revisions a001 (ok), b002 (ok), c003 (fails)."""
    service = render(database_url=backend_url, program_name="accounts")
    write_revision(
        service,
        "a001",
        None,
        """
        op.create_table(
            "account",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("name", sa.String(50), nullable=False, unique=True),
        )
        op.execute("INSERT INTO account (id, name) VALUES (1, 'alice'), (2, 'bob'), (3, 'carol')")
        """,
        'op.drop_table("account")',
    )
    write_revision(
        service,
        "b002",
        "a001",
        """
        op.create_table(
            "audit_log",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("note", sa.String(100), nullable=False),
        )
        op.create_index("ix_audit_log_note", "audit_log", ["note"])
        op.execute("INSERT INTO audit_log (note) VALUES ('b002 applied')")
        """,
        'op.drop_table("audit_log")',
    )
    write_revision(
        service,
        "c003",
        "b002",
        f"""
        op.create_table("ledger", sa.Column("id", sa.Integer, primary_key=True))
        with op.batch_alter_table("account", recreate="always") as batch:
            batch.add_column(sa.Column("balance", sa.Integer, server_default="0"))
        op.execute("DELETE FROM account")
        op.execute("DELETE FROM audit_log")
        raise RuntimeError({ERROR!r})
        """,
        'op.drop_table("ledger")',
    )
    return service


def assert_failed_in_c003(result: object) -> None:
    """Non-zero exit, and the output says which revision failed and why."""
    assert result.returncode != 0  # type: ignore[attr-defined]
    output = result.stdout + result.stderr  # type: ignore[attr-defined]
    assert "Running upgrade b002 -> c003" in output
    assert output.strip().splitlines()[-1] == f"RuntimeError: {ERROR}"
    assert_no_password(result)  # type: ignore[arg-type]


def test_a_failing_revision_leaves_the_database_exactly_as_before_it(service: Service) -> None:
    assert_no_password(service.alembic("upgrade", "b002"))
    before = snapshot(service.database_url)

    assert_failed_in_c003(service.alembic("upgrade", "head", check=False))
    assert snapshot(service.database_url) == before

    cli = service.run(
        service.python, "-m", service.program_name, "db", "upgrade", "head", check=False
    )
    assert_failed_in_c003(cli)
    assert snapshot(service.database_url) == before
    assert service.version_rows() == ["b002"]


def test_revisions_before_the_failing_one_stay_applied(service: Service) -> None:
    assert_failed_in_c003(service.alembic("upgrade", "head", check=False))

    assert service.version_rows() == ["b002"]
    assert service.tables() == {"alembic_version", "account", "audit_log"}
    assert service.columns("account") == {"id", "name"}
    assert query(service.database_url, "SELECT name FROM account ORDER BY id") == [
        ("alice",),
        ("bob",),
        ("carol",),
    ]
    assert query(service.database_url, "SELECT note FROM audit_log") == [("b002 applied",)]


# Handing over the application's own Engine or Connection (README, "Migrating
# from Python"): on SQLite it has foreign keys on and pysqlite's default
# transaction handling, which would commit the DDL of a failing migration.
HANDED_OVER = """
from alembic import command
from {pkg} import migrate
from {pkg}.db import create_db_engine

engine = create_db_engine()  # the application's engine
config = migrate.alembic_config()
config.attributes["connection"] = engine
try:
    command.upgrade(config, "head")
except RuntimeError as error:
    print("engine:", error)
with engine.connect() as connection:
    config.attributes["connection"] = connection
    try:
        command.upgrade(config, "head")
    except RuntimeError as error:
        print("connection:", error)
    if connection.dialect.name == "sqlite":
        print("foreign keys:", connection.exec_driver_sql("PRAGMA foreign_keys").scalar())
"""


def test_a_failing_revision_rolls_back_on_the_applications_engine(service: Service) -> None:
    service.alembic("upgrade", "b002")
    before = snapshot(service.database_url)

    result = service.run(service.python, "-c", HANDED_OVER.format(pkg=service.program_name))

    assert f"engine: {ERROR}" in result.stdout
    assert f"connection: {ERROR}" in result.stdout
    assert_no_password(result)
    assert snapshot(service.database_url) == before
    if service.database_url.startswith("sqlite"):
        # The application's connection got its foreign keys back.
        assert "foreign keys: 1" in result.stdout
