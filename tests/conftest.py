"""Fixtures: render the template with the real Copier, run the real Alembic.

``render(**answers)`` copies the template into a temp folder (pytest-copier)
and returns a :class:`Service` whose commands run as a user would run them:
as subprocesses, in the rendered project, with HOME and XDG_DATA_HOME pointed
at empty temp folders so nothing touches the developer's real data folder.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from postgres_cluster import PostgresCluster, find_pg_bindir
from pytest_copier import CopierFixture

ROOT = Path(__file__).resolve().parents[1]

# Every character with a meaning in a URL: the rendered project must cope.
AWKWARD_PASSWORD = "p%w@:/?#x"


@pytest.fixture(scope="session")
def copier_template_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def copier_template_paths() -> list[str]:
    # Only the template: copying .git/.venv is slow and breaks on a clean checkout.
    return ["copier.yml", "template"]


@pytest.fixture
def copier_defaults() -> dict[str, str]:
    return {"program_name": "shop", "author_name": "Ada Lovelace"}


def clean_environ(home: Path) -> dict[str, str]:
    """The environment of a user with an empty home and no database URL set."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.endswith("_DATABASE_URL") and not key.startswith(("XDG_", "VIRTUAL_ENV"))
    }
    env.update(HOME=str(home), XDG_DATA_HOME=str(home / ".local" / "share"))
    return env


@dataclass
class Service:
    """A rendered project, and how a user runs commands in it."""

    path: Path
    program_name: str
    env: dict[str, str]
    python: str = sys.executable

    @property
    def url_env(self) -> str:
        return f"{self.program_name.upper()}_DATABASE_URL"

    @property
    def database_url(self) -> str:
        return self.env[self.url_env]

    @property
    def package(self) -> Path:
        return self.path / self.program_name

    @property
    def models(self) -> Path:
        return self.package / "models.py"

    @property
    def env_py(self) -> Path:
        return self.package / "migrations" / "env.py"

    def versions(self) -> list[Path]:
        return sorted((self.package / "migrations" / "versions").glob("*.py"))

    def run(
        self, *args: str, check: bool = True, cwd: Path | None = None, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in the project (``cwd`` elsewhere to test that)."""
        result = subprocess.run(
            args,
            cwd=cwd or self.path,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=300,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    def alembic(self, *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
        """Run ``alembic ARGS`` as a user would, from the project root by default."""
        return self.run(self.python, "-m", "alembic", *args, **kwargs)  # type: ignore[arg-type]

    def autogenerate(self, message: str) -> Path:
        """Run ``alembic revision --autogenerate`` and return the file it wrote."""
        before = set(self.versions())
        self.alembic("revision", "--autogenerate", "-m", message)
        (written,) = set(self.versions()) - before
        return written

    def add_to_models(self, code: str) -> None:
        """Append model code to models.py, as a user editing it would."""
        self.models.write_text(self.models.read_text() + "\n\n" + code.strip() + "\n")

    def replace_in_models(self, old: str, new: str) -> None:
        text = self.models.read_text()
        assert old in text, f"{old!r} not in models.py"
        self.models.write_text(text.replace(old, new))

    def engine(self) -> sa.Engine:
        return sa.create_engine(self.database_url, poolclass=sa.NullPool)

    def tables(self) -> set[str]:
        engine = self.engine()
        try:
            return set(sa.inspect(engine).get_table_names())
        finally:
            engine.dispose()

    def columns(self, table: str) -> set[str]:
        engine = self.engine()
        try:
            return {column["name"] for column in sa.inspect(engine).get_columns(table)}
        finally:
            engine.dispose()

    def version_rows(self) -> list[str]:
        engine = self.engine()
        try:
            with engine.connect() as connection:
                if not sa.inspect(connection).has_table("alembic_version"):
                    return []
                query = sa.text("SELECT version_num FROM alembic_version")
                return sorted(connection.execute(query).scalars())
        finally:
            engine.dispose()


def revision_id(path: Path) -> str:
    """The revision identifier written in a revision file."""
    match = re.search(r"^revision: str = '([0-9a-f]+)'", path.read_text(), re.MULTILINE)
    assert match, f"no revision id in {path}"
    return match.group(1)


Render = Callable[..., Service]


@pytest.fixture
def render(copier: CopierFixture, tmp_path: Path) -> Render:
    """Render the template with ``answers`` (over copier_defaults) into a temp folder.

    The service's database URL is a SQLite file in the temp folder unless
    ``database_url`` is given.
    """

    def _render(database_url: str | None = None, **answers: str) -> Service:
        name = answers.get("program_name", "shop")
        root = tmp_path / f"render-{uuid.uuid4().hex[:8]}"
        project = copier.copy(root / name, **answers)
        env = clean_environ(root / "home")
        env[f"{name.upper()}_DATABASE_URL"] = database_url or f"sqlite:///{root / 'db.sqlite'}"
        return Service(path=project.path, program_name=name, env=env)

    return _render


def require_postgres_binaries() -> Path:
    """The server binaries, or skip (locally) / fail (under CI=true) with the reason."""
    bindir = find_pg_bindir()
    if bindir is None:
        reason = (
            "PostgreSQL server binaries (initdb, pg_ctl) not found; "
            "install them with .ci/install-postgres.sh"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return bindir


@pytest.fixture(scope="session")
def pg_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresCluster]:
    """One throwaway PostgreSQL server for the whole test session."""
    bindir = require_postgres_binaries()
    with PostgresCluster.start(tmp_path_factory.mktemp("pg"), bindir) as cluster:
        yield cluster


@pytest.fixture
def pg_url(pg_cluster: PostgresCluster) -> Iterator[str]:
    """A fresh, empty database owned by a role whose password is URL-hostile."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    pg_cluster.create_role(name, AWKWARD_PASSWORD)
    pg_cluster.create_database(name, owner=name)
    yield pg_cluster.url_for(name, user=name, password=AWKWARD_PASSWORD)
    pg_cluster.drop_database(name)


@pytest.fixture(scope="module")
def render_shared(copier_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Render:
    """Like ``render``, but module-scoped: for projects the tests of a module share.

    A test that edits such a project must undo its edits.
    """
    from copier import run_copy

    def _render(database_url: str | None = None, **answers: str) -> Service:
        data = {"program_name": "shop", "author_name": "Ada Lovelace", **answers}
        name = data["program_name"]
        root = tmp_path_factory.mktemp(f"shared-{name}")
        run_copy(str(copier_template), root / name, data=data, defaults=True, quiet=True)
        env = clean_environ(root / "home")
        env[f"{name.upper()}_DATABASE_URL"] = database_url or f"sqlite:///{root / 'db.sqlite'}"
        return Service(path=root / name, program_name=name, env=env)

    return _render


def uv_binary() -> str:
    """The uv running these tests (``uv run`` sets $UV), else the one on PATH."""
    import shutil

    uv = os.environ.get("UV") or shutil.which("uv")
    if uv is None:
        pytest.fail("uv is not on PATH: the packaging tests build and install with uv.")
    return uv


def make_venv(path: Path, *requirements: str) -> Path:
    """Create a fresh virtual environment with ``uv`` and install ``requirements``.

    Returns its python.  Runs in the real environment (HOME included), so uv's
    package cache makes this take seconds.
    """
    uv = uv_binary()
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    for command in (
        [uv, "venv", "--quiet", "--python", sys.executable, str(path)],
        [uv, "pip", "install", "--quiet", "--python", str(path / "bin" / "python"), *requirements],
    ):
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout}{result.stderr}"
    return path / "bin" / "python"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database on each backend: a SQLite file, then PostgreSQL (pg_url)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'backend.sqlite'}"
    return str(request.getfixturevalue("pg_url"))
