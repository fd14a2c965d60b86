"""`copier copy` renders the documented project, and refuses bad answers."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from conftest import NewProject
from copier import run_copy
from harness import ROOT
from harness.project import rendered_files
from pytest_copier import CopierFixture

EXPECTED_FILES = {
    ".copier-answers.yml",
    ".gitignore",
    ".github/workflows/ci.yml",
    "README.md",
    "alembic.ini",
    "pyproject.toml",
    "{pkg}/__init__.py",
    "{pkg}/__main__.py",
    "{pkg}/db.py",
    "{pkg}/migrate.py",
    "{pkg}/models.py",
    "{pkg}/py.typed",
    "{pkg}/column_types.py",
    "{pkg}/migration_machinery/__init__.py",
    "{pkg}/migration_machinery/autogenerate.py",
    "{pkg}/migration_machinery/data_loss.py",
    "{pkg}/migration_machinery/env_helpers.py",
    "{pkg}/migration_machinery/extensions.py",
    "{pkg}/migration_machinery/guards.py",
    "{pkg}/migration_machinery/heads.py",
    "{pkg}/migration_machinery/history.py",
    "{pkg}/migration_machinery/irreversible.py",
    "{pkg}/migration_machinery/lint.py",
    "{pkg}/migration_machinery/rebase.py",
    "{pkg}/migration_machinery/renames.py",
    "{pkg}/migration_machinery/retries.py",
    "{pkg}/migration_machinery/roles.py",
    "{pkg}/migration_machinery/schema.py",
    "{pkg}/migration_machinery/squash.py",
    "{pkg}/migration_machinery/waiting.py",
    "{pkg}/migrations/README",
    "{pkg}/migrations/env.py",
    "{pkg}/migrations/script.py.mako",
    "{pkg}/migrations/versions/.gitkeep",
    "tests/conftest.py",
    "tests/test_db.py",
    "tests/test_migrate.py",
    "tests/test_column_types.py",
    "tests/test_migrations.py",
    "tests/test_create_schema.py",
    "tests/test_fixtures.py",
    "tests/test_model_warnings.py",
    "tests/test_models.py",
}

# What an unrendered Jinja tag or a leaked question name looks like.
LEFTOVERS = ("<< ", " >>", "<%", "%>", "<#", "#>", "program_name", "_copier_conf")


@pytest.mark.parametrize(
    "answers",
    [
        {},
        {
            "program_name": "billing_core",
            "project_name": "acme-billing",
            "description": 'Bills "customers" monthly',
            "author_name": "Grace Hopper",
            "author_email": "grace@example.org",
            "python_version": "3.12",
            "database": "postgresql",
        },
    ],
    ids=["defaults", "custom"],
)
def test_copy_renders_every_file_and_leaves_no_placeholder(
    new_project: NewProject, answers: dict[str, str]
) -> None:
    service = new_project(**answers)
    pkg = service.program_name

    expected = {name.format(pkg=pkg) for name in EXPECTED_FILES}
    assert rendered_files(service.path) == expected
    for name in expected - {".copier-answers.yml"}:
        text = (service.path / name).read_text()
        found = [leftover for leftover in LEFTOVERS if leftover in text]
        # The README shows Copier's conflict markers on purpose.
        if name == "README.md":
            found = [f for f in found if f not in ("<< ", " >>")]
        assert not found, f"{name} still contains {found}"


def test_copy_records_the_answers_and_uses_them(new_project: NewProject) -> None:
    service = new_project(
        program_name="billing_core",
        project_name="acme-billing",
        author_email="grace@example.org",
        python_version="3.12",
        database="postgresql",
    )
    answers = yaml.safe_load((service.path / ".copier-answers.yml").read_text())
    assert answers["program_name"] == "billing_core"
    assert answers["database"] == "postgresql"
    assert answers["_commit"]

    pyproject = (service.path / "pyproject.toml").read_text()
    assert 'name = "acme-billing"' in pyproject
    assert 'requires-python = ">=3.12"' in pyproject
    assert 'email = "grace@example.org"' in pyproject
    assert '"psycopg[binary]' in pyproject.split("[project.optional-dependencies]")[0]
    db_py = (service.package / "db.py").read_text()
    assert 'DATABASE_URL_ENV = "BILLING_CORE_DATABASE_URL"' in db_py
    assert "postgresql+psycopg://" in (service.path / "README.md").read_text()


def test_sqlite_choice_keeps_the_postgresql_driver_optional(new_project: NewProject) -> None:
    pyproject = (new_project().path / "pyproject.toml").read_text()
    dependencies, extras = pyproject.split("[project.optional-dependencies]")
    assert "psycopg" not in dependencies
    assert 'postgresql = ["psycopg[binary]' in extras


def test_non_jinja_files_are_copied_byte_for_byte(new_project: NewProject) -> None:
    service = new_project()
    source = ROOT / "template" / "<< program_name >>" / "migrations" / "script.py.mako"
    rendered = service.package / "migrations" / "script.py.mako"
    assert rendered.read_bytes() == source.read_bytes()
    assert "${message}" in rendered.read_text()


def test_program_name_defaults_to_the_folder_name(copier_template: Path, tmp_path: Path) -> None:
    destination = tmp_path / "order-tracker"
    run_copy(str(copier_template), destination, defaults=True, quiet=True)
    db_py = (destination / "order_tracker" / "db.py").read_text()
    assert 'DATABASE_URL_ENV = "ORDER_TRACKER_DATABASE_URL"' in db_py


@pytest.mark.parametrize(
    ("use_async", "url"), [(False, "postgresql+psycopg://"), (True, "postgresql+asyncpg://")]
)
def test_the_next_steps_name_the_url_of_the_variants_driver(
    copier_template: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    use_async: bool,
    url: str,
) -> None:
    data = {"program_name": "desk", "database": "postgresql", "use_async": use_async}
    run_copy(str(copier_template), tmp_path / "desk", data=data, defaults=True)
    message = capsys.readouterr().err
    (export,) = [line.strip() for line in message.splitlines() if "DESK_DATABASE_URL=" in line]
    assert export == f"export DESK_DATABASE_URL='{url}user:password@localhost:5432/desk'"


INVALID_PROGRAM_NAMES = {
    "my-service": "not a valid package name",
    "class": "Python keyword",
    "1app": "not a valid package name",
    "My App": "not a valid package name",
    "../x": "not a valid package name",
    "": "program_name is required",
    "sqlalchemy": "dependency",
    "alembic": "dependency",
    "test": "standard library",
    "json": "standard library",
    "Shop": "not a valid package name",
    "a" * 41: "41 characters long: keep the package name to 40 or fewer",
}


@pytest.mark.parametrize("name", INVALID_PROGRAM_NAMES)
def test_invalid_program_name_is_refused_and_nothing_is_written(
    copier: CopierFixture, tmp_path: Path, name: str
) -> None:
    destination = tmp_path / "out"
    with pytest.raises(ValueError, match=INVALID_PROGRAM_NAMES[name]) as error:
        copier.copy(destination, program_name=name)
    assert "program_name" in str(error.value)
    assert not destination.exists()


def test_the_message_suggests_a_valid_name(copier: CopierFixture, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="for example 'my_service'"):
        copier.copy(tmp_path / "out", program_name="my-service")
    with pytest.raises(ValueError, match="for example 'class_service'"):
        copier.copy(tmp_path / "out", program_name="class")


@pytest.mark.parametrize(
    ("question", "value", "message"),
    [
        ("project_name", "-bad name-", "not a valid distribution name"),
        ("author_email", "not-an-email", "does not look like an email"),
    ],
)
def test_other_invalid_answers_are_refused(
    copier: CopierFixture, tmp_path: Path, question: str, value: str, message: str
) -> None:
    destination = tmp_path / "out"
    with pytest.raises(ValueError, match=message):
        copier.copy(destination, **{question: value})
    assert not destination.exists()


def test_the_cli_refuses_a_bad_answer_without_trust_and_writes_nothing(
    copier_template: Path, tmp_path: Path
) -> None:
    destination = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "copier", "copy", "--defaults", "--data", "program_name=class"]
        + [str(copier_template), str(destination)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "'class' is a Python keyword" in result.stderr
    assert not destination.exists()


def test_copying_needs_no_trust(copier_template: Path, tmp_path: Path) -> None:
    config = yaml.safe_load((ROOT / "copier.yml").read_text())
    assert not {"_tasks", "_migrations", "_jinja_extensions"} & set(config)
    destination = tmp_path / "svc"
    result = subprocess.run(
        [sys.executable, "-m", "copier", "copy", "--defaults"]
        + ["--data", "program_name=inventory", str(copier_template), str(destination)],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (destination / "inventory" / "migrations" / "env.py").is_file()
    # The next steps, a virtual environment first, as the README's.
    steps = [line.strip() for line in result.stderr.splitlines()]  # Copier prints to stderr
    start = steps.index(f"cd {destination}")
    assert steps[start : start + 6] == [
        f"cd {destination}",
        "python -m venv .venv && . .venv/bin/activate",
        "python -m pip install -e '.[test]'",
        'alembic revision --autogenerate -m "create initial tables"',
        "alembic upgrade head",
        "pytest",
    ]


def test_the_author_is_optional_and_never_a_placeholder(new_project: NewProject) -> None:
    """No name and no email: no `authors` in pyproject.toml, nothing invented."""
    answers = {"author_name": "", "author_email": ""}
    pyproject = tomllib.loads((new_project(**answers).path / "pyproject.toml").read_text())
    assert "authors" not in pyproject["project"]
    only_email = new_project(author_name=" ", author_email="ops@example.org")
    project = tomllib.loads((only_email.path / "pyproject.toml").read_text())["project"]
    assert project["authors"] == [{"email": "ops@example.org"}]
    both = new_project(author_name='Grace "Amazing" Hopper', author_email="grace@example.org")
    project = tomllib.loads((both.path / "pyproject.toml").read_text())["project"]
    assert project["authors"] == [{"name": 'Grace "Amazing" Hopper', "email": "grace@example.org"}]


def test_questions_fit_80_columns_and_offer_supported_pythons() -> None:
    config = yaml.safe_load((ROOT / "copier.yml").read_text())
    questions = {name: q for name, q in config.items() if not name.startswith("_")}
    for name, question in questions.items():
        for line in str(question.get("help", "")).splitlines():
            # Copier prints the help after a two-column prompt marker.
            assert len(line) <= 78, f"{name}: {line!r} is {len(line)} columns"
    python = questions["python_version"]
    assert python["choices"] == ["3.11", "3.12", "3.13", "3.14"]  # upstream-supported today
    assert python["default"] == "3.11"


@pytest.mark.parametrize(("oldest", "matrix"), [("3.11", ["3.11", "3.14"]), ("3.14", ["3.14"])])
def test_the_ci_matrix_tests_the_oldest_and_newest_python(
    new_project: NewProject, oldest: str, matrix: list[str]
) -> None:
    workflow = new_project(python_version=oldest).path / ".github" / "workflows" / "ci.yml"
    (job,) = yaml.safe_load(workflow.read_text())["jobs"].values()
    assert job["strategy"]["matrix"]["python-version"] == matrix
