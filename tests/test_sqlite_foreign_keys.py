"""SQLite batch rebuilds never delete data, and never leave broken foreign keys.

The story: a library service has authors and their books (``ON DELETE
CASCADE``); the application writes rows through its own engine, which turns
SQLite foreign keys on.  Changing a column type of ``author`` makes Alembic
rebuild the table (copy, ``DROP TABLE author``, rename): with foreign keys on,
that drop would silently delete every book.  The migrations run with them
off, then ``PRAGMA foreign_key_check`` fails any migration that left orphans.
Each upgrade runs three ways: the ``alembic`` command, and from Python with
the application's Engine or Connection handed over.
"""

from __future__ import annotations

import dataclasses
import shutil
import sqlite3
from pathlib import Path

import pytest
from conftest import Render, Service
from migration_helpers import query, snapshot, write_revision

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

# The application adds rows through the rendered create_db_engine().
ADD_ROWS = """
from {pkg}.db import create_db_engine, make_sessionmaker
from {pkg}.models import Author, Book

engine = create_db_engine()
with engine.connect() as connection:
    assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
with make_sessionmaker(engine).begin() as session:
    for a in range(1, 4):
        session.add(Author(id=a, name=f"author {{a}}"))
        session.flush()
        session.add_all(Book(author_id=a, title=f"book {{a}}.{{b}}") for b in (1, 2))
"""

# Upgrade with the application's engine handed over (README, "Migrating from Python").
UPGRADE_FROM_APP = """
import sys
from alembic import command
from alembic.util import CommandError
from {pkg} import migrate
from {pkg}.db import create_db_engine

engine = create_db_engine()  # foreign keys on, like the application's


def foreign_keys(connection):
    return connection.exec_driver_sql("PRAGMA foreign_keys").scalar()


config = migrate.alembic_config()
try:
    if sys.argv[1] == "engine":
        config.attributes["connection"] = engine
        command.upgrade(config, "head")
    elif sys.argv[1] == "connection":
        with engine.connect() as connection:
            config.attributes["connection"] = connection
            try:
                command.upgrade(config, "head")
            finally:
                print("foreign keys after:", foreign_keys(connection))
    else:  # Alembic's cookbook: "with engine.begin() as connection"
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
except CommandError as error:
    print(f"FAILED: {{error}}")
    sys.exit(1)
"""

HOW = ["alembic", "engine", "connection"]


def upgrade(service: Service, how: str, check: bool = True) -> str:
    """Upgrade to head the way ``how`` says; return the output."""
    if how == "alembic":
        result = service.alembic("upgrade", "head", check=check)
    else:
        script = UPGRADE_FROM_APP.format(pkg=service.program_name)
        result = service.run(service.python, "-c", script, how, check=check)
        if how == "connection":
            # The application's connection got its foreign keys back.
            assert "foreign keys after: 1" in result.stdout
    return f"exit {result.returncode}\n{result.stdout}{result.stderr}"


@pytest.fixture(scope="module")
def library_original(render_shared: Render) -> Service:
    """Authors and books, migrated, with 3 authors and 6 books added by the app."""
    service = render_shared(program_name="library")
    service.add_to_models(MODELS)
    service.autogenerate("authors and books")
    service.alembic("upgrade", "head")
    service.run(service.python, "-c", ADD_ROWS.format(pkg=service.program_name))
    return service


@pytest.fixture
def library(library_original: Service, tmp_path: Path) -> Service:
    """A private copy of the library (project folder and database) for one test."""
    path = tmp_path / library_original.program_name
    shutil.copytree(library_original.path, path)
    database = tmp_path / "library.sqlite"
    shutil.copy(database_file(library_original), database)
    env = {**library_original.env, library_original.url_env: f"sqlite:///{database}"}
    return dataclasses.replace(library_original, path=path, env=env)


def books(service: Service) -> list[tuple[object, ...]]:
    return query(service.database_url, "SELECT id, author_id, title FROM book ORDER BY id")


def database_file(service: Service) -> Path:
    return Path(service.database_url.removeprefix("sqlite:///"))


def test_with_foreign_keys_on_a_rebuild_would_delete_the_books(
    library: Service, tmp_path: Path
) -> None:
    """The trap is real: what a batch rebuild does, under the app's settings."""
    assert len(books(library)) == 6
    copy = tmp_path / "copy.sqlite"
    shutil.copy(database_file(library), copy)
    connection = sqlite3.connect(copy)
    connection.execute("PRAGMA foreign_keys=ON")
    connection.execute("DROP TABLE author")  # step 3 of Alembic's move-and-copy
    connection.commit()
    assert connection.execute("SELECT COUNT(*) FROM book").fetchone() == (0,)
    connection.close()


@pytest.mark.parametrize("how", HOW)
def test_a_batch_rebuild_of_the_parent_keeps_every_child_row(library: Service, how: str) -> None:
    before = books(library)
    authors = query(library.database_url, "SELECT id, name FROM author ORDER BY id")
    library.replace_in_models(
        "name: Mapped[str] = mapped_column(String(50))",
        "name: Mapped[str] = mapped_column(String(200))",
    )
    revision = library.autogenerate("longer author names").read_text()
    assert "batch_alter_table('author'" in revision
    assert "type_=sa.String(length=200)" in revision

    upgrade(library, how)

    assert books(library) == before
    assert query(library.database_url, "SELECT id, name FROM author ORDER BY id") == authors
    assert query(library.database_url, "PRAGMA foreign_key_check") == []
    (ddl,) = query(library.database_url, "SELECT sql FROM sqlite_master WHERE name = 'author'")
    assert "VARCHAR(200)" in str(ddl[0])  # the table really was rebuilt
    if how == "alembic":
        assert library.alembic("check").returncode == 0


@pytest.mark.parametrize("how", HOW)
def test_a_migration_leaving_orphans_fails_and_rolls_back(library: Service, how: str) -> None:
    head = library.version_rows()
    write_revision(
        library,
        "orphans",
        head[0],
        """
        op.create_table("shelf", sa.Column("id", sa.Integer, primary_key=True))
        # Foreign keys are off while migrating: nothing cascades to the books.
        op.execute("DELETE FROM author WHERE id = 1")
        """,
    )
    before = snapshot(library.database_url)

    output = upgrade(library, how, check=False)

    assert not output.startswith("exit 0\n"), output
    assert "FAILED: The migration left 2 row(s) violating foreign keys in table(s) book" in output
    assert "rolled back" in output
    assert "Traceback" not in output
    assert snapshot(library.database_url) == before
    assert library.version_rows() == head


def test_a_connection_inside_a_transaction_is_refused_with_the_remedy(library: Service) -> None:
    """Foreign keys cannot be turned off inside it, nor restored after its commit."""
    library.replace_in_models("String(50)", "String(200)")
    library.autogenerate("longer author names")
    before = snapshot(library.database_url)

    output = upgrade(library, "transaction", check=False)

    assert not output.startswith("exit 0\n"), output
    assert "FAILED: The SQLite connection given to the migrations has foreign keys on" in output
    assert "call connection.commit() before handing it over" in output
    assert snapshot(library.database_url) == before
