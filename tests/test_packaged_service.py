"""The service's wheel migrates its database from an empty directory.

A service is deployed as an installed package or a container: no alembic.ini,
no source tree, an arbitrary working directory.  These tests build the wheel
of a rendered project after two revisions, install it into a fresh virtual
environment and run ``python -m <pkg> db ...`` and ``migrate.upgrade()`` from
an empty directory.
"""

from __future__ import annotations

import dataclasses
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from harness.database import assert_no_password
from harness.postgres import free_port
from harness.project import Project, Renderer, clean_environ, revision_id
from harness.venv import make_venv, uv

PROGRAM = "order_desk"
SCRIPT = "order-desk"  # project_name's default: the console script's name

CUSTOMER_MODEL = '''
class Customer(Base):
    """Someone who places orders."""

    __tablename__ = "customer"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(200), unique=True)
'''

# One worker builds this module's environment and runs its tests (pytest-xdist).
pytestmark = pytest.mark.xdist_group("packaged_service")


@dataclass
class Built:
    """A rendered project with two revisions, its wheel, and the wheel installed."""

    source: Project
    revisions: list[str]  # oldest first
    wheel: Path
    venv: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def user(self, home: Path, database_url: str) -> Project:
        """The installed service as run by a user with an empty home and working directory."""
        env = clean_environ(home)
        env.pop("PYTHONPATH", None)
        env[f"{PROGRAM.upper()}_DATABASE_URL"] = database_url
        workdir = home / "workdir"
        workdir.mkdir(parents=True)
        return dataclasses.replace(self.source, path=workdir, env=env, python=str(self.python))


@pytest.fixture(scope="module")
def built(renderer: Renderer, tmp_path_factory: pytest.TempPathFactory) -> Built:
    # database=postgresql: the wheel then depends on the PostgreSQL driver.
    source = renderer.new(
        tmp_path_factory.mktemp("source"), program_name=PROGRAM, database="postgresql"
    )
    first = source.autogenerate("create item table")
    source.command("upgrade", "head")
    source.add_to_models(CUSTOMER_MODEL)
    second = source.autogenerate("add customer table")
    out = tmp_path_factory.mktemp("dist")
    uv("build", "--wheel", "--out-dir", str(out), str(source.path))
    (wheel,) = out.glob("*.whl")
    venv = tmp_path_factory.mktemp("installed") / "venv"
    make_venv(venv, str(wheel))
    return Built(source, [revision_id(first), revision_id(second)], wheel, venv)


def run_db(user: Project, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return user.run(user.python, "-m", PROGRAM, "db", *args, check=check)


def test_the_wheel_ships_the_migrations_and_every_revision(built: Built) -> None:
    names = set(zipfile.ZipFile(built.wheel).namelist())
    migrations = f"{PROGRAM}/migrations"
    assert {f"{migrations}/env.py", f"{migrations}/script.py.mako", f"{migrations}/README"} <= names
    revisions = {f"{migrations}/versions/{path.name}" for path in built.source.versions()}
    assert len(revisions) == 2
    assert revisions <= names
    package = {"db.py", "migrate.py", "migration_machinery/guards.py", "models.py", "py.typed"}
    assert {f"{PROGRAM}/{name}" for name in package} <= names
    # Developer files stay out of the package.
    assert not {name for name in names if "alembic.ini" in name or name.startswith("tests/")}
    assert not {name for name in names if "__pycache__" in name}


def test_the_installed_package_runs_from_site_packages(built: Built, tmp_path: Path) -> None:
    user = built.user(tmp_path, f"sqlite:///{tmp_path / 'app.db'}")
    # The database answer made the PostgreSQL driver a dependency: psycopg imports.
    code = f"import psycopg, {PROGRAM}; print({PROGRAM}.__file__)"
    where = user.run(user.python, "-c", code)
    assert Path(where.stdout.strip()).is_relative_to(built.venv)


def test_db_upgrade_head_from_an_empty_directory(
    built: Built, tmp_path: Path, backend_url: str
) -> None:
    user = built.user(tmp_path, backend_url)

    upgrade = run_db(user, "upgrade", "head")
    assert user.tables() == {"item", "customer", "alembic_version"}
    assert user.version_rows() == [built.revisions[-1]]
    assert f"Running upgrade {built.revisions[0]} -> {built.revisions[1]}" in upgrade.stderr

    current = run_db(user, "current")
    assert f"{built.revisions[-1]} (head)" in current.stdout
    assert list(user.path.iterdir()) == []  # nothing read from or written to the cwd
    assert_no_password(upgrade, current)


def test_history_check_and_downgrade_from_an_empty_directory(built: Built, tmp_path: Path) -> None:
    user = built.user(tmp_path, f"sqlite:///{tmp_path / 'app.db'}")
    first, second = built.revisions
    run_db(user, "upgrade", "head")

    history = run_db(user, "history").stdout
    assert f"{first} -> {second} (head), add customer table" in history
    assert f"<base> -> {first}, create item table" in history
    assert "No new upgrade operations detected" in run_db(user, "check").stdout

    run_db(user, "downgrade", "-1")
    assert user.tables() == {"item", "alembic_version"}
    assert f"{first}\n" in run_db(user, "current").stdout
    run_db(user, "downgrade", "base")
    assert user.tables() == {"alembic_version"}
    assert user.version_rows() == []


def test_the_console_script_is_the_same_command(built: Built, tmp_path: Path) -> None:
    user = built.user(tmp_path, f"sqlite:///{tmp_path / 'app.db'}")
    user.run(str(built.venv / "bin" / SCRIPT), "db", "upgrade", "head")
    assert user.version_rows() == [built.revisions[-1]]


def test_migrating_from_python_at_start_up(built: Built, tmp_path: Path) -> None:
    user = built.user(tmp_path, f"sqlite:///{tmp_path / 'app.db'}")
    other = f"sqlite:///{tmp_path / 'other.db'}"
    code = (
        f"from {PROGRAM} import migrate\n"
        "migrate.upgrade()\n"
        "migrate.check()\n"
        "print(migrate.current())\n"
        f"migrate.upgrade('{built.revisions[0]}', url={other!r})\n"
        f"print(migrate.current({other!r}))\n"
    )
    printed = user.run(user.python, "-c", code).stdout.splitlines()
    # check() passed (it raises otherwise) and, called from Python, printed nothing.
    assert printed == [repr((built.revisions[-1],)), repr((built.revisions[0],))]
    assert user.tables() == {"item", "customer", "alembic_version"}


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("not a url", "is not a valid SQLAlchemy URL"),
        ("mysql+pymysql://app:hunter2@localhost/app", "'pymysql' for mysql+pymysql://app:***@"),
        ("postgresql+psycopg://app:hunter2@127.0.0.1:{port}/app", "Cannot connect"),
        ("sqlite:////nonexistent-folder/app.db", "Cannot connect"),
    ],
)
def test_a_bad_database_url_fails_with_one_line(
    built: Built, tmp_path: Path, url: str, says: str
) -> None:
    user = built.user(tmp_path, url.format(port=free_port()))
    result = run_db(user, "upgrade", "head", check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 255  # as `alembic` exits
    assert result.stdout == ""  # the failure goes to stderr
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert lines[0].startswith("FAILED: ")
    assert says in lines[0]
    assert f"{PROGRAM.upper()}_DATABASE_URL" in lines[0]
    assert "hunter2" not in output


@pytest.mark.parametrize(
    "args",
    # (no arguments at all: see test_help_exits_0_names_the_command_typed_and_hides_init)
    [
        ["db"],
        ["db", "frobnicate"],
        ["migrate", "upgrade", "head"],
        ["db", "upgrade"],
        ["db", "-c", "/nowhere/alembic.ini", "upgrade", "head"],
        ["db", "-n", "other", "current"],
    ],
    ids=["no-command", "unknown-command", "not-db", "missing-revision", "ini-file", "ini-section"],
)
def test_usage_errors_exit_2_with_the_usage(built: Built, tmp_path: Path, args: list[str]) -> None:
    user = built.user(tmp_path, f"sqlite:///{tmp_path / 'app.db'}")
    result = user.run(user.python, "-m", PROGRAM, *args, check=False)
    assert result.returncode == 2
    assert "usage:" in result.stderr
    assert f"python -m {PROGRAM} db" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "app.db").exists()
    if "-c" in args or "-n" in args:  # Alembic's ini options: refused, not ignored
        assert "-c/--config and -n/--name choose an alembic.ini" in result.stderr
        assert f"reads its configuration from {PROGRAM}.migrate" in result.stderr


@pytest.mark.parametrize("how", ["console script", "python -m"])
def test_help_exits_0_names_the_command_typed_and_hides_init(
    built: Built, tmp_path: Path, how: str
) -> None:
    user = built.user(tmp_path, f"sqlite:///{tmp_path / 'app.db'}")
    if how == "console script":
        command, typed = [str(built.venv / "bin" / SCRIPT)], SCRIPT
    else:
        command, typed = [user.python, "-m", PROGRAM], f"python -m {PROGRAM}"

    top = user.run(*command, "--help")

    assert top.stdout.startswith(f"usage: {typed} db <alembic command>")
    assert f"{typed} db upgrade head" in top.stdout
    if how == "python -m":
        return  # the rest is the same code, named the same way
    db = user.run(*command, "db", "--help")
    assert db.stdout.startswith(f"usage: {typed} db")
    for name in ("upgrade", "downgrade", "current", "history", "check", "revision"):
        assert name in db.stdout
    assert "init" not in db.stdout and "list_templates" not in db.stdout
    usage_error = user.run(*command, check=False)
    assert usage_error.returncode == 2
    assert usage_error.stderr.startswith(f"usage: {typed} db")


def test_current_on_an_empty_database_says_what_to_run(built: Built, tmp_path: Path) -> None:
    user = built.user(tmp_path, f"sqlite:///{tmp_path / 'app.db'}")

    result = user.run(str(built.venv / "bin" / SCRIPT), "db", "current")

    assert result.stdout.strip() == (
        f"No revision applied yet; apply them: `{SCRIPT} db upgrade head`."
    )
