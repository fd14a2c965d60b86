"""What the benchmarks share: a rendered project, fresh databases, medians.

Benchmarks print ratios of two ways of doing one thing, measured side by
side in one run (interleaved, so that a busy machine slows both alike); no
test asserts on their timings.
"""

from __future__ import annotations

import statistics
import sys
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from harness.postgres import PostgresCluster, find_pg_bindir  # noqa: E402

FreshUrl = Callable[[], str]


def render(destination: Path, program_name: str) -> Path:
    """The template as it is in this checkout (uncommitted changes included), SQLite answers."""
    from copier import run_copy
    from copier.errors import DirtyLocalWarning

    # Uncommitted template changes are what a developer wants to measure.
    warnings.simplefilter("ignore", DirtyLocalWarning)
    data = {"program_name": program_name, "author_name": "Bench Mark", "database": "sqlite"}
    run_copy(str(ROOT), destination, data=data, defaults=True, quiet=True, vcs_ref="HEAD")
    return destination


def sqlite_databases(base: Path) -> FreshUrl:
    """``fresh_url()``: the URL of a new, empty SQLite file under ``base``."""

    def fresh_url() -> str:
        return f"sqlite:///{base / f'{uuid.uuid4().hex[:8]}.sqlite'}"

    return fresh_url


@contextmanager
def postgres_databases(base: Path) -> Iterator[FreshUrl | None]:
    """``fresh_url()`` on a throwaway PostgreSQL server, or None without its binaries."""
    bindir = find_pg_bindir()
    if bindir is None:
        print("\nPostgreSQL: skipped (no server binaries; see .ci/install-postgres.sh)")
        yield None
        return
    # Durable, as a deployed server: each revision's commit waits for the disk.
    with PostgresCluster.start(base / "pg", bindir, durable=True) as cluster:
        cluster.create_role("bench", "bench-password")

        def fresh_url() -> str:
            name = f"bench_{uuid.uuid4().hex[:8]}"
            cluster.create_database(name, owner="bench")
            return cluster.url_for(name, user="bench", password="bench-password")

        yield fresh_url


def backends(base: Path) -> Iterator[tuple[str, FreshUrl]]:
    """Each backend's name and ``fresh_url``: SQLite, then PostgreSQL when installed."""
    yield "SQLite", sqlite_databases(base)
    with postgres_databases(base) as fresh_pg:
        if fresh_pg is not None:
            yield "PostgreSQL", fresh_pg


def median(values: list[float]) -> float:
    return statistics.median(values)
