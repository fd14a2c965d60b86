"""Fixtures: the rendered project a test works in, and the databases it works on.

``new_project(**answers)`` hands a test its own copy of the template rendered
with the real Copier (rendered once per answer set per session), with HOME
and XDG_DATA_HOME pointed at an empty folder and the database URL at a fresh
SQLite file.  ``pg_url`` is a fresh PostgreSQL database on the session's
server; ``backend_url`` runs a test once on each backend.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import ROOT, jinja_cache
from harness.database import AWKWARD_PASSWORD
from harness.postgres import PostgresCluster, find_pg_bindir
from harness.project import Project, Renderer

NewProject = Callable[..., Project]

jinja_cache.install()  # Copier compiles the same templates for every render


@pytest.fixture(scope="session")
def copier_template_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def copier_template_paths() -> list[str]:
    # Only the template: copying .git/.venv is slow and breaks on a clean checkout.
    return ["copier.yml", "template"]


@pytest.fixture(scope="session")
def renderer(
    copier_template: Path, tmp_path_factory: pytest.TempPathFactory, worker_id: str
) -> Renderer:
    """Renders each answer set once per session (pytest-copier's committed template copy).

    The xdist workers share one cache, in the folder above their own temporary ones.
    """
    if worker_id == "master":
        return Renderer(copier_template, tmp_path_factory.mktemp("rendered"))
    shared = tmp_path_factory.getbasetemp().parent / "rendered"
    shared.mkdir(exist_ok=True)
    return Renderer(copier_template, shared)


@pytest.fixture
def new_project(renderer: Renderer, tmp_path: Path) -> NewProject:
    """``new_project(database_url=None, **answers)``: a fresh copy of the rendered template.

    An asyncio service (``use_async=True``) is given a PostgreSQL URL naming no
    driver (``postgresql://``), as its users write it: the service uses asyncpg,
    while this suite's own checks of the same URL use psycopg.
    """
    numbers = itertools.count()

    def _new(database_url: str | None = None, **answers: Any) -> Project:
        if answers.get("use_async") and database_url:
            database_url = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
        return renderer.new(tmp_path / f"project-{next(numbers)}", database_url, **answers)

    return _new


#: The service's two variants, by the answers that select them.
VARIANTS: dict[str, dict[str, Any]] = {"sync": {}, "async": {"use_async": True}}


@pytest.fixture(params=list(VARIANTS))
def variant(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The answers of each variant, sync then asyncio: a test taking it runs on both."""
    return VARIANTS[request.param]


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
    """One throwaway PostgreSQL server for the whole session (for each xdist worker)."""
    bindir = require_postgres_binaries()
    with PostgresCluster.start(tmp_path_factory.mktemp("pg"), bindir) as cluster:
        yield cluster


@pytest.fixture
def new_pg_url(pg_cluster: PostgresCluster) -> Iterator[Callable[[], str]]:
    """``new_pg_url()``: a fresh, empty database owned by a role whose password is URL-hostile.

    The role may create databases, as the rendered tests' fixtures do beside
    the database their ``<PKG>_TEST_DATABASE_URL`` names.
    """
    created: list[str] = []

    def _new() -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        pg_cluster.create_role(name, AWKWARD_PASSWORD, createdb=True)
        pg_cluster.create_database(name, owner=name)
        created.append(name)
        return pg_cluster.url_for(name, user=name, password=AWKWARD_PASSWORD)

    yield _new
    for name in created:
        pg_cluster.drop_database(name)


@pytest.fixture
def pg_url(new_pg_url: Callable[[], str]) -> str:
    """A fresh, empty PostgreSQL database (see new_pg_url)."""
    return new_pg_url()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database on each backend: a SQLite file, then PostgreSQL (pg_url)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'backend.sqlite'}"
    return str(request.getfixturevalue("pg_url"))


#: The longest tests outside the xdist groups (whose 15-25 s run on one worker):
#: started first, with the groups, they run beside the short ones, not after them.
LONG_FIRST = {
    "test_demo_leaves_a_service_to_keep_working_in",
    "test_sixty_revisions_squashed_at_forty",
    "test_the_test_database_cost_benchmarks_suites_pass_on_each_backend",
    "test_ruff_and_mypy_pass_out_of_the_box_for_other_answers",
    "test_without_psycopg_the_message_names_the_extra_and_installing_it_works",
    "test_real_models_migrate_the_first_time",
    "test_the_asyncio_variants_own_suite_passes_on_both_backends",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Long tests first: pytest-xdist hands tests out in collection order."""

    def long(item: pytest.Item) -> bool:
        name = getattr(item, "originalname", item.name)  # without its parameters
        return item.get_closest_marker("xdist_group") is not None or name in LONG_FIRST

    items.sort(key=lambda item: not long(item))  # stable: otherwise in file order


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: one worker more than the CPUs.

    Much of a test's time is spent waiting (on the processes it starts, on its
    PostgreSQL server): on 2 cores, 3 workers finish the suite a sixth sooner.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (cpus or 1) + 1
