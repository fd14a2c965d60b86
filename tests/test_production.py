"""Running in production: the migrations as their own role, replicas that wait, a record, retries.

In production the application should not run as the role that owns the
schema: ``<PKG>_MIGRATION_DATABASE_URL`` is the migrations' (the owner's),
``<PKG>_DATABASE_URL`` the application's, and ``db grant`` lets the
application's role use every table, including those later revisions create,
and nothing more.  A replica started while the migration job runs waits for
the schema (``wait_for_head``).  Every revision applied, reverted or stamped
leaves a row in ``alembic_version_history``, in its own transaction.  A
migration that lost a race for a lock is tried again.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import io
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.util import CommandError
from conftest import VARIANTS, NewProject
from harness.database import AWKWARD_PASSWORD, assert_no_password, query
from harness.postgres import PostgresCluster
from harness.project import HISTORY_TABLE, Project, revision_id

HISTORY = f"SELECT revision, direction FROM {HISTORY_TABLE} ORDER BY id"


def history(project: Project) -> list[tuple[str, str]]:
    """(revision, direction) of each row of the history, oldest first."""
    return [
        (str(revision), str(direction))
        for revision, direction in query(project.database_url, HISTORY)
    ]


def asyncio_url(url: str, answers: dict[str, Any]) -> str:
    """The URL as the variant's user writes it (no driver: the asyncio one)."""
    if answers.get("use_async"):
        return url.replace("postgresql+psycopg://", "postgresql://", 1)
    return url


def in_process(project: Project, *args: str) -> tuple[int, str, str]:
    """``python -m <package> db ARGS`` run in this process: status, stdout, stderr."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with project.imported(), contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        main = importlib.import_module(f"{project.program_name}.__main__")
        status = main.main(["db", *args], prog=f"python -m {project.program_name}")
    return status, stdout.getvalue(), stderr.getvalue()


# -- two roles ---------------------------------------------------------------------------


@pytest.fixture
def roles(pg_cluster: PostgresCluster, new_pg_url: Callable[[], str]) -> tuple[str, str, str]:
    """A fresh database owned by the migrating role, and a role for the application: URLs, name."""
    owner_url = new_pg_url()
    app = f"app_{uuid.uuid4().hex[:8]}"
    pg_cluster.create_role(app, AWKWARD_PASSWORD)
    database = sa.make_url(owner_url).database
    assert database is not None
    app_url = pg_cluster.url_for(database, user=app, password=AWKWARD_PASSWORD)
    return owner_url, app_url, app


ACCOUNT = """
class Account(Base):
    __tablename__ = "account"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str | None] = mapped_column(String(50))
"""


@pytest.mark.postgres
@pytest.mark.parametrize("variant_name", list(VARIANTS))
def test_the_application_runs_as_its_own_role_on_tables_later_revisions_create(
    new_project: NewProject, roles: tuple[str, str, str], variant_name: str
) -> None:
    owner_url, app_url, app = roles
    answers = VARIANTS[variant_name]
    service = new_project(database_url=app_url, **answers)  # the application's URL
    owner = sa.make_url(owner_url).username

    # Migrating as the application's role is refused, in one line naming the way out.
    with pytest.raises(CommandError) as refused:
        service.command("upgrade", "head")
    assert str(refused.value).startswith(
        f"The role {app} may not use schema public (permission denied for schema public) in "
    )
    assert str(refused.value).endswith(
        ", the database of SHOP_DATABASE_URL, so nothing was changed: migrations run as the "
        "role that owns the schema; point SHOP_MIGRATION_DATABASE_URL at it "
        "(SHOP_DATABASE_URL stays the application's), then run the same command again."
    )
    assert_no_password(str(refused.value))

    # The migrations get the owner's URL; the application keeps its own.
    service.env["SHOP_MIGRATION_DATABASE_URL"] = asyncio_url(owner_url, answers)
    app_only = service.with_database(service.database_url)
    del app_only.env["SHOP_MIGRATION_DATABASE_URL"]
    service.autogenerate("create item")
    service.command("upgrade", "head")
    with service.imported():
        db = importlib.import_module("shop.db")
        assert db.create_db_engine().url.username == app
        assert db.migration_database_url().username == owner
    assert query(owner_url, f"SELECT role FROM {HISTORY_TABLE}") == [(owner,)]

    # Before the grant, the application's role cannot even read the version table.
    with app_only.imported():
        database_error = importlib.import_module("shop.db").DatabaseError
        with pytest.raises(database_error) as unreadable:
            current = importlib.import_module("shop.migrate").current()
            if asyncio.iscoroutine(current):
                asyncio.run(current)
    assert str(unreadable.value).startswith(
        f"The role {app} may not use table alembic_version (permission denied for table "
        "alembic_version) in "
    )
    assert f"as the role that migrates, run `python -m shop db grant {app}`" in str(
        unreadable.value
    )

    # The grant, as the README says (the command line: a process of its own, once).
    if variant_name == "sync":
        granted = service.db("grant", app)
        output = granted.stdout
        assert_no_password(granted)
    else:
        status, output, errors = in_process(service, "grant", app)
        assert status == 0, errors
    assert output.strip().startswith(
        f"Granted {app} SELECT, INSERT, UPDATE, DELETE on the tables and USAGE, SELECT on the "
        "sequences of schema public in "
    )
    assert output.strip().endswith(
        f"and on those {owner} creates from now on; {app} may read alembic_version and "
        f"{HISTORY_TABLE}, not change them."
    )

    # A later revision creates a table (a serial key: a sequence); no new grant.
    service.add_to_models(ACCOUNT)
    second = revision_id(service.autogenerate("add account"))
    service.command("upgrade", "head")

    engine = sa.create_engine(app_url, poolclass=sa.NullPool)
    try:
        with engine.connect() as connection:  # the application's role uses the rows
            connection.execute(sa.text("INSERT INTO account (name) VALUES ('ada')"))
            connection.execute(sa.text("UPDATE account SET name = 'grace'"))
            connection.execute(sa.text("INSERT INTO item (name) VALUES ('kettle')"))
            assert connection.execute(sa.text("SELECT name FROM account")).all() == [("grace",)]
            connection.execute(sa.text("DELETE FROM account"))
            connection.commit()
        for ddl, said in [
            ("DROP TABLE account", "must be owner of table account"),
            ("ALTER TABLE account ADD COLUMN email text", "must be owner of table account"),
            ("CREATE TABLE mine (id int)", "permission denied for schema public"),
            ("UPDATE alembic_version SET version_num = 'x'", "permission denied for table"),
            (f"DELETE FROM {HISTORY_TABLE}", "permission denied for table"),
        ]:
            with engine.connect() as connection, pytest.raises(sa.exc.ProgrammingError) as denied:
                connection.execute(sa.text(ddl))
            assert said in str(denied.value), ddl
    finally:
        engine.dispose()

    # The application's role reads where the database is, and checks the models.
    with app_only.imported():
        migrate = importlib.import_module("shop.migrate")
        if answers.get("use_async"):
            assert asyncio.run(migrate.current()) == (second,)
            asyncio.run(migrate.check())
        else:
            assert migrate.current() == (second,)
            migrate.check()

    # A revision the application's role would run: refused, one line, nothing applied.
    service.write_revision("c003", second, 'op.add_column("account", sa.Column("email", sa.Text))')
    with pytest.raises(CommandError) as not_owner:
        app_only.command("upgrade", "head")
    assert f"The role {app} may not use table account (must be owner of table account)" in str(
        not_owner.value
    )
    assert "point SHOP_MIGRATION_DATABASE_URL at it" in str(not_owner.value)
    assert service.version_rows() == [second]


def test_the_migration_url_is_named_where_it_is_wrong(new_project: NewProject) -> None:
    service = new_project()
    service.autogenerate("create item")
    service.env["SHOP_MIGRATION_DATABASE_URL"] = "sqlite:////no/such/folder/main.db"
    with pytest.raises(CommandError) as unreachable:
        service.command("upgrade", "head")
    assert str(unreachable.value) == (
        "Cannot connect to the database sqlite:////no/such/folder/main.db (from "
        "SHOP_MIGRATION_DATABASE_URL): the folder /no/such/folder does not exist. Check that "
        "the folder /no/such/folder exists and is writable (mkdir -p /no/such/folder), or "
        "point SHOP_MIGRATION_DATABASE_URL at another file."
    )
    service.env["SHOP_MIGRATION_DATABASE_URL"] = " "
    with pytest.raises(CommandError, match="^SHOP_MIGRATION_DATABASE_URL is set but empty"):
        service.command("upgrade", "head")
    assert service.tables() == set()  # the application's database was never touched


# -- the history ---------------------------------------------------------------------------


@pytest.fixture
def recorded(new_project: NewProject, backend_url: str) -> Project:
    """A service with three revisions (the last one fails), its package installed as 0.1.0."""
    service = new_project(database_url=backend_url)
    first = revision_id(service.autogenerate("create item"))
    service.write_revision("b002", first, "time.sleep(0.05)", imports="import time")
    service.write_revision(
        "c003",
        "b002",
        """op.execute("INSERT INTO item (name) VALUES ('imported')")\n"""
        'raise RuntimeError("ledger import failed")',
        "op.execute(\"DELETE FROM item WHERE name = 'imported'\")",
    )
    # What `pip install` writes: the version the history records.
    installed = service.path / "shop-0.1.0.dist-info"
    installed.mkdir()
    (installed / "METADATA").write_text("Metadata-Version: 2.1\nName: shop\nVersion: 0.1.0\n")
    return service


def fix(service: Project) -> None:
    """The failing revision, fixed."""
    c003 = service.package / "migrations" / "versions" / "c003_handwritten.py"
    c003.write_text(c003.read_text().replace('raise RuntimeError("ledger import failed")', ""))


def test_each_revision_applied_or_reverted_leaves_a_row_a_failed_one_none(
    recorded: Project,
) -> None:
    (first,) = [revision_id(path) for path in recorded.versions() if "handwritten" not in path.name]
    with pytest.raises(RuntimeError, match="ledger import failed"):
        recorded.command("upgrade", "head")
    assert history(recorded) == [(first, "upgrade"), ("b002", "upgrade")]  # none for c003
    assert query(recorded.database_url, "SELECT name FROM item") == []  # c003 rolled back

    columns = "role, host, pid, package_version, started_at, finished_at, duration_seconds"
    rows = query(recorded.database_url, f"SELECT {columns} FROM {HISTORY_TABLE} ORDER BY id")
    owner = sa.make_url(recorded.database_url).username  # None on SQLite: no roles
    for role, host, pid, version, started, finished, duration in rows:
        assert (role, host, pid, version) == (owner, socket.gethostname(), os.getpid(), "0.1.0")
        if isinstance(started, str):  # SQLite: text, in UTC
            started, finished = map(datetime.fromisoformat, (started, finished))
        assert started <= finished
        assert duration == pytest.approx((finished - started).total_seconds(), abs=1e-3)
    assert rows[1][-1] >= 0.05  # b002 sleeps that long

    # Fixed, then reverted: a row each.  The table is no model's: autogenerate leaves it alone.
    fix(recorded)
    recorded.command("upgrade", "head")
    recorded.command("check")
    recorded.command("downgrade", "-1")
    assert history(recorded)[2:] == [("c003", "upgrade"), ("c003", "downgrade")]

    # Offline SQL does not write it.
    sql = recorded.command("upgrade", "b002:head", sql=True).stdout
    assert "INSERT INTO alembic_version" not in sql  # (an UPDATE: it exists from b002 on)
    assert HISTORY_TABLE not in sql

    # `db log`: the last rows, oldest first, as a table.
    log = recorded.db("log", "--last", "3").stdout.splitlines()
    assert log[0].split() == [
        "started", "(UTC)", "seconds", "direction", "revision", "role", "host", "pid", "version"
    ]  # fmt: skip
    assert [line.split()[3:5] for line in log[1:]] == [
        ["upgrade", "b002"],
        ["upgrade", "c003"],
        ["downgrade", "c003"],
    ]
    assert_no_password("\n".join(log))


def test_create_schema_records_its_stamp(recorded: Project, tmp_path: Any) -> None:
    fix(recorded)
    with recorded.imported():
        importlib.import_module("shop.migrate").create_schema()
    assert history(recorded) == [("c003", "stamp")]


# -- replicas wait for the schema ------------------------------------------------------


@pytest.mark.parametrize(
    ("backend", "variant_name"),
    [("sqlite", "sync"), pytest.param("postgresql", "async", marks=pytest.mark.postgres)],
)
def test_a_replica_waits_for_another_process_migrating_and_times_out_alone(
    new_project: NewProject,
    request: pytest.FixtureRequest,
    tmp_path: Any,
    caplog: pytest.LogCaptureFixture,
    backend: str,
    variant_name: str,
) -> None:
    answers = VARIANTS[variant_name]
    url = (
        f"sqlite:///{tmp_path / 'replicas.sqlite'}"
        if backend == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    service = new_project(database_url=url, **answers)
    first = revision_id(service.autogenerate("create item"))
    service.command("upgrade", "head")
    service.write_revision("slow02", first, "time.sleep(1.0)", imports="import time")

    # The migration job, in a process of its own, while this replica starts.
    migrating = threading.Thread(target=service.db, args=("upgrade", "head"))
    caplog.set_level(logging.INFO, logger="shop.migrate")
    migrating.start()
    try:
        with service.imported():
            migrate = importlib.import_module("shop.migrate")
            waited = migrate.wait_for_head(timeout=30)
            if asyncio.iscoroutine(waited):
                asyncio.run(waited)
            returned = datetime.now(UTC)
    finally:
        migrating.join(timeout=60)

    assert service.version_rows() == ["slow02"]  # it returned at head, not before
    ((committed,),) = query(
        service.database_url, f"SELECT finished_at FROM {HISTORY_TABLE} WHERE revision = 'slow02'"
    )
    if isinstance(committed, str):  # SQLite: text, in UTC
        committed = datetime.fromisoformat(committed).replace(tzinfo=UTC)
    assert 0 <= (returned - committed).total_seconds() < 1.0  # right after the commit
    waits = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Waiting")]
    assert len(waits) == 1, waits
    assert waits[0].startswith("Waiting up to 30 s for the database ")
    assert waits[0].endswith(
        f"to reach the head of the revisions (slow02); it is at {first}: another process "
        "is migrating it, or is about to."
    )

    # No migration comes: the replica gives up, in one line naming both revisions.
    service.write_revision("c003", "slow02", "pass")
    expected_end = (
        "is at revision slow02, not at the head of the revisions (c003), after waiting 0.3 s "
        "for it: apply the migrations (`python -m shop db upgrade head`, the migration job), "
        "or wait longer ({})."
    )
    if variant_name == "sync":  # an init container's command
        timed_out = service.db("wait-for-head", "--timeout", "0.3", check=False)
        assert timed_out.returncode == 255
        last = timed_out.stderr.strip().splitlines()[-1]
        assert last.startswith("FAILED: The database ")
        assert last.endswith(expected_end.format("--timeout"))
        assert timed_out.stderr.count("Waiting up to 0.3 s") == 1
        assert_no_password(timed_out)
    else:
        with service.imported():
            migrate = importlib.import_module("shop.migrate")
            db = importlib.import_module("shop.db")
            with pytest.raises(db.DatabaseError) as timed_out_api:
                asyncio.run(migrate.wait_for_head(timeout=0.3))
        assert str(timed_out_api.value).endswith(
            expected_end.format("a longer timeout= of migrate.wait_for_head()")
        )
        assert_no_password(str(timed_out_api.value))


# -- a lock-timeout race is tried again ------------------------------------------------


class Retries(logging.Handler):
    """The retries the migrations log; each one waits for the test to let it go on."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []
        self.retrying, self.go_on = threading.Event(), threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        self.retrying.set()
        self.go_on.wait(timeout=10)


@pytest.fixture
def retries_logged() -> Iterator[Retries]:
    handler = Retries()
    logger = logging.getLogger("shop.migrations")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


@pytest.mark.postgres
def test_a_migration_blocked_by_a_held_lock_succeeds_on_its_second_try(
    new_project: NewProject, pg_url: str, retries_logged: Retries
) -> None:
    service = new_project(database_url=pg_url)
    first = revision_id(service.autogenerate("create item"))
    service.command("upgrade", "head")
    service.write_revision(
        "b002",
        first,
        'op.create_table("sku_log", sa.Column("id", sa.Integer, primary_key=True))\n'
        'op.add_column("item", sa.Column("sku", sa.String(20)))',
    )
    service.env["SHOP_MIGRATION_LOCK_TIMEOUT"] = "200ms"
    errors: list[BaseException] = []

    def upgrade() -> None:
        try:
            service.command("upgrade", "head")
        except BaseException as error:  # reported below
            errors.append(error)

    engine = sa.create_engine(pg_url, poolclass=sa.NullPool)
    reader = engine.connect()
    reader.execute(sa.text("SELECT count(*) FROM item"))  # a long transaction's ACCESS SHARE
    migrating = threading.Thread(target=upgrade)
    migrating.start()
    try:
        assert retries_logged.retrying.wait(timeout=10)
        # Between the tries nothing of b002 is applied: not even its first table.
        assert not sa.inspect(engine).has_table("sku_log")
        assert service.version_rows() == [first]
        reader.rollback()  # that transaction ends
    finally:
        retries_logged.go_on.set()
        migrating.join(timeout=30)
        reader.close()
        engine.dispose()

    assert errors == []
    assert retries_logged.messages == [
        "The migration waited longer than 200ms (SHOP_MIGRATION_LOCK_TIMEOUT) for a lock "
        "another session holds and was rolled back; trying it again in 0.2s (retry 1 of 2, "
        "SHOP_MIGRATION_LOCK_RETRIES)."
    ]
    assert "sku" in service.columns("item")
    assert history(service)[1:] == [("b002", "upgrade")]  # once, for the try that committed


@pytest.mark.postgres
def test_a_migration_whose_autocommit_block_committed_is_not_tried_again(
    new_project: NewProject, pg_url: str, retries_logged: Retries
) -> None:
    service = new_project(database_url=pg_url)
    first = revision_id(service.autogenerate("create item"))
    service.command("upgrade", "head")
    service.write_revision(
        "b002",
        first,
        """
        with op.get_context().autocommit_block():
            op.execute("CREATE TABLE side (id int)")  # committed at once
        op.add_column("item", sa.Column("sku", sa.String(20)))
        """,
    )
    service.env["SHOP_MIGRATION_LOCK_TIMEOUT"] = "200ms"
    retries_logged.go_on.set()
    engine = sa.create_engine(pg_url, poolclass=sa.NullPool)
    try:
        with engine.connect() as reader:
            reader.execute(sa.text("SELECT count(*) FROM item"))
            with pytest.raises(CommandError, match="^The migration waited longer than 200ms"):
                service.command("upgrade", "head")  # tried once: its block would run again
    finally:
        engine.dispose()
    assert retries_logged.messages == [
        "The migration waited too long for a lock after its autocommit block had committed: "
        "not retried (it would run that block again)."
    ]
    assert service.version_rows() == [first]


@pytest.mark.postgres
def test_retries_that_are_not_a_number_are_refused_before_anything_runs(
    new_project: NewProject, pg_url: str
) -> None:
    service = new_project(database_url=pg_url)
    service.autogenerate("create item")
    service.env["SHOP_MIGRATION_LOCK_RETRIES"] = "two"
    with pytest.raises(CommandError) as refused:
        service.command("upgrade", "head")
    assert str(refused.value) == (
        "SHOP_MIGRATION_LOCK_RETRIES='two' is not a number of retries: set it to 0 (a migration "
        "that waited too long for a lock fails at once), 1, 2..., or unset it for the "
        "default, 2."
    )
    assert service.version_rows() == []
