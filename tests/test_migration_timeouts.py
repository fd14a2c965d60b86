"""On PostgreSQL a blocked migration fails fast, changes nothing, and says what to do.

An ``ALTER TABLE`` waiting for a lock that a long transaction holds makes
every later query on that table queue behind it: the service stalls.  So
each migration transaction runs with a lock timeout (and a statement
timeout), set after the migration lock is held and ending with the
transaction: a replica waiting for another's migration is not cut short, and
the application's sessions never see them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from alembic.util import CommandError
from conftest import NewProject
from harness.database import assert_no_password, query, snapshot
from harness.project import Project, revision_id

pytestmark = pytest.mark.postgres

# The migration the blocked session is in the way of, and one that reports its settings.
ADD_SKU = 'op.add_column("item", sa.Column("sku", sa.String(20)))'
RECORD_SETTINGS = (
    'op.execute("CREATE TABLE seen AS SELECT '
    "current_setting('lock_timeout') AS lock_timeout, "
    "current_setting('statement_timeout') AS statement_timeout\")"
)


@pytest.fixture
def service(request: pytest.FixtureRequest, new_project: NewProject, pg_url: str) -> Project:
    """The example service at its first revision, on PostgreSQL; asyncio if indirect says so."""
    service = new_project(database_url=pg_url, **getattr(request, "param", {}))
    service.autogenerate("create item")
    service.command("upgrade", "head")
    return service


def add_revision(service: Project, upgrade: str) -> str:
    head = revision_id(service.versions()[-1])
    service.write_revision("b002", head, upgrade)
    return head


@pytest.fixture
def reader_in_a_long_transaction(service: Project) -> Iterator[sa.Connection]:
    """Another session that read the item table and left its transaction open."""
    engine = sa.create_engine(service.database_url, poolclass=sa.NullPool)
    connection = engine.connect()
    connection.execute(sa.text("SELECT count(*) FROM item"))  # holds ACCESS SHARE until it ends
    yield connection
    connection.close()
    engine.dispose()


@pytest.mark.parametrize("service", [{}, {"use_async": True}], ids=["sync", "async"], indirect=True)
def test_a_blocked_migration_fails_within_the_lock_timeout_and_changes_nothing(
    service: Project, reader_in_a_long_transaction: sa.Connection
) -> None:
    first = add_revision(service, ADD_SKU)
    service.env["SHOP_MIGRATION_LOCK_TIMEOUT"] = "500ms"
    service.env["SHOP_MIGRATION_LOCK_RETRIES"] = "0"  # retried: tests/test_production.py
    before = snapshot(service.database_url)

    started = time.monotonic()
    with pytest.raises(CommandError) as failed:
        service.command("upgrade", "head")
    waited = time.monotonic() - started

    assert 0.5 <= waited < 3, waited
    message = str(failed.value)
    assert message == (
        "The migration waited longer than 500ms (SHOP_MIGRATION_LOCK_TIMEOUT) for a lock on "
        "table item, which another session holds, and was rolled back. Retry with "
        "the same command once that session is done, or raise "
        "SHOP_MIGRATION_LOCK_TIMEOUT (0 waits as long as it takes)."
    )
    assert_no_password(message)
    assert snapshot(service.database_url) == before
    assert service.version_rows() == [first]
    # The command line names the command to run again.
    typed = service.db("upgrade", "head", check=False)
    assert typed.returncode == 255
    assert (
        typed.stderr.strip()
        .splitlines()[-1]
        .endswith(
            "Retry with `python -m shop db upgrade head` once that session is done, or raise "
            "SHOP_MIGRATION_LOCK_TIMEOUT (0 waits as long as it takes)."
        )
    )

    # Once the other session is done, the same command goes through.
    reader_in_a_long_transaction.rollback()
    service.command("upgrade", "head")
    assert "sku" in service.columns("item")


@pytest.mark.parametrize("service", [{}, {"use_async": True}], ids=["sync", "async"], indirect=True)
def test_a_statement_running_past_the_statement_timeout_is_rolled_back(service: Project) -> None:
    first = add_revision(service, f'{ADD_SKU}\nop.execute("SELECT pg_sleep(5)")')
    service.env["SHOP_MIGRATION_STATEMENT_TIMEOUT"] = "300ms"

    started = time.monotonic()
    with pytest.raises(CommandError) as failed:
        service.command("upgrade", "head")

    assert time.monotonic() - started < 3
    assert str(failed.value) == (
        "A migration statement ran longer than 300ms (SHOP_MIGRATION_STATEMENT_TIMEOUT) and "
        "was rolled back: SELECT pg_sleep(5). Raise SHOP_MIGRATION_STATEMENT_TIMEOUT "
        "(0 turns it off) and retry with the same command."
    )
    assert "sku" not in service.columns("item")
    assert service.version_rows() == [first]


@pytest.mark.parametrize(
    ("environment", "seen"),
    [({}, ("5s", "1h")), ({"LOCK": "750ms", "STATEMENT": "0"}, ("750ms", "0"))],
    ids=["defaults", "set"],
)
def test_the_timeouts_hold_in_each_migration_and_nowhere_else(
    service: Project, environment: dict[str, str], seen: tuple[str, str]
) -> None:
    add_revision(service, RECORD_SETTINGS)
    for name, value in environment.items():
        service.env[f"SHOP_MIGRATION_{name}_TIMEOUT"] = value
    # The application hands over its own connection, as the README shows.
    engine = sa.create_engine(service.database_url, poolclass=sa.NullPool)
    try:
        with engine.connect() as connection:
            service.command("upgrade", "head", attributes={"connection": connection})
            # The migrations saw the timeouts...
            assert query(service.database_url, "SELECT * FROM seen") == [seen]
            # ...and the application's connection does not, after them.
            assert connection.execute(sa.text("SHOW lock_timeout")).scalar() == "0"
            assert connection.execute(sa.text("SHOW statement_timeout")).scalar() == "0"
    finally:
        engine.dispose()
    assert query(service.database_url, "SHOW lock_timeout") == [("0",)]  # a new session


def test_a_replica_waiting_for_the_migration_lock_is_not_cut_short(service: Project) -> None:
    add_revision(service, ADD_SKU)
    service.env["SHOP_MIGRATION_LOCK_TIMEOUT"] = "100ms"
    errors: list[BaseException] = []

    def upgrade() -> None:
        try:
            service.command("upgrade", "head")
        except BaseException as error:  # reported below
            errors.append(error)

    with service.migration_lock_held():  # another replica, migrating now
        waiting = threading.Thread(target=upgrade)
        waiting.start()
        time.sleep(0.5)  # five lock timeouts
        assert waiting.is_alive()
    waiting.join(timeout=30)  # that replica's migration is done: the lock is released

    assert errors == []
    assert "sku" in service.columns("item")


def test_a_timeout_that_is_not_a_duration_is_refused_before_anything_runs(
    service: Project,
) -> None:
    first = add_revision(service, ADD_SKU)
    service.env["SHOP_MIGRATION_LOCK_TIMEOUT"] = "5 seconds"

    with pytest.raises(CommandError) as refused:
        service.command("upgrade", "head")

    assert str(refused.value) == (
        "SHOP_MIGRATION_LOCK_TIMEOUT='5 seconds' is not a PostgreSQL duration: set it to a "
        "number with a unit, such as 5s, 500ms or 2min (0 turns the timeout off), or unset "
        "it for the default, 5s."
    )
    assert service.version_rows() == [first]


def test_inside_the_applications_own_transaction_its_settings_come_back(
    service: Project,
) -> None:
    add_revision(service, RECORD_SETTINGS)
    engine = sa.create_engine(service.database_url, poolclass=sa.NullPool)
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SET LOCAL lock_timeout = '42s'"))  # begins its transaction
            service.command("upgrade", "head", attributes={"connection": connection})
            assert connection.in_transaction()  # still the application's, not committed
            seen = connection.execute(sa.text("SELECT lock_timeout FROM seen")).scalar()
            after = connection.execute(sa.text("SHOW lock_timeout")).scalar()
            # A failure that is not the database's leaves the settings as they were too.
            with pytest.raises(CommandError, match="is not empty"), service.imported():
                from shop.migrate import alembic_config, create_schema_with

                config = alembic_config()
                config.attributes["connection"] = connection
                create_schema_with(config)
            after_failure = connection.execute(sa.text("SHOW lock_timeout")).scalar()
            connection.commit()
    finally:
        engine.dispose()
    assert (seen, after, after_failure) == ("5s", "42s", "42s")
