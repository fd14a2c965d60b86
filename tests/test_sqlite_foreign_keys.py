"""SQLite batch rebuilds never delete data, and never leave broken foreign keys.

The story: a library service has authors and their books (``ON DELETE
CASCADE``); the application writes rows through its own engine, which turns
SQLite foreign keys on.  Changing a column type of ``author`` makes Alembic
rebuild the table (copy, ``DROP TABLE author``, rename): with foreign keys on,
that drop would silently delete every book (the control test shows it does,
without the guard).  The migrations run with them off, then ``PRAGMA
foreign_key_check`` fails any migration that left orphans.  Each upgrade runs
three ways: Alembic's upgrade command, and from Python with the application's
Engine or Connection handed over.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import re
import shutil
import sqlite3
from pathlib import Path
from types import ModuleType

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.util import CommandError
from harness.database import query, snapshot
from harness.project import Project, Renderer
from sqlalchemy import event, orm
from sqlalchemy.ext.asyncio import AsyncEngine

MODELS = """
from sqlalchemy import ForeignKey


class Author(Base):
    __tablename__ = "author"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))


class Book(Base):
    __tablename__ = "book"

    id: Mapped[int] = mapped_column(primary_key=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("author.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(100))
"""

HOW = ["alembic", "engine", "connection"]


def package(project: Project, module: str) -> ModuleType:
    """``<package>.<module>``, imported inside ``project.imported()``."""
    return importlib.import_module(f"{project.program_name}.{module}")


def add_rows(project: Project) -> None:
    """The application adds 3 authors and 6 books through the rendered create_db_engine().

    (An asyncio service's rows are added through a sync engine on the same file.)
    """
    with project.imported():
        db, models = package(project, "db"), package(project, "models")
        engine = db.create_db_engine()
        if isinstance(engine, AsyncEngine):
            asyncio.run(engine.dispose())
            engine = project.engine()
            event.listen(engine, "connect", db._enable_sqlite_foreign_keys)  # the service's own
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        with orm.sessionmaker(engine).begin() as session:
            for a in range(1, 4):
                session.add(models.Author(id=a, name=f"author {a}"))
                session.flush()
                session.add_all(models.Book(author_id=a, title=f"book {a}.{b}") for b in (1, 2))
        engine.dispose()


def upgrade(project: Project, how: str) -> None:
    """Upgrade to head the way ``how`` says (README, "Migrating from Python")."""
    if how == "alembic":
        project.command("upgrade", "head")
        return
    with project.imported():
        config = package(project, "migrate").alembic_config()
        engine = package(project, "db").create_db_engine()  # foreign keys on, like the app's
        if isinstance(engine, AsyncEngine):
            upgrade_with_async_engine(engine, config, how)
            return
        try:
            if how == "engine":
                config.attributes["connection"] = engine
                command.upgrade(config, "head")
            elif how == "connection":
                with engine.connect() as connection:
                    config.attributes["connection"] = connection
                    try:
                        command.upgrade(config, "head")
                    finally:
                        # The application's connection got its foreign keys back.
                        foreign_keys = connection.exec_driver_sql("PRAGMA foreign_keys")
                        assert foreign_keys.scalar() == 1
            else:  # Alembic's cookbook: "with engine.begin() as connection"
                with engine.begin() as connection:
                    config.attributes["connection"] = connection
                    command.upgrade(config, "head")
        finally:
            engine.dispose()


def upgrade_with_async_engine(engine: AsyncEngine, config: Config, how: str) -> None:
    """An asyncio application hands over its AsyncEngine (as pytest-alembic does), or, in
    its event loop, a connection through ``run_sync`` (Alembic's cookbook, asyncio)."""

    def upgrade_on(connection: sa.Connection) -> None:
        config.attributes["connection"] = connection
        try:
            command.upgrade(config, "head")
        finally:
            # The application's connection got its foreign keys back (an AssertionError
            # here shows the migration's own error as its context).
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1

    async def in_the_applications_loop() -> None:
        try:
            if how == "connection":
                async with engine.connect() as connection:
                    await connection.run_sync(upgrade_on)
            else:
                config.attributes["connection"] = engine
                await asyncio.to_thread(command.upgrade, config, "head")
        finally:
            await engine.dispose()

    asyncio.run(in_the_applications_loop())


@pytest.fixture(scope="module")
def library_original(renderer: Renderer, tmp_path_factory: pytest.TempPathFactory) -> Project:
    """Authors and books, migrated, with 3 authors and 6 books added by the app."""
    service = renderer.new(tmp_path_factory.mktemp("library"), program_name="library")
    service.add_to_models(MODELS)
    service.autogenerate("authors and books")
    service.command("upgrade", "head")
    add_rows(service)
    return service


@pytest.fixture(scope="module")
def async_library_original(renderer: Renderer, tmp_path_factory: pytest.TempPathFactory) -> Project:
    """The same library, as an asyncio service."""
    service = renderer.new(
        tmp_path_factory.mktemp("library"), program_name="library", use_async=True
    )
    service.add_to_models(MODELS)
    service.autogenerate("authors and books")
    service.command("upgrade", "head")
    add_rows(service)
    return service


@pytest.fixture
def library(request: pytest.FixtureRequest, tmp_path: Path) -> Project:
    """A private copy of the library (project folder and database) for one test.

    The asyncio service's when the test says so (``indirect``, "async").
    """
    variant = getattr(request, "param", "sync")
    library_original: Project = request.getfixturevalue(
        "async_library_original" if variant == "async" else "library_original"
    )
    path = tmp_path / library_original.program_name
    shutil.copytree(library_original.path, path)
    database = tmp_path / "library.sqlite"
    shutil.copy(database_file(library_original), database)
    env = {**library_original.env, library_original.url_env: f"sqlite:///{database}"}
    return dataclasses.replace(library_original, path=path, env=env)


def books(service: Project) -> list[tuple[object, ...]]:
    return query(service.database_url, "SELECT id, author_id, title FROM book ORDER BY id")


def database_file(service: Project) -> Path:
    return Path(service.database_url.removeprefix("sqlite:///"))


def longer_author_names(library: Project) -> str:
    """Widen author.name in the models and autogenerate; return the revision."""
    library.replace_in_models(
        "name: Mapped[str] = mapped_column(String(50))",
        "name: Mapped[str] = mapped_column(String(200))",
    )
    revision = library.autogenerate("longer author names").read_text()
    assert "batch_alter_table('author'" in revision
    assert "type_=sa.String(length=200)" in revision
    return revision


def test_without_the_guard_a_rebuild_deletes_the_books(library: Project) -> None:
    """The control experiment: the trap is real, and sqlite_migration_mode() is what avoids it."""
    assert len(books(library)) == 6
    guard = "        guards.sqlite_migration_mode(connection),\n"  # one of the guards env.py enters
    env_py = library.env_py.read_text()
    assert guard in env_py
    library.env_py.write_text(env_py.replace(guard, ""))
    longer_author_names(library)

    upgrade(library, "alembic")

    assert books(library) == []  # DROP TABLE author cascaded to every book
    assert len(query(library.database_url, "SELECT id FROM author")) == 3


@pytest.mark.parametrize("library", ["sync", "async"], indirect=True)
@pytest.mark.parametrize("how", HOW)
def test_a_batch_rebuild_of_the_parent_keeps_every_child_row(library: Project, how: str) -> None:
    before = books(library)
    authors = query(library.database_url, "SELECT id, name FROM author ORDER BY id")
    longer_author_names(library)

    upgrade(library, how)

    assert books(library) == before
    assert query(library.database_url, "SELECT id, name FROM author ORDER BY id") == authors
    assert query(library.database_url, "PRAGMA foreign_key_check") == []
    (ddl,) = query(library.database_url, "SELECT sql FROM sqlite_master WHERE name = 'author'")
    assert "VARCHAR(200)" in str(ddl[0])  # the table really was rebuilt
    assert "No new upgrade operations detected" in library.command("check").stdout


ORPHANS = """
op.create_table("shelf", sa.Column("id", sa.Integer, primary_key=True))
# Foreign keys are off while migrating: nothing cascades to the books.
op.execute("DELETE FROM author WHERE id = 1")
"""
ORPHANS_FAILED = "The migration left 2 row(s) violating foreign keys in table(s) book"


@pytest.mark.parametrize("library", ["sync", "async"], indirect=True)
@pytest.mark.parametrize("how", HOW)
def test_a_migration_leaving_orphans_fails_and_rolls_back(library: Project, how: str) -> None:
    head = library.version_rows()
    library.write_revision("orphans", head[0], ORPHANS)
    before = snapshot(library.database_url)

    with pytest.raises(CommandError, match=re.escape(ORPHANS_FAILED)) as error:
        upgrade(library, how)

    assert "so it was rolled back" in str(error.value)
    assert snapshot(library.database_url) == before
    assert library.version_rows() == head


def test_the_command_line_reports_orphans_in_one_line(library: Project) -> None:
    head = library.version_rows()
    library.write_revision("orphans", head[0], ORPHANS)

    result = library.alembic("upgrade", "head", check=False)

    assert result.returncode != 0
    assert f"FAILED: {ORPHANS_FAILED}" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert library.version_rows() == head


def test_a_connection_inside_a_transaction_is_refused_with_the_remedy(library: Project) -> None:
    """Foreign keys cannot be turned off inside it, nor restored after its commit."""
    longer_author_names(library)
    before = snapshot(library.database_url)

    with pytest.raises(CommandError) as error:
        upgrade(library, "transaction")

    assert "The SQLite connection given to the migrations has foreign keys on" in str(error.value)
    assert "call connection.commit() before handing it over" in str(error.value)
    assert snapshot(library.database_url) == before


def test_rows_that_broke_a_foreign_key_before_do_not_block_migrations(library: Project) -> None:
    """An orphan written with foreign keys off (by another tool) is not the migration's doing."""
    connection = sqlite3.connect(database_file(library))  # foreign keys off, as sqlite3 has them
    connection.execute("INSERT INTO book (id, author_id, title) VALUES (99, 42, 'orphan')")
    connection.commit()
    connection.close()
    head = library.version_rows()
    library.write_revision(
        "shelf",
        head[0],
        'op.create_table("shelf", sa.Column("id", sa.Integer, primary_key=True))',
        'op.drop_table("shelf")',
    )

    library.command("upgrade", "head")
    assert "shelf" in library.tables()
    library.command("downgrade", "-1")
    assert "shelf" not in library.tables()

    # A migration that adds an orphan of its own still fails.
    library.write_revision("orphans", head[0], ORPHANS)
    (library.package / "migrations" / "versions" / "shelf_handwritten.py").unlink()
    with pytest.raises(CommandError, match=re.escape("left 2 row(s) violating foreign keys")):
        library.command("upgrade", "head")
