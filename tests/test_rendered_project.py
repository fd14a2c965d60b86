"""The rendered project passes its own checks: its tests, ruff, mypy and its CI.

The project is installed as its README says (``pip install -e '.[test]'``)
into a fresh virtual environment, with pytest 9.2.0: the version whose
collection pytest-alembic 0.13.1 crashes when ``tests/conftest.py`` exists,
unless its tests are imported explicitly (as the rendered project does).
Every step of the rendered CI workflow then runs here, against this suite's
PostgreSQL server standing in for the workflow's service container.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import subprocess
import sys
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from conftest import NewProject
from harness import ROOT
from harness.database import AWKWARD_PASSWORD, assert_no_password, query
from harness.postgres import PostgresCluster
from harness.project import Project, Renderer, revision_id
from harness.venv import make_venv

PROGRAM = "ledger"

MIGRATION_TESTS = [
    "tests/test_migrations.py::test_single_head_revision",
    "tests/test_migrations.py::test_upgrade",
    "tests/test_migrations.py::test_up_down_consistency",
    "tests/test_migrations.py::test_models_match_migrations",
]

EQUALITY_TEST = "tests/test_create_schema.py::test_create_schema_builds_what_the_revisions_build"

# The rendered tests of the fixtures: each test's database writes are gone for the next.
FIXTURE_TESTS = [
    *(
        "tests/test_fixtures.py::test_each_session_starts_at_head_whatever_the_test_before_left"
        f"[{left}]"
        for left in ("commit", "commit-again", "failed-statement", "failed-statement-again")
    ),
    "tests/test_fixtures.py::test_commit_and_rollback_work_as_in_the_application",
    "tests/test_fixtures.py::test_a_database_at_head_is_the_tests_own[first]",
    "tests/test_fixtures.py::test_a_database_at_head_is_the_tests_own[second]",
    "tests/test_fixtures.py::test_a_database_at_head_is_the_tests_own[third]",
]

# Model edits made without a revision, and a word the drift report must show.
UNMIGRATED_EDITS = {
    "new table": (
        None,
        '''
class Invoice(Base):
    """A bill sent to a customer."""

    __tablename__ = "invoice"

    id: Mapped[int] = mapped_column(primary_key=True)
''',
        "invoice",
    ),
    "new column": (
        "    created_at: Mapped[datetime]",
        "    sku: Mapped[str | None] = mapped_column(String(40))\n    created_at: Mapped[datetime]",
        "sku",
    ),
}

# The tests using the installed project run on one xdist worker: one environment.
uses_the_venv = pytest.mark.xdist_group("rendered_project_venv")


@pytest.fixture(scope="module")
def rendered(renderer: Renderer, tmp_path_factory: pytest.TempPathFactory) -> Project:
    return renderer.new(tmp_path_factory.mktemp("rendered"), program_name=PROGRAM)


@pytest.fixture(scope="module")
def venv(rendered: Project, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One environment for the module: the project installed with its test extra."""
    path = tmp_path_factory.mktemp("venv") / "venv"
    make_venv(path, "-e", f"{rendered.path}[test,postgresql]", "pytest==9.2.0")
    return path


@pytest.fixture(scope="module")
def project(rendered: Project, venv: Path) -> Project:
    """The project, installed in ``venv``, after the README's first-migration step."""
    service = dataclasses.replace(rendered, python=str(venv / "bin" / "python"))
    service.autogenerate("create initial tables")
    service.command("upgrade", "head")
    return service


# The longest package name the validator takes (40), the newest Python, PostgreSQL,
# asyncio: every answer other than the defaults (which the CI-workflow test checks).
OTHER_ANSWERS = {
    "program_name": "acme_billing_and_invoicing_core_services",
    "project_name": "acme-billing-and-invoicing-core-services-for-enterprise-customers",
    "database": "postgresql",
    "python_version": "3.14",
    "use_async": True,
}


@pytest.fixture
def other_project(new_project: NewProject) -> Project:
    """Other answers (PostgreSQL, newest Python, asyncio), after a first revision."""
    service = new_project(**OTHER_ANSWERS)
    service.autogenerate("create item")
    return service


def own_tests(
    service: Project, *args: str, python: str | None = None, **env: Any
) -> subprocess.CompletedProcess[str]:
    """Run the project's own test suite, each test's outcome shown (``-v``)."""
    return service.own_tests("-v", *args, python=python, **env)


#: A test's outcome in ``-v`` output: ``tests/x.py::t PASSED``, or with pytest-xdist
#: ``[gw0] [ 10%] PASSED tests/x.py::t``.
OUTCOME = re.compile(
    r"^(?:(?P<test>\S+::\S+) (?P<outcome>[A-Z]+)"
    r"|\[gw\d+\] \[ *\d+%\] (?P<xdist_outcome>[A-Z]+) (?P<xdist_test>\S+::\S+))",
    re.MULTILINE,
)


def outcomes(output: str) -> dict[str, str]:
    """``{test: "PASSED" | "FAILED" | "ERROR" | ...}`` from ``-v`` output, with xdist or not."""
    found = {}
    for match in OUTCOME.finditer(output):
        test = match["test"] or match["xdist_test"]
        found[test] = match["outcome"] or match["xdist_outcome"]
    return found


def assert_all_passed(result: subprocess.CompletedProcess[str] | str) -> None:
    """Every test passed, the four migration tests among them (``-v`` output)."""
    if isinstance(result, str):
        output = result
    else:
        output = result.stdout + result.stderr
        assert result.returncode == 0, output
    assert "FAILED" not in output and "ERROR" not in output, output
    for test in MIGRATION_TESTS:
        assert outcomes(output).get(test) == "PASSED", output
    assert re.search(r"=+ \d+ passed(, \d+ warnings?)? in ", output), output


def test_own_suite_passes_on_the_pytest_of_this_repository(new_project: NewProject) -> None:
    # The other side of the pytest 9.2 boundary (this repository pins pytest<9.2).
    project = new_project(program_name=PROGRAM)
    project.autogenerate("create initial tables")
    # With every pytest plugin this repository has installed (pytest-copier, ...).
    result = own_tests(project, python=sys.executable, with_our_plugins=True)
    assert f"pytest-{pytest.__version__}" in result.stdout
    assert "copier-" in result.stdout.split("plugins:")[1].splitlines()[0]
    assert_all_passed(result)
    assert_the_fixtures_kept_the_tests_apart(result.stdout)


@uses_the_venv
def test_own_suite_fails_with_the_autogenerate_hint_when_models_change_without_a_revision(
    project: Project,
) -> None:
    original = project.models.read_text()
    head_file = project.package / "migrations" / "versions" / "HEAD"
    recorded = head_file.read_text()
    try:
        for old, new, _ in UNMIGRATED_EDITS.values():  # a new table and a new column
            if old is None:
                project.add_to_models(new)
            else:
                project.replace_in_models(old, new)
        head_file.write_text("0123456789ab\n")  # a git conflict in it resolved by hand, wrongly
        result = own_tests(project)
    finally:
        project.models.write_text(original)
        head_file.write_text(recorded)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "tests/test_migrations.py::test_models_match_migrations FAILED" in output
    assert f"{MIGRATION_TESTS[0]} FAILED" in output
    for test in MIGRATION_TESTS[1:-1]:
        assert f"{test} PASSED" in output
    # The fast path's database (the models) is no longer the revisions' either.
    assert f"{EQUALITY_TEST} FAILED" in output
    assert re.search(r"=+ 3 failed, \d+ passed in ", output), output
    single = output[output.index("_ test_single_head_revision _") :].splitlines()[1:3]
    assert single[0].startswith(f"{PROGRAM}/migrations/versions/HEAD names 0123456789ab, but ")
    assert single[0].endswith(f"write it with `python -m {PROGRAM} db rebase`."), single
    assert single[1].startswith("___"), single  # that one line, no traceback
    drift = output[output.index("_ test_models_match_migrations _") :]
    assert 'alembic revision --autogenerate -m "describe the change"' in drift
    assert f"{PROGRAM}/migrations/versions/" in drift
    equality = output[output.index("_ test_create_schema_builds_what_the_revisions_build _") :]
    assert "If test_models_match_migrations fails too, generate the revision" in equality
    for _, _, shown in UNMIGRATED_EDITS.values():  # each change, in both reports
        assert shown in drift
        assert f"table {shown}" in equality or f"column {shown}" in equality


# The first revision, as the rendered README names it (its "Tests" section).
FIRST_REVISION = 'alembic revision --autogenerate -m "create initial tables"'
NO_REVISION_YET = (
    f"No revision yet: create the first one with `{FIRST_REVISION}`, then `alembic upgrade head`."
)
# The tests that need a revision: the schema at head, the migration history.
NEED_A_REVISION = [
    *MIGRATION_TESTS,
    EQUALITY_TEST,
    "tests/test_migrate.py::test_upgrade_from_python_reaches_head_and_back",
    "tests/test_models.py::test_an_item_is_stored_with_its_creation_time",
    "tests/test_models.py::test_two_items_cannot_share_a_name",
    *FIXTURE_TESTS,
]


def test_own_suite_before_the_first_revision_says_to_create_it_in_one_line_per_test(
    new_project: NewProject, variant: dict[str, Any]
) -> None:
    """`pytest` right after `copier copy`: the tests that need a revision say to create it."""
    project = new_project(**variant)
    assert FIRST_REVISION in (project.path / "README.md").read_text()

    result = own_tests(project, python=sys.executable)

    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    for test in NEED_A_REVISION:
        assert f"{test} ERROR" in output, output
    # The others (where the URL comes from, column types, --sql) pass.
    assert "FAILED" not in output, output
    counts = re.search(r"=+ (\d+) passed, (\d+) errors in ", output)
    assert counts and int(counts[1]) >= 12 and int(counts[2]) == len(NEED_A_REVISION), output
    # Each error is that one line: no traceback, no "no such table", no pytest-alembic report.
    errors = output[output.index(" ERRORS ") : output.index(" short test summary info ")]
    errors = errors[: errors.rindex("\n")]  # up to the summary's heading line
    sections = re.split(r"^_+ ERROR at setup of \S+ _+$", errors, flags=re.MULTILINE)[1:]
    assert [section.strip() for section in sections] == [NO_REVISION_YET] * len(NEED_A_REVISION)
    for confusing in ("Traceback", "no such table", "head revision", "AlembicTestFailure"):
        assert confusing not in output, output


def assert_the_fixtures_kept_the_tests_apart(output: str) -> None:
    found = outcomes(output)
    for test in FIXTURE_TESTS:
        assert found.get(test) == "PASSED", output


# A user's test that leaves a connection open, inside a transaction that read a table.
TEST_LEAVING_A_CONNECTION_OPEN = """
from sqlalchemy import create_engine, text

LEFT_OPEN = []


def test_leaves_a_connection_open(database_url_at_head):
    connection = create_engine(database_url_at_head).connect()
    connection.execute(text("SELECT count(*) FROM item"))  # a lock until the transaction ends
    LEFT_OPEN.append(connection)
"""


# A user's suite of the size the fixtures are for, on the example model: 40 tests of the
# application, each in a transaction rolled back, 10 that need a database of their own.
MANY_TESTS = """
import pytest
from sqlalchemy import text


@pytest.mark.parametrize("number", range(40))
def test_in_a_session(session, number):
    assert session.scalar(text("SELECT count(*) FROM item")) == 0
    session.execute(text("INSERT INTO item (name) VALUES ('kettle')"))
    session.commit()


@pytest.mark.parametrize("number", range(10))
def test_in_a_database_of_its_own(database_url_at_head, on_database, number):
    def write(connection):
        seen = connection.scalar(text("SELECT count(*) FROM item"))
        insert = text("INSERT INTO item (name) VALUES ('kettle') RETURNING id")
        return seen, connection.scalar(insert)

    assert on_database(database_url_at_head, write) == (0, 1)  # no row, the first id
"""


def add_many_tests(service: Project) -> list[str]:
    """Write :data:`MANY_TESTS` into the service's tests; their names."""
    (service.path / "tests" / "test_many.py").write_text(MANY_TESTS)
    return [f"tests/test_many.py::test_in_a_session[{number}]" for number in range(40)] + [
        f"tests/test_many.py::test_in_a_database_of_its_own[{number}]" for number in range(10)
    ]


# Tables whose rows reference each other every way a schema can: parent and child, a
# table referencing itself, and two that reference each other (a cycle).
LINKED_MODELS = """
from sqlalchemy import ForeignKey


class Parent(Base):
    __tablename__ = "parent"
    id: Mapped[int] = mapped_column(primary_key=True)


class Child(Base):
    __tablename__ = "child"
    id: Mapped[int] = mapped_column(primary_key=True)
    parent_id: Mapped[int] = mapped_column(ForeignKey("parent.id"))


class Node(Base):
    __tablename__ = "node"
    id: Mapped[int] = mapped_column(primary_key=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("node.id"))


class Chicken(Base):
    __tablename__ = "chicken"
    id: Mapped[int] = mapped_column(primary_key=True)
    egg_id: Mapped[int | None] = mapped_column(ForeignKey("egg.id", use_alter=True))


class Egg(Base):
    __tablename__ = "egg"
    id: Mapped[int] = mapped_column(primary_key=True)
    chicken_id: Mapped[int] = mapped_column(ForeignKey("chicken.id"))
"""

# Run in this order, one process: each test finds the database as at head, whatever the
# one before did to its own; the database's name says whether it was handed on.
TESTS_OF_COPIES = """
from sqlalchemy import make_url, text

TABLES = ("item", "parent", "child", "node", "chicken", "egg")
NAMES = []  # the database each test got


def as_at_head(database_url_at_head, on_database):
    NAMES.append(make_url(database_url_at_head).database)

    def read(connection):
        counts = [connection.scalar(text(f"SELECT count(*) FROM {t}")) for t in TABLES]
        version = connection.scalars(text("SELECT version_num FROM alembic_version")).all()
        tables = connection.scalar(text(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ))
        first_id = connection.scalar(text("INSERT INTO parent DEFAULT VALUES RETURNING id"))
        return counts, version, tables, first_id

    counts, version, tables, first_id = on_database(database_url_at_head, read)
    assert counts == [0] * len(TABLES)
    assert version == [HEAD]
    assert tables == len(TABLES) + 2  # alembic_version, alembic_version_history
    assert first_id == 1  # the ids start over


def write(url, on_database, *statements):
    on_database(url, lambda connection: [connection.execute(text(s)) for s in statements])


def test_1_writes_linked_rows(database_url_at_head, on_database):
    as_at_head(database_url_at_head, on_database)
    write(database_url_at_head, on_database,
          "INSERT INTO item (name) VALUES ('kettle')",
          "INSERT INTO child (parent_id) VALUES (1)",
          "INSERT INTO node (id, parent_id) VALUES (1, NULL), (2, 1)",
          "INSERT INTO chicken (id) VALUES (1)",
          "INSERT INTO egg (id, chicken_id) VALUES (1, 1)",
          "UPDATE chicken SET egg_id = 1")


def test_2_writes_rows_that_reference_no_cycle(database_url_at_head, on_database):
    as_at_head(database_url_at_head, on_database)
    write(database_url_at_head, on_database,
          "INSERT INTO child (parent_id) VALUES (1)",
          "INSERT INTO node (id, parent_id) VALUES (1, NULL), (2, 1)")


def test_3_changes_the_version_row(database_url_at_head, on_database):
    as_at_head(database_url_at_head, on_database)
    write(database_url_at_head, on_database, "UPDATE alembic_version SET version_num = 'x'")


def test_4_creates_a_table(database_url_at_head, on_database):
    as_at_head(database_url_at_head, on_database)
    write(database_url_at_head, on_database, "CREATE TABLE left_behind (id int)")


def test_5_sets_a_default_of_its_database(database_url_at_head, on_database):
    as_at_head(database_url_at_head, on_database)
    name = make_url(database_url_at_head).database
    write(database_url_at_head, on_database, f'ALTER DATABASE "{name}" SET search_path = nowhere')


def test_6_finds_none_of_it(database_url_at_head, on_database):
    as_at_head(database_url_at_head, on_database)  # the tables found: search_path as it was
    # Rows only: handed on twice; a version row, a table, a setting: a new database each.
    assert NAMES[0] == NAMES[1] == NAMES[2], NAMES
    assert len(set(NAMES[2:])) == 4, NAMES
"""


@pytest.mark.postgres
def test_a_database_a_test_only_wrote_rows_to_is_handed_on_as_at_head(
    new_project: NewProject, pg_url: str, pg_cluster: PostgresCluster
) -> None:
    """On PostgreSQL, ``database_url_at_head`` hands the next test the copy a test only
    wrote rows to, emptied (linked rows too, a cycle included) and its ids starting over;
    a copy whose version row, schema or settings a test changed is never handed on."""
    project = new_project(program_name=PROGRAM)
    project.add_to_models(LINKED_MODELS)
    head = revision_id(project.autogenerate("create tables"))
    tests = TESTS_OF_COPIES.replace("[HEAD]", f"[{head!r}]")
    (project.path / "tests" / "test_copies.py").write_text(tests)

    result = own_tests(project, "tests/test_copies.py", python=sys.executable,
                       LEDGER_TEST_DATABASE_URL=pg_url)  # fmt: skip

    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert list(outcomes(output).values()) == ["PASSED"] * 6, output
    assert databases_beside(pg_cluster, pg_url) == []


def databases_beside(pg_cluster: PostgresCluster, url: str) -> list[str]:
    """The databases named after the one ``url`` names (``<name>_...``)."""
    name = sa.make_url(url).database
    rows = query(pg_cluster.admin_url, "SELECT datname FROM pg_database ORDER BY datname")
    return [found for (found,) in rows if found.startswith(f"{name}_")]


def leave_databases_behind(pg_cluster: PostgresCluster, url: str) -> None:
    """What a run stopped half-way leaves: worker gw0's head database, and databases of a
    worker the next run does not have (gw7)."""
    parsed = sa.make_url(url)
    for name in (
        f"{parsed.database}_gw0_head",
        f"{parsed.database}_gw7",
        f"{parsed.database}_gw7_3",
    ):
        pg_cluster.create_database(name, owner=str(parsed.username))


@pytest.mark.postgres
def test_two_xdist_workers_on_postgresql_use_databases_of_their_own_and_leave_none(
    new_project: NewProject, pg_url: str, pg_cluster: PostgresCluster
) -> None:
    """`pytest -n 2` with the test database's URL: each worker creates its databases beside
    that one, named after it, and drops them, with those a run stopped half-way left; a
    connection a test leaves open in a transaction holds nothing up.  (The whole suite on
    PostgreSQL: the CI workflow's test; on two workers, the asyncio variant's.)"""
    project = new_project(program_name=PROGRAM)
    project.autogenerate("create initial tables")
    (project.path / "tests" / "test_left_open.py").write_text(TEST_LEAVING_A_CONNECTION_OPEN)
    many = add_many_tests(project)
    leave_databases_behind(pg_cluster, pg_url)
    # The tests of a database at head, and those of the migration API on an empty one.
    tests = ("test_left_open", "test_many", "test_fixtures", "test_models", "test_migrate")

    result = own_tests(
        project,
        "-n",
        "2",
        *(f"tests/{test}.py" for test in tests),
        python=sys.executable,
        LEDGER_TEST_DATABASE_URL=pg_url,
    )

    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    found = outcomes(output)
    assert set(found.values()) == {"PASSED"}, output
    for test in [
        "tests/test_left_open.py::test_leaves_a_connection_open",
        "tests/test_migrate.py::test_upgrade_from_python_reaches_head_and_back",
        *many,
    ]:
        assert found.get(test) == "PASSED", output
    assert_the_fixtures_kept_the_tests_apart(output)
    assert set(re.findall(r"^\[(gw\d)\]", output, re.MULTILINE)) == {"gw0", "gw1"}
    assert databases_beside(pg_cluster, pg_url) == []  # the leftovers too
    assert project.with_database(pg_url).tables() == set()  # its own database: left alone


def rendered_conftest(project: Project) -> ModuleType:
    """The project's ``tests/conftest.py``, imported here (inside ``project.imported()``)."""
    spec = importlib.util.spec_from_file_location(
        "rendered_conftest", project.path / "tests" / "conftest.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.postgres
def test_a_role_that_may_not_create_databases_is_told_what_to_grant(
    new_project: NewProject, pg_cluster: PostgresCluster, variant: dict[str, Any]
) -> None:
    """What each test needing a database says (the fixtures' first CREATE DATABASE)."""
    project = new_project(program_name=PROGRAM, **variant)
    role = f"t_{uuid.uuid4().hex[:12]}"
    pg_cluster.create_role(role, AWKWARD_PASSWORD)  # no CREATEDB
    pg_cluster.create_database(role, owner=role)
    url = pg_cluster.url_for(role, user=role, password=AWKWARD_PASSWORD)
    if variant.get("use_async"):
        url = url.replace("postgresql+psycopg://", "postgresql+asyncpg://")
    try:
        with project.imported():
            databases = rendered_conftest(project).WorkerDatabases(url)
            try:
                with pytest.raises(pytest.fail.Exception) as refused:
                    databases.create("head")
            finally:
                databases.drop_all()
        assert databases_beside(pg_cluster, url) == []
    finally:
        pg_cluster.drop_database(role)
    variable = "LEDGER_TEST_DATABASE_URL"
    assert re.fullmatch(
        rf"The role {role} of {variable} may not create databases, and the tests create "
        rf"theirs beside {role} \({role}_gw\d+_head, \.\.\.\): grant it with "
        rf"`ALTER ROLE {role} CREATEDB` \(as a superuser\), or point {variable} at a server "
        "where its role may.",
        str(refused.value),
    ), str(refused.value)
    assert_no_password(str(refused.value))


# A dependency's deprecation, triggered by the user's models (SQLAlchemy 1.x style).
DEPENDENCY_DEPRECATION = """
from sqlalchemy.ext.declarative import declarative_base

LegacyBase = declarative_base()
"""
# The user's own package warning about itself.
OWN_DEPRECATION = """
import warnings

warnings.warn("Item.legacy_code goes away in 2.0", DeprecationWarning, stacklevel=1)
"""


@pytest.mark.parametrize(
    ("code", "outcome"),
    [(DEPENDENCY_DEPRECATION, "shown"), (OWN_DEPRECATION, "fails")],
    ids=["dependency-deprecation", "own-deprecation"],
)
def test_warnings_from_dependencies_are_shown_and_the_packages_own_fail(
    new_project: NewProject, code: str, outcome: str
) -> None:
    project = new_project(program_name=PROGRAM)
    project.autogenerate("create initial tables")
    project.add_to_models(code)

    result = own_tests(project, python=sys.executable)

    output = result.stdout + result.stderr
    if outcome == "shown":
        assert result.returncode == 0, output
        assert "MovedIn20Warning: The ``declarative_base()`` function is now available" in output
        assert_all_passed(result)
    else:  # at import: recorded before collection, failed by test_model_warnings.py
        assert result.returncode != 0, output
        assert "DeprecationWarning: Item.legacy_code goes away in 2.0" in output


def assert_lint_and_types_pass(outputs: dict[str, str], service: Project) -> None:
    """ruff and strict mypy passed, on every module of the package, its revisions and tests."""
    assert "All checks passed!" in outputs["ruff check ."]
    assert "already formatted" in outputs["ruff format --check ."]
    assert service.versions(), "a first revision belongs to the checked code"
    checked = [*service.package.rglob("*.py"), *(service.path / "tests").glob("*.py")]
    assert f"Success: no issues found in {len(checked)} source files" in outputs["mypy"]


def test_ruff_and_mypy_pass_out_of_the_box_for_other_answers(other_project: Project) -> None:
    """(With the default answers, the CI workflow test below runs them.)"""
    service = other_project
    outputs = {}
    for command in ("ruff check .", "ruff format --check .", "mypy"):
        result = service.run(service.python, "-m", *command.split(), PYTHONPATH=str(service.path))
        outputs[command] = result.stdout
    assert 'python_version = "3.14"' in (service.path / "pyproject.toml").read_text()
    assert_lint_and_types_pass(outputs, service)


# An asyncio service on PostgreSQL (asyncpg; aiosqlite for the default SQLite file).
ASYNC_ANSWERS = {"program_name": "ticket_desk", "use_async": True, "database": "postgresql"}


@pytest.mark.postgres
def test_the_asyncio_variants_own_suite_passes_on_both_backends(
    new_project: NewProject, new_pg_url: Callable[[], str], pg_cluster: PostgresCluster
) -> None:
    """pytest-alembic on an AsyncEngine, AsyncSession tests, the awaited API: SQLite, then
    PostgreSQL through asyncpg on two xdist workers; and ruff on it.  (Its mypy: the "other
    answers" test.)"""
    service = new_project(**ASYNC_ANSWERS)
    service.autogenerate("create item")
    checked = service.run(service.python, "-m", "ruff", "check", ".", check=False)
    formatted = service.run(service.python, "-m", "ruff", "format", "--check", ".", check=False)
    assert checked.returncode == 0 and "All checks passed!" in checked.stdout, checked.stdout
    assert formatted.returncode == 0 and "already formatted" in formatted.stdout, formatted.stdout

    on_sqlite = own_tests(service, python=sys.executable)
    asyncpg_url = new_pg_url().replace("postgresql+psycopg://", "postgresql+asyncpg://")
    leave_databases_behind(pg_cluster, asyncpg_url)
    on_postgresql = own_tests(
        service, "-n", "2", python=sys.executable, TICKET_DESK_TEST_DATABASE_URL=asyncpg_url
    )

    for result in (on_sqlite, on_postgresql):
        assert_all_passed(result)
        output = result.stdout
        found = outcomes(output)
        for test in (
            "tests/test_models.py::test_an_item_is_stored_with_its_creation_time",
            "tests/test_migrate.py::test_upgrade_from_python_reaches_head_and_back",
        ):
            assert found.get(test) == "PASSED", output
        assert "asyncio-" in output.split("plugins:")[1].splitlines()[0]  # pytest-asyncio ran
        assert_the_fixtures_kept_the_tests_apart(output)
    assert databases_beside(pg_cluster, asyncpg_url) == []  # the leftovers too
    assert_no_password(on_postgresql)


def test_ruff_passes_for_a_sync_service_on_the_newest_python(new_project: NewProject) -> None:
    """The sync variant of the other answers: ruff's rules for 3.14 (mypy: the CI test)."""
    service = new_project(**{**OTHER_ANSWERS, "use_async": False})
    service.autogenerate("create item")
    checked = service.run(service.python, "-m", "ruff", "check", ".", check=False)
    formatted = service.run(service.python, "-m", "ruff", "format", "--check", ".", check=False)
    assert checked.returncode == 0 and "All checks passed!" in checked.stdout, checked.stdout
    assert formatted.returncode == 0 and "already formatted" in formatted.stdout, formatted.stdout


# -- the rendered GitHub Actions workflow ----------------------------------------------

EXPRESSION = re.compile(r"\$\{\{.*?\}\}")
TEMPLATE_WORKFLOW = ROOT / "template" / ".github" / "workflows" / "ci.yml.jinja"
#: What `db lint --changed-since` compares with: a pull request's base branch, else the
#: commit before the push (zeros for a new branch: every revision), else the default branch.
LINT_SINCE = (
    "${{ github.event_name == 'pull_request' && format('origin/{0}', github.base_ref) "
    "|| github.event.before || format('origin/{0}', github.event.repository.default_branch) }}"
)


def workflow(service: Project) -> tuple[str, dict[str, Any]]:
    text = (service.path / ".github" / "workflows" / "ci.yml").read_text()
    return text, yaml.safe_load(text)


def steps(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in data["jobs"].values() for step in job["steps"]]


def migrate_step(data: dict[str, Any]) -> dict[str, Any]:
    (step,) = [step for step in steps(data) if "db upgrade head" in step.get("run", "")]
    return step


@pytest.mark.parametrize(
    "answers",
    [{"program_name": PROGRAM}, {"program_name": PROGRAM, "database": "postgresql"}, OTHER_ANSWERS],
    ids=["default", "postgresql", "other"],
)
def test_the_workflow_keeps_its_expressions_and_runs_every_check(
    new_project: NewProject, answers: dict[str, str]
) -> None:
    service = new_project(**answers)
    text, data = workflow(service)
    expressions = EXPRESSION.findall(text)
    postgresql = answers.get("database") == "postgresql"
    only_in_the_lint_step = set() if postgresql else {LINT_SINCE}
    assert set(expressions) == set(EXPRESSION.findall(TEMPLATE_WORKFLOW.read_text())) - (
        only_in_the_lint_step
    )
    assert "${{ matrix.python-version }}" in expressions
    assert "${{ job.services.postgres.ports['5432'] }}" in expressions
    assert "<<" not in text and "<%" not in text

    triggers = data.get("on", data.get(True))  # YAML 1.1 reads a bare `on` as true
    assert {"push", "pull_request"} <= set(triggers)
    (job,) = data["jobs"].values()
    answers = yaml.safe_load((service.path / ".copier-answers.yml").read_text())
    assert answers["python_version"] in job["strategy"]["matrix"]["python-version"]
    assert all(isinstance(v, str) for v in job["strategy"]["matrix"]["python-version"])
    assert job["services"]["postgres"]["image"].startswith("postgres:")

    runs = "\n".join(step.get("run", "") for step in steps(data))
    for command in (
        "pip install -e '.[test,postgresql]'",
        "ruff check .",
        "ruff format --check .",
        "mypy",
        "pytest",
        f"python -m {service.program_name} db upgrade head",
        f"python -m {service.program_name} db check",
        f"python -m {service.program_name} db rebase --check",
    ):
        assert command in runs
    # PostgreSQL projects lint the migrations a change adds before applying them (squawk),
    # relative to the base branch of a pull request, else to the commit before the push.
    lint = [step for step in steps(data) if "db lint" in step.get("run", "")]
    if postgresql:
        (lint_step,) = lint
        assert lint_step["run"] == (
            f'python -m {service.program_name} db lint --changed-since "$LINT_SINCE"'
        )
        assert lint_step["env"] == {"LINT_SINCE": LINT_SINCE}
        assert data["jobs"]["test"]["steps"][0]["with"]["fetch-depth"] == 0
        assert steps(data).index(lint_step) < steps(data).index(migrate_step(data))
    else:
        assert lint == []
    env_of = {key: step for step in steps(data) for key in step.get("env", {})}
    prefix = service.program_name.upper()
    assert env_of[f"{prefix}_TEST_DATABASE_URL"]["run"] == "pytest"
    assert "db upgrade head" in env_of[f"{prefix}_DATABASE_URL"]["run"]
    for name in (f"{prefix}_TEST_DATABASE_URL", f"{prefix}_DATABASE_URL"):
        url = sa.make_url(EXPRESSION.sub("5432", env_of[name]["env"][name]))
        asyncio = answers.get("use_async", False)
        assert url.drivername == ("postgresql+asyncpg" if asyncio else "postgresql+psycopg")
        assert url.password is None  # nothing secret in a workflow log


@uses_the_venv
@pytest.mark.postgres
def test_the_workflow_steps_pass_against_a_postgresql_server(
    project: Project, pg_cluster: PostgresCluster
) -> None:
    """Run every step of the workflow here, the service container being our server.

    Lint, types, the project's own suite on SQLite (on pytest 9.2.0) and on
    PostgreSQL, then the migration of a real server to head.
    """
    _, data = workflow(project)
    (job,) = data["jobs"].values()
    service_db = job["services"]["postgres"]["env"]["POSTGRES_DB"]
    values = {
        "${{ matrix.python-version }}": job["strategy"]["matrix"]["python-version"][0],
        "${{ job.services.postgres.ports['5432'] }}": str(pg_cluster.port),
    }

    def substitute(text: str) -> str:
        for expression, value in values.items():
            text = text.replace(expression, value)
        assert "${{" not in text, f"no local value for an expression in {text!r}"
        return text

    bin_dirs = [str(Path(project.python).parent), str(pg_cluster.bindir)]
    env = {key: value for key, value in project.env.items() if not key.endswith("_DATABASE_URL")}
    env["PATH"] = os.pathsep.join([*bin_dirs, env.get("PATH", "")])
    env["PYTEST_ADDOPTS"] = "-v -p no:cacheprovider"  # each test's outcome, in the output
    pg_cluster.create_database(service_db, owner="postgres")  # the container's POSTGRES_DB
    outputs: dict[str, str] = {}
    try:
        for step in job["steps"]:
            if "run" not in step:
                continue  # checkout and setup-python: the project is here, Python too
            if "pip install" in step["run"]:
                continue  # the module's venv installed the same extras
            result = subprocess.run(
                ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", substitute(step["run"])],
                cwd=project.path,
                env={**env, **{k: substitute(v) for k, v in step.get("env", {}).items()}},
                capture_output=True,
                text=True,
                timeout=300,
            )
            output = result.stdout + result.stderr
            assert result.returncode == 0, f"step {step.get('name')!r} failed:\n{output}"
            outputs[step["run"].strip()] = output
            outputs[step["name"]] = output
        assert_lint_and_types_pass(outputs, project)
        for suite in ("Test on SQLite", "Test on PostgreSQL"):
            assert "pytest-9.2.0" in outputs[suite]
            assert_all_passed(outputs[suite])
        # The lint step PostgreSQL projects have: squawk comes with the test extra.
        lint = project.run(project.python, "-m", PROGRAM, "db", "lint", "base:head")
        assert lint.stdout.strip() == "1 revision linted for PostgreSQL: no findings."
        head = revision_id(project.versions()[-1])
        assert f"{head} (head)" in outputs["Migrate PostgreSQL to head and check the models match"]
        url = f"postgresql+psycopg://postgres@127.0.0.1:{pg_cluster.port}/{service_db}"
        engine = sa.create_engine(url, poolclass=sa.NullPool)
        try:
            assert set(sa.inspect(engine).get_table_names()) == {
                "item",
                "alembic_version",
                "alembic_version_history",
            }
        finally:
            engine.dispose()
    finally:
        pg_cluster.drop_database(f"{service_db}_test")
        pg_cluster.drop_database(service_db)


# SQLAlchemy 2.1.9 reads back SQLite's generated column of a NUMERIC(10, 2) without
# its expression, so Alembic warns it cannot compare it; nothing the user can fix.
GENERATED_COLUMN = """
from decimal import Decimal

from sqlalchemy import Computed, Numeric


class Price(Base):
    __tablename__ = "price"

    id: Mapped[int] = mapped_column(primary_key=True)
    net: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    gross: Mapped[Decimal] = mapped_column(Numeric(10, 2), Computed("net * 1.2", persisted=True))
"""


def test_a_generated_column_alembic_cannot_compare_is_shown_not_fatal(
    new_project: NewProject,
) -> None:
    project = new_project(program_name=PROGRAM)
    project.add_to_models(GENERATED_COLUMN)
    with warnings.catch_warnings():  # the same warning, here: what the suite does with it
        warnings.simplefilter("ignore", UserWarning)
        project.autogenerate("create item and price")

    result = own_tests(project, python=sys.executable)

    assert_all_passed(result)
    assert "UserWarning: Computed default on price.gross cannot be modified" in result.stdout
