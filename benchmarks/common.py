"""What the benchmarks share: a rendered project, fresh databases, medians.

Benchmarks print ratios of two ways of doing one thing, measured side by
side in one run (interleaved, so that a busy machine slows both alike); no
test asserts on their timings.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from harness.postgres import PostgresCluster, find_pg_bindir  # noqa: E402

FreshUrl = Callable[[], str]


def render(destination: Path, program_name: str, *, use_async: bool = False) -> Path:
    """The template as it is in this checkout (uncommitted changes included), SQLite answers."""
    from copier import run_copy
    from copier.errors import DirtyLocalWarning

    # Uncommitted template changes are what a developer wants to measure.
    warnings.simplefilter("ignore", DirtyLocalWarning)
    data = {
        "program_name": program_name,
        "author_name": "Bench Mark",
        "database": "sqlite",
        "use_async": use_async,
    }
    run_copy(str(ROOT), destination, data=data, defaults=True, quiet=True, vcs_ref="HEAD")
    return destination


@dataclass
class Backend:
    """A backend's fresh databases, and copies of one (its cheapest fresh database)."""

    name: str
    fresh_url: FreshUrl
    copy: Callable[[str], str]  # a new database, a copy of the one at the URL given: its URL
    drop: Callable[[str], None]  # a copy is dropped


def sqlite_databases(base: Path) -> FreshUrl:
    """``fresh_url()``: the URL of a new, empty SQLite file under ``base``."""

    def fresh_url() -> str:
        return f"sqlite:///{base / f'{uuid.uuid4().hex[:8]}.sqlite'}"

    return fresh_url


def sqlite_backend(base: Path) -> Backend:
    """SQLite files under ``base``; a copy is a file copy."""
    fresh_url = sqlite_databases(base)

    def copy(url: str) -> str:
        new = fresh_url()
        shutil.copyfile(url.removeprefix("sqlite:///"), new.removeprefix("sqlite:///"))
        return new

    return Backend(
        "SQLite", fresh_url, copy, lambda url: Path(url.removeprefix("sqlite:///")).unlink()
    )


@contextmanager
def postgres_backend(base: Path) -> Iterator[Backend | None]:
    """A throwaway PostgreSQL server, or None without its binaries.

    A copy is ``CREATE DATABASE ... TEMPLATE``, issued by the superuser (the
    role ``bench`` may not create databases, as in many test setups).
    """
    bindir = find_pg_bindir()
    if bindir is None:
        print("\nPostgreSQL: skipped (no server binaries; see .ci/install-postgres.sh)")
        yield None
        return
    # Durable, as a deployed server: each revision's commit waits for the disk.
    with PostgresCluster.start(base / "pg", bindir, durable=True) as cluster:
        cluster.create_role("bench", "bench-password")

        def fresh_url(template: str | None = None) -> str:
            name = f"bench_{uuid.uuid4().hex[:8]}"
            cluster.create_database(name, owner="bench", template=template)
            return cluster.url_for(name, user="bench", password="bench-password")

        def copy(url: str) -> str:
            return fresh_url(template=url.rsplit("/", 1)[1])

        def drop(url: str) -> None:
            cluster.drop_database(url.rsplit("/", 1)[1])

        yield Backend("PostgreSQL", fresh_url, copy, drop)


def backends(base: Path) -> Iterator[Backend]:
    """SQLite, then PostgreSQL when its server binaries are installed."""
    yield sqlite_backend(base)
    with postgres_backend(base) as postgres:
        if postgres is not None:
            yield postgres


def median(values: list[float]) -> float:
    return statistics.median(values)
