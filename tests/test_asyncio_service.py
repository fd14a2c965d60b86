"""An asyncio service migrates at start-up, awaited in its own running event loop.

The asyncio variant (``use_async``) keeps the migrations' guarantees (the other
test files run them on both variants); these are what only an asyncio
application does: await ``migrate.upgrade()`` while its loop keeps serving,
then use its ``AsyncSession``; and a call of Alembic's synchronous API from
inside the loop says what to await instead.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.util import CommandError
from conftest import NewProject
from harness.database import assert_no_password, query
from harness.project import Project, revision_id


@pytest.fixture
def service(new_project: NewProject, backend_url: str) -> Project:
    """An asyncio service with its first revision and a slow second one."""
    service = new_project(database_url=backend_url, program_name="tickets", use_async=True)
    first = revision_id(service.autogenerate("create item"))
    service.write_revision(
        "slow02",
        first,
        "time.sleep(0.3)  # a long migration: the application's loop must go on",
        imports="import time",
    )
    return service


def test_an_application_awaits_the_upgrade_at_start_up_and_its_loop_keeps_running(
    service: Project,
) -> None:
    with service.imported():
        db = importlib.import_module("tickets.db")
        migrate = importlib.import_module("tickets.migrate")
        models = importlib.import_module("tickets.models")

        async def start_up() -> tuple[int, float, list[str]]:
            ticks = 0

            async def heartbeat() -> None:  # the application serving meanwhile
                nonlocal ticks
                while True:
                    ticks += 1
                    await asyncio.sleep(0.01)

            beating = asyncio.create_task(heartbeat())
            started = time.monotonic()
            await migrate.upgrade()  # in the running loop, as a lifespan handler does
            took = time.monotonic() - started
            beating.cancel()
            engine = db.create_db_engine()
            async with db.make_sessionmaker(engine)() as session:
                session.add(models.Item(name="kettle"))
                await session.commit()
            await engine.dispose()
            return ticks, took, list(await migrate.current())

        ticks, took, heads = asyncio.run(start_up())

    assert took >= 0.3
    assert ticks >= 10, f"the loop ticked {ticks} times during a {took:.2f} s upgrade"
    assert heads == ["slow02"]
    assert query(service.database_url, "SELECT name FROM item") == [("kettle",)]


def test_alembic_called_inside_the_running_loop_says_what_to_await(service: Project) -> None:
    """``asyncio.run()`` cannot run there: one line, and no coroutine left never awaited."""
    with service.imported():
        config = importlib.import_module("tickets.migrate").alembic_config()

        async def application() -> None:
            command.upgrade(config, "head")

        with pytest.raises(CommandError) as error:
            asyncio.run(application())

    message = str(error.value)
    assert message == (
        "The migrations run in an event loop of their own, and this thread is running one: "
        "await the service's API instead (`await tickets.migrate.upgrade()`), which runs "
        "them in a worker thread."
    )
    assert_no_password(message)
    assert service.tables() == set()


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_api_calls_at_once_in_one_process_each_run_whole(
    new_project: NewProject, backend_url: str, use_async: bool
) -> None:
    """Alembic's context is one per process: two start-up upgrades at once must not mix
    their commands; readiness probes reading current() meanwhile are answered."""
    service = new_project(database_url=backend_url, program_name="tickets", use_async=use_async)
    first = revision_id(service.autogenerate("create item"))
    service.write_revision("slow02", first, "time.sleep(0.3)", imports="import time")
    with service.imported():
        migrate = importlib.import_module("tickets.migrate")
        if use_async:

            async def start_ups_and_probes() -> tuple[list[object], list[object]]:
                upgrades = asyncio.gather(migrate.upgrade(), migrate.upgrade())
                probes = asyncio.gather(*(migrate.current() for _ in range(4)))  # meanwhile
                return list(await upgrades), list(await probes)

            upgraded, probed = asyncio.run(start_ups_and_probes())
            heads = asyncio.run(migrate.current())
        else:
            with ThreadPoolExecutor(6) as threads:
                upgrading = [threads.submit(migrate.upgrade) for _ in range(2)]
                probes = [threads.submit(migrate.current) for _ in range(4)]
                upgraded = [upgrade.result() for upgrade in upgrading]
                probed = [probe.result() for probe in probes]
            heads = migrate.current()

    assert upgraded == [None, None]
    assert heads == ("slow02",)
    assert all(seen in [(), (first,), ("slow02",)] for seen in probed), probed
    assert service.version_rows() == ["slow02"]
    assert query(service.database_url, "SELECT count(*) FROM item") == [(0,)]


def test_the_applications_own_async_engine_handed_over_is_left_to_its_loop(
    service: Project,
) -> None:
    """Its pooled connections belong to the application's loop: the migrations use their
    own to the same database, and the application's engine goes on working after them."""
    with service.imported():
        db = importlib.import_module("tickets.db")
        config = importlib.import_module("tickets.migrate").alembic_config()

        async def application() -> list[str]:
            engine = db.create_db_engine()
            async with engine.connect() as connection:  # a pooled connection, of this loop
                await connection.execute(sa.text("SELECT 1"))
            config.attributes["connection"] = engine
            await asyncio.to_thread(command.upgrade, config, "head")
            async with engine.connect() as connection:
                found = await connection.execute(sa.text("SELECT version_num FROM alembic_version"))
                versions = list(found.scalars())
            await engine.dispose()
            return versions

        assert asyncio.run(application()) == ["slow02"]


def test_an_asyncio_service_migrates_through_a_sync_engine_handed_over(service: Project) -> None:
    """The README's "hand over your own Engine": a plain (sync) one works here too."""
    with service.imported():
        config = importlib.import_module("tickets.migrate").alembic_config()
        engine = sa.create_engine(service.database_url, poolclass=sa.NullPool)
        config.attributes["connection"] = engine
        try:
            command.upgrade(config, "head")
        finally:
            engine.dispose()
    assert service.version_rows() == ["slow02"]
