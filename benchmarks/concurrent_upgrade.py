"""Benchmark: wall time of 8 concurrent ``alembic upgrade head`` versus 1, same fresh database.

Run it from the repository root (it is not a test; nothing asserts on timings):

    uv run python benchmarks/concurrent_upgrade.py                 # 5 repetitions, 8 processes
    uv run python benchmarks/concurrent_upgrade.py --repeat 10 --processes 4

It renders the template once (``database=sqlite``, package ``bench``) with a
history of six hand-written revisions, then, for SQLite and (when the server
binaries are installed) a throwaway PostgreSQL server from
tests/postgres_cluster.py, repeats side by side, each on a fresh database:

- one ``python -m alembic upgrade head``;
- N of them released together at a barrier (tests/start_together.py), racing
  for the migration lock: the first applies the history, the others wait,
  then find the database at head.

Two times are reported, as medians: "launch" (from starting the processes to
the last exit, Python start-up included: what replicas starting together
see) and "race" (from the barrier to the last exit: the lock and the
migrations alone), with the ratio N-concurrent / single for each.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import Service, clean_environ  # noqa: E402
from migration_helpers import write_revision  # noqa: E402
from postgres_cluster import PostgresCluster, find_pg_bindir  # noqa: E402
from start_together import run_together  # noqa: E402

HISTORY = [
    (
        "create customer",
        """
        op.create_table(
            "customer",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("email", sa.String(200), nullable=False, unique=True),
        )
        """,
    ),
    (
        "create order",
        """
        op.create_table(
            "purchase",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("customer_id", sa.Integer, sa.ForeignKey("customer.id"), nullable=False),
            sa.Column("total_cents", sa.Integer, nullable=False),
        )
        """,
    ),
    (
        "add customer name",
        """
        with op.batch_alter_table("customer") as batch:
            batch.add_column(sa.Column("name", sa.String(100)))
        """,
    ),
    ("index totals", 'op.create_index("ix_purchase_total", "purchase", ["total_cents"])'),
    (
        "seed customers",
        """
        customer = sa.table("customer", sa.column("email", sa.String))
        op.bulk_insert(customer, [{"email": f"c{i}@example.org"} for i in range(200)])
        """,
    ),
    (
        "longer emails",
        """
        with op.batch_alter_table("customer") as batch:
            batch.alter_column("email", type_=sa.String(320))
        """,
    ),
]


def render(base: Path) -> Service:
    from copier import run_copy
    from copier.errors import DirtyLocalWarning

    # Uncommitted template changes are what a developer wants to measure.
    warnings.simplefilter("ignore", DirtyLocalWarning)
    data = {"program_name": "bench", "author_name": "Bench Mark", "database": "sqlite"}
    destination = base / "bench"
    run_copy(str(ROOT), destination, data=data, defaults=True, quiet=True, vcs_ref="HEAD")
    service = Service(path=destination, program_name="bench", env=clean_environ(base / "home"))
    previous = None
    for number, (message, upgrade) in enumerate(HISTORY, start=1):
        revision = f"{number:04d}"
        write_revision(service, revision, previous, f"# {message}\n{upgrade}")
        previous = revision
    return service


def measure(service: Service, url: str, processes: int) -> tuple[float, float]:
    """Upgrade ``url`` with ``processes`` racing upgrades: (launch, race) seconds."""
    env = {**service.env, service.url_env: url}
    commands = [["-m", "alembic", "upgrade", "head"]] * processes
    launched = time.monotonic()
    results, race = run_together(service.python, commands, cwd=service.path, env=env)
    launch = time.monotonic() - launched
    failed = [r for r in results if r.returncode != 0]
    if failed:
        raise SystemExit(f"an upgrade failed:\n{failed[0].stdout}{failed[0].stderr}")
    return launch, race


def benchmark(
    name: str, service: Service, fresh_url: Callable[[], str], repeat: int, processes: int
) -> None:
    single: list[tuple[float, float]] = []
    many: list[tuple[float, float]] = []
    measure(service, fresh_url(), 1)  # warm-up: .pyc files, page cache
    for _ in range(repeat):  # interleaved, so that load changes hit both alike
        single.append(measure(service, fresh_url(), 1))
        many.append(measure(service, fresh_url(), processes))
    print(f"\n{name}: {len(HISTORY)} revisions, {repeat} repetitions, medians")
    print(f"  {'':8}{'1 upgrade':>12}{f'{processes} concurrent':>16}{'ratio':>8}")
    for index, label in enumerate(("launch", "race")):
        one = statistics.median(t[index] for t in single)
        all_ = statistics.median(t[index] for t in many)
        print(f"  {label:8}{one:>11.2f}s{all_:>15.2f}s{all_ / one:>8.2f}")


@contextmanager
def postgres(base: Path) -> Iterator[Callable[[], str] | None]:
    bindir = find_pg_bindir()
    if bindir is None:
        print("\nPostgreSQL: skipped (no server binaries; see .ci/install-postgres.sh)")
        yield None
        return
    with PostgresCluster.start(base / "pg", bindir) as cluster:

        def fresh_url() -> str:
            name = f"bench_{uuid.uuid4().hex[:8]}"
            cluster.create_role(name, "bench-password")
            cluster.create_database(name, owner=name)
            return cluster.url_for(name, user=name, password="bench-password")

        yield fresh_url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="repetitions (default 5)")
    parser.add_argument("--processes", type=int, default=8, help="concurrent upgrades (default 8)")
    options = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="bench-upgrade-") as tmp:
        base = Path(tmp)
        service = render(base)

        def fresh_sqlite() -> str:
            return f"sqlite:///{base / f'{uuid.uuid4().hex[:8]}.sqlite'}"

        benchmark("SQLite", service, fresh_sqlite, options.repeat, options.processes)
        with postgres(base) as fresh_pg:
            if fresh_pg is not None:
                benchmark("PostgreSQL", service, fresh_pg, options.repeat, options.processes)


if __name__ == "__main__":
    main()
