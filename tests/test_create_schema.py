"""``create_schema()``: an empty database at head from the models, without replaying revisions.

The fast path of the rendered project's test fixtures.  It runs under the
same lock and guards as an upgrade, in one transaction, and refuses a
database that is not empty, leaving it as it was.  The rendered project's own
``tests/test_create_schema.py`` proves the result is what the revisions
build; here it must also catch models and revisions that disagree, with a
diff a user can act on.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import inspect
import threading
import time
from collections.abc import Callable
from types import ModuleType

import pytest
import sqlalchemy as sa
from alembic.util import CommandError
from conftest import NewProject
from harness.database import assert_no_password, snapshot
from harness.project import Project

STATUS_COLUMN = '    status: Mapped[str] = mapped_column(String(20), server_default="draft")\n'


@pytest.fixture
def project(request: pytest.FixtureRequest, new_project: NewProject, backend_url: str) -> Project:
    """The example service after its first revision, with an empty database (asyncio: indirect)."""
    project = new_project(database_url=backend_url, **getattr(request, "param", {}))
    project.replace_in_models(
        "    created_at: Mapped[datetime]", STATUS_COLUMN + "    created_at: Mapped[datetime]"
    )
    project.autogenerate("create item")
    return project


def migrate_module(project: Project) -> ModuleType:
    """The project's ``migrate`` module (call inside ``project.imported()``)."""
    return importlib.import_module(f"{project.program_name}.migrate")


def create_schema(project: Project) -> None:
    with project.imported():
        created = migrate_module(project).create_schema()
        if inspect.iscoroutine(created):  # an asyncio service's API is awaited
            asyncio.run(created)


def head(project: Project) -> list[str]:
    output = project.command("heads").stdout
    return [line.split()[0] for line in output.splitlines()]


@pytest.mark.parametrize("project", [{}, {"use_async": True}], ids=["sync", "async"], indirect=True)
def test_an_empty_database_comes_to_head_from_the_models(project: Project) -> None:
    create_schema(project)

    assert project.tables() == {"item", "alembic_version"}
    assert project.version_rows() == head(project)
    assert "No new upgrade operations detected" in project.command("check").stdout
    # The application works on it: the models' defaults are the database's.
    engine = project.engine()
    try:
        with engine.begin() as connection:
            connection.execute(sa.text("INSERT INTO item (name) VALUES ('kettle')"))
            row = connection.execute(sa.text("SELECT status, created_at FROM item")).one()
    finally:
        engine.dispose()
    assert row[0] == "draft" and row[1] is not None
    # Later revisions apply on top, as on a replayed database.
    project.add_to_models(
        "class Tag(Base):\n    __tablename__ = 'tag'\n\n"
        "    id: Mapped[int] = mapped_column(primary_key=True)\n"
    )
    project.autogenerate("add tag")
    project.command("upgrade", "head")
    assert project.tables() == {"item", "tag", "alembic_version"}


@pytest.mark.parametrize("project", [{}, {"use_async": True}], ids=["sync", "async"], indirect=True)
@pytest.mark.parametrize("state", ["at head", "with a table of its own"])
def test_a_database_that_is_not_empty_is_refused_and_left_as_it_was(
    project: Project, state: str
) -> None:
    if state == "at head":
        project.command("upgrade", "head")
        found = f"is at revision {head(project)[0]}."
        next_step = "bring this one to head with `alembic upgrade head`."
    else:
        engine = project.engine()
        with engine.begin() as connection:
            connection.execute(sa.text("CREATE TABLE legacy (id INTEGER PRIMARY KEY)"))
            connection.execute(sa.text("INSERT INTO legacy (id) VALUES (1)"))
        engine.dispose()
        # No revision to upgrade from: `upgrade head` would fail on the tables.
        found = "has table legacy, and no revision."
        next_step = "point it at an empty one, or drop them first."
    before = snapshot(project.database_url)

    with pytest.raises(CommandError) as refused:
        create_schema(project)

    message = str(refused.value)
    assert "\n" not in message
    assert f"is not empty: it {found}" in message
    assert message.endswith(next_step)
    assert_no_password(message)
    assert snapshot(project.database_url) == before  # no alembic_version left behind either


def test_a_create_schema_that_fails_half_way_leaves_the_database_empty(project: Project) -> None:
    # The tables are created, then an index calling a function nobody defined fails.
    project.add_to_models("Index('ix_item_broken', func.no_such_function(Item.name))")
    project.replace_in_models("from sqlalchemy import ", "from sqlalchemy import Index, ")
    before = snapshot(project.database_url)

    with pytest.raises(sa.exc.DBAPIError, match="no_such_function"):
        create_schema(project)

    assert snapshot(project.database_url) == before
    assert project.tables() == set()


def test_create_schema_waits_for_a_migration_holding_the_lock(project: Project) -> None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            create_schema(project)
        except BaseException as error:  # reported by the test below
            errors.append(error)

    with project.migration_lock_held():
        worker = threading.Thread(target=run)
        worker.start()
        time.sleep(0.4)
        assert worker.is_alive()  # waiting for the lock...
        assert project.tables() == set()  # ...before it looked at the database
    worker.join(timeout=30)
    assert not worker.is_alive() and errors == []
    assert project.version_rows() == head(project)


def test_db_create_schema_on_the_command_line(new_project: NewProject) -> None:
    """What the command line adds (the backends are the tests' above): output, exit status."""
    project = new_project()
    # Before the first revision there is no head: said, and nothing is built.
    early = project.db("create_schema", check=False)
    assert early.returncode == 255
    assert early.stderr.strip().splitlines()[-1] == (
        "FAILED: There is no revision yet, so no head to build the database at: create the "
        f'first one with `python -m {project.program_name} db revision --autogenerate -m "create '
        'initial tables"`, then run create_schema again.'
    )
    assert project.tables() == set()
    project.autogenerate("create item")

    project.db("create_schema")
    assert project.version_rows() == head(project)

    refused = project.db("create_schema", check=False)

    assert refused.returncode == 255
    lines = refused.stderr.strip().splitlines()
    assert lines[-1].startswith("FAILED: The database "), refused.stderr
    assert lines[-1].endswith(f"with `python -m {project.program_name} db upgrade head`.")


# -- the rendered equality test catches models and revisions that disagree ------------


def equality_test(project: Project) -> Callable[[], None]:
    """The project's own equality test, run here on its database (call inside imported())."""

    def load(name: str) -> ModuleType:
        path = project.path / "tests" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"rendered_{name}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    conftest, tests = load("conftest"), load("test_create_schema")
    url = project.database_url

    def run() -> None:
        tests.test_create_schema_builds_what_the_revisions_build(
            url, lambda: conftest.on_database(url, conftest.wipe), conftest.on_database
        )

    return run


def equality_failure(project: Project) -> str:
    with project.imported():
        with pytest.raises(pytest.fail.Exception) as failed:
            equality_test(project)()
    return str(failed.value)


def test_the_equality_test_passes_when_models_and_revisions_agree(project: Project) -> None:
    with project.imported():
        equality_test(project)()
    assert project.tables() == {"item", "alembic_version"}  # the create_schema database


def test_a_constraint_renamed_by_hand_in_a_revision_is_shown(project: Project) -> None:
    (revision,) = project.versions()
    revision.write_text(revision.read_text().replace("op.f('uq_item_name')", "'item_name_key'"))

    failure = equality_failure(project)

    assert "builds another schema than replaying every revision" in failure
    renamed = (
        "  table item, unique constraint item_name_key\n    revisions:     column_names=['name']"
    )
    assert renamed in failure
    assert failure.split(renamed)[1].splitlines()[1] == "    create_schema: (none)"
    named = "  table item, unique constraint uq_item_name\n    revisions:     (none)\n"
    assert named + "    create_schema: column_names=['name']" in failure
    assert " index " not in failure  # PostgreSQL's index of the constraint is not repeated


def test_a_server_default_changed_only_in_the_models_is_shown(project: Project) -> None:
    project.replace_in_models('server_default="draft"', 'server_default="new"')

    failure = equality_failure(project)

    assert "  table item, column status, server default\n    revisions:     'draft'" in failure
    assert "\n    create_schema: 'new'" in failure
    assert "If test_models_match_migrations fails too, generate the revision" in failure


def test_a_column_type_changed_only_in_a_revision_is_shown(project: Project) -> None:
    (revision,) = project.versions()
    text = revision.read_text()
    assert "sa.Column('name', sa.String(length=100)" in text
    revision.write_text(text.replace("sa.String(length=100)", "sa.String(length=250)"))

    failure = equality_failure(project)

    assert "  table item, column name\n" in failure
    assert "type=VARCHAR(250)" in failure.split("table item, column name\n")[1].splitlines()[0]
    assert "type=VARCHAR(100)" in failure.split("table item, column name\n")[1].splitlines()[1]


@pytest.mark.postgres
def test_leftovers_in_other_schemas_and_enum_types_count_as_not_empty(
    new_project: NewProject, pg_url: str
) -> None:
    project = new_project(database_url=pg_url)
    project.add_to_models(
        "class Archived(Base):\n"
        "    __tablename__ = 'archived'\n"
        "    __table_args__ = {'schema': 'archive'}\n\n"
        "    id: Mapped[int] = mapped_column(primary_key=True)\n"
    )
    project.autogenerate("create item and archive.archived")
    engine = project.engine()
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE SCHEMA archive"))
        connection.execute(sa.text("CREATE TABLE archive.archived (old_id INTEGER)"))
        connection.execute(sa.text("CREATE TYPE mood AS ENUM ('happy')"))
    engine.dispose()
    before = snapshot(project.database_url)

    leftovers = "it has table archive.archived, type mood, and no revision. "
    with pytest.raises(CommandError, match=leftovers):
        create_schema(project)

    assert snapshot(project.database_url) == before
    assert project.version_rows() == []
