"""A migration that fails half way loses nothing, on SQLite as on PostgreSQL.

The failing revision does real damage before it raises: it creates a table,
rebuilds another one (a batch "move and copy", the riskiest SQLite
operation), deletes every row, then fails.  Each revision runs in its own
transaction, so the database ends exactly as it was before that revision
(DDL, rows and version row), and the revisions before it in the same run
stay applied.
"""

from __future__ import annotations

import importlib

import pytest
from alembic import command
from conftest import NewProject
from harness.database import assert_no_password, query, snapshot
from harness.project import Project

ERROR = "ledger import failed: 3 accounts rejected"


@pytest.fixture
def service(request: pytest.FixtureRequest, new_project: NewProject, backend_url: str) -> Project:
    """A service with revisions a001 (ok), b002 (ok), c003 (fails); asyncio if indirect says so."""
    answers = getattr(request, "param", {})
    service = new_project(database_url=backend_url, program_name="accounts", **answers)
    service.write_revision(
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
    service.write_revision(
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
    service.write_revision(
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


@pytest.mark.parametrize("service", [{}, {"use_async": True}], ids=["sync", "async"], indirect=True)
def test_a_failing_revision_leaves_the_database_exactly_as_before_it(service: Project) -> None:
    service.command("upgrade", "b002")
    before = snapshot(service.database_url)

    assert_failed_in_c003(service.alembic("upgrade", "head", check=False))
    assert snapshot(service.database_url) == before

    assert_failed_in_c003(service.db("upgrade", "head", check=False))
    assert snapshot(service.database_url) == before
    assert service.version_rows() == ["b002"]


@pytest.mark.parametrize("service", [{}, {"use_async": True}], ids=["sync", "async"], indirect=True)
def test_revisions_before_the_failing_one_stay_applied(service: Project) -> None:
    with pytest.raises(RuntimeError, match=ERROR):
        service.command("upgrade", "head")

    assert service.version_rows() == ["b002"]
    assert service.tables() == {"alembic_version", "account", "audit_log"}
    assert service.columns("account") == {"id", "name"}
    assert query(service.database_url, "SELECT name FROM account ORDER BY id") == [
        ("alice",),
        ("bob",),
        ("carol",),
    ]
    assert query(service.database_url, "SELECT note FROM audit_log") == [("b002 applied",)]


def test_a_failing_revision_rolls_back_on_the_applications_engine(
    service: Project, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """Handing over the application's own Engine or Connection (README, "Migrating from Python").

    On SQLite it has foreign keys on and pysqlite's default transaction
    handling, which would commit the DDL of a failing migration.
    """
    service.command("upgrade", "b002")
    before = snapshot(service.database_url)

    with service.imported():
        migrate = importlib.import_module(f"{service.program_name}.migrate")
        db = importlib.import_module(f"{service.program_name}.db")
        engine = db.create_db_engine()  # the application's engine
        config = migrate.alembic_config()
        config.attributes["connection"] = engine
        with pytest.raises(RuntimeError, match=ERROR):
            command.upgrade(config, "head")
        with engine.connect() as connection:
            config.attributes["connection"] = connection
            with pytest.raises(RuntimeError, match=ERROR):
                command.upgrade(config, "head")
            if connection.dialect.name == "sqlite":
                # The application's connection got its foreign keys back.
                assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        engine.dispose()

    printed = capsys.readouterr()
    assert_no_password(printed.out, printed.err, caplog.text)
    assert snapshot(service.database_url) == before
