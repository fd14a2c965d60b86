"""The rendered project passes its own checks: its tests, ruff, mypy and its CI.

The project is installed as its README says (``pip install -e '.[test]'``)
into a fresh virtual environment, with pytest 9.2.0: the version whose
collection pytest-alembic 0.13.1 crashes when ``tests/conftest.py`` exists,
unless its tests are imported explicitly (as the rendered project does).
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy as sa
import yaml
from conftest import AWKWARD_PASSWORD, ROOT, Render, Service, make_venv, revision_id
from postgres_cluster import PostgresCluster

PROGRAM = "ledger"

MIGRATION_TESTS = [
    "tests/test_migrations.py::test_single_head_revision",
    "tests/test_migrations.py::test_upgrade",
    "tests/test_migrations.py::test_up_down_consistency",
    "tests/test_migrations.py::test_models_match_migrations",
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
        "    sku: Mapped[str] = mapped_column(String(40))\n    created_at: Mapped[datetime]",
        "sku",
    ),
}


@pytest.fixture(scope="module")
def rendered(render_shared: Render) -> Service:
    return render_shared(program_name=PROGRAM)


@pytest.fixture(scope="module")
def venv(rendered: Service, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One environment for the module: the project installed with its test extra."""
    path = tmp_path_factory.mktemp("venv") / "venv"
    make_venv(path, "-e", f"{rendered.path}[test,postgresql]", "pytest==9.2.0")
    return path


@pytest.fixture(scope="module")
def project(rendered: Service, venv: Path) -> Service:
    """The project, installed in ``venv``, after the README's first-migration step."""
    service = dataclasses.replace(rendered, python=str(venv / "bin" / "python"))
    service.alembic("revision", "--autogenerate", "-m", "create initial tables")
    service.alembic("upgrade", "head")
    return service


@pytest.fixture(scope="module")
def other_project(render_shared: Render, venv: Path) -> Service:
    """Other answers (PostgreSQL, newest Python), after a first revision via the CLI."""
    service = dataclasses.replace(
        render_shared(program_name="billing_core", database="postgresql", python_version="3.13"),
        python=str(venv / "bin" / "python"),
    )
    service.run(
        service.python,
        *("-m", "billing_core", "db", "revision", "--autogenerate", "-m", "create item"),
        PYTHONPATH=str(service.path),
    )
    return service


def own_tests(
    service: Service, *args: str, python: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run the project's own test suite, as its README says: ``pytest``."""
    return service.run(
        python or service.python, "-m", "pytest", "-v", "-p", "no:cacheprovider", *args,
        check=False, **env,
    )  # fmt: skip


def assert_all_passed(result: subprocess.CompletedProcess[str]) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    for test in MIGRATION_TESTS:
        assert f"{test} PASSED" in output
    assert re.search(r"=+ \d+ passed in ", output), output


def test_own_suite_passes_after_the_first_revision_on_pytest_9_2(project: Service) -> None:
    assert (project.path / "tests" / "conftest.py").is_file()  # the crash's condition
    result = own_tests(project)
    assert "pytest-9.2.0" in result.stdout
    assert_all_passed(result)


def test_own_suite_passes_on_the_pytest_of_this_repository(project: Service) -> None:
    # The other side of the pytest 9.2 boundary (this repository pins pytest<9.2).
    result = own_tests(project, python=sys.executable, PYTHONPATH=str(project.path))
    assert f"pytest-{pytest.__version__}" in result.stdout
    assert_all_passed(result)


@pytest.mark.postgres
def test_own_suite_passes_on_postgresql(project: Service, pg_url: str) -> None:
    result = own_tests(project, **{f"{PROGRAM.upper()}_TEST_DATABASE_URL": pg_url})
    assert_all_passed(result)
    assert AWKWARD_PASSWORD not in result.stdout + result.stderr
    assert quote(AWKWARD_PASSWORD, safe="") not in result.stdout + result.stderr
    engine = sa.create_engine(pg_url, poolclass=sa.NullPool)
    try:
        assert sa.inspect(engine).get_table_names() == []  # the suite wiped its database
    finally:
        engine.dispose()


@pytest.mark.parametrize("edit", UNMIGRATED_EDITS)
def test_own_suite_fails_with_the_autogenerate_hint_when_a_model_changes_without_a_revision(
    project: Service, edit: str
) -> None:
    old, new, shown = UNMIGRATED_EDITS[edit]
    original = project.models.read_text()
    try:
        if old is None:
            project.add_to_models(new)
        else:
            project.replace_in_models(old, new)
        result = own_tests(project)
    finally:
        project.models.write_text(original)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "tests/test_migrations.py::test_models_match_migrations FAILED" in output
    for test in MIGRATION_TESTS[:-1]:
        assert f"{test} PASSED" in output
    assert re.search(r"=+ 1 failed, \d+ passed in ", output), output
    report = output[output.index("_ test_models_match_migrations _") :]
    assert 'alembic revision --autogenerate -m "describe the change"' in report
    assert f"{PROGRAM}/migrations/versions/" in report
    assert shown in report


ENUM_MODEL = """
import enum

from sqlalchemy import Enum


class Mood(enum.Enum):
    happy = "happy"
    grumpy = "grumpy"


class Review(Base):
    __tablename__ = "review"

    id: Mapped[int] = mapped_column(primary_key=True)
    mood: Mapped[Mood] = mapped_column(Enum(Mood, name="review_mood"))
"""


@pytest.mark.postgres
def test_a_postgresql_enum_downgrade_is_caught_and_fixed_as_the_readme_says(
    project: Service, pg_url: str
) -> None:
    """Autogenerate forgets DROP TYPE in downgrades: the suite says so, and cleans up."""
    original = project.models.read_text()
    before = set(project.versions())
    env = {f"{PROGRAM.upper()}_TEST_DATABASE_URL": pg_url}
    try:
        project.add_to_models(ENUM_MODEL)
        revision = project.autogenerate("add review")

        result = own_tests(project, **env)
        output = result.stdout + result.stderr
        assert "tests/test_migrations.py::test_up_down_consistency FAILED" in output
        assert 'type "review_mood" already exists' in output
        assert re.search(r"=+ 1 failed, \d+ passed in ", output), output

        # The fix the README gives, in the revision's downgrade().
        text = revision.read_text().replace(
            "    op.drop_table('review')\n",
            "    op.drop_table('review')\n"
            "    sa.Enum(name='review_mood').drop(op.get_bind(), checkfirst=True)\n",
        )
        revision.write_text(text)
        assert_all_passed(own_tests(project, **env))
    finally:
        project.models.write_text(original)
        for path in set(project.versions()) - before:
            path.unlink()
    engine = sa.create_engine(pg_url, poolclass=sa.NullPool)
    try:
        assert sa.inspect(engine).get_enums() == []  # the suite left no type behind
    finally:
        engine.dispose()


@pytest.fixture(params=["project", "other_project"])
def any_project(request: pytest.FixtureRequest) -> Service:
    service: Service = request.getfixturevalue(request.param)
    return service


def test_ruff_and_mypy_pass_out_of_the_box(any_project: Service) -> None:
    service = any_project
    assert service.versions(), "a first revision belongs to the checked code"
    service.run(service.python, "-m", "ruff", "check", ".")
    service.run(service.python, "-m", "ruff", "format", "--check", ".")
    mypy = service.run(service.python, "-m", "mypy", PYTHONPATH=str(service.path))
    checked = [*service.package.rglob("*.py"), *(service.path / "tests").glob("*.py")]
    # strict mode, on every module of the package, its revisions and its tests
    assert f"Success: no issues found in {len(checked)} source files" in mypy.stdout


# -- the rendered GitHub Actions workflow ----------------------------------------------

EXPRESSION = re.compile(r"\$\{\{.*?\}\}")
TEMPLATE_WORKFLOW = ROOT / "template" / ".github" / "workflows" / "ci.yml.jinja"


def workflow(service: Service) -> tuple[str, dict[str, Any]]:
    text = (service.path / ".github" / "workflows" / "ci.yml").read_text()
    return text, yaml.safe_load(text)


def steps(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in data["jobs"].values() for step in job["steps"]]


def test_the_workflow_keeps_its_expressions_and_runs_every_check(any_project: Service) -> None:
    service = any_project
    text, data = workflow(service)
    expressions = EXPRESSION.findall(text)
    assert set(expressions) == set(EXPRESSION.findall(TEMPLATE_WORKFLOW.read_text()))
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
    ):
        assert command in runs
    env_of = {key: step for step in steps(data) for key in step.get("env", {})}
    prefix = service.program_name.upper()
    assert env_of[f"{prefix}_TEST_DATABASE_URL"]["run"] == "pytest"
    assert "db upgrade head" in env_of[f"{prefix}_DATABASE_URL"]["run"]
    for name in (f"{prefix}_TEST_DATABASE_URL", f"{prefix}_DATABASE_URL"):
        url = sa.make_url(EXPRESSION.sub("5432", env_of[name]["env"][name]))
        assert url.drivername == "postgresql+psycopg"
        assert url.password is None  # nothing secret in a workflow log


@pytest.mark.postgres
def test_the_workflow_steps_pass_against_a_postgresql_server(
    project: Service, pg_cluster: PostgresCluster
) -> None:
    """Run every step of the workflow here, the service container being our server."""
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
    pg_cluster.create_database(service_db, owner="postgres")  # the container's POSTGRES_DB
    outputs = []
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
            outputs.append(output)
        head = revision_id(project.versions()[-1])
        assert f"{head} (head)" in outputs[-1]
        url = f"postgresql+psycopg://postgres@127.0.0.1:{pg_cluster.port}/{service_db}"
        engine = sa.create_engine(url, poolclass=sa.NullPool)
        try:
            assert set(sa.inspect(engine).get_table_names()) == {"item", "alembic_version"}
        finally:
            engine.dispose()
    finally:
        pg_cluster.drop_database(f"{service_db}_test")
        pg_cluster.drop_database(service_db)
