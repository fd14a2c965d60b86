"""Benchmark: what the migration lock costs when replicas upgrade one database together.

Run it from the repository root (it is not a test; nothing asserts on timings):

    uv run python benchmarks/concurrent_upgrade.py                 # 5 repetitions, 8 processes
    uv run python benchmarks/concurrent_upgrade.py --repeat 10 --processes 4

It renders the template once (package ``bench``) with a history of six
hand-written revisions, then, on SQLite and (when the server binaries are
installed) a throwaway PostgreSQL server, repeats side by side:

- **racing**: N ``python -m alembic upgrade head`` on one fresh database,
  released together at a barrier (tests/harness/start_together.py): the
  first to take the lock applies the history, the others wait for it, then
  find the database at head;
- **no lock waits**: the same N processes, the same work, but each on its
  own database: one fresh (it applies the history), the others already at
  head (they find nothing to do), so nobody waits for anybody.

Both do the same CPU work (N processes, one history applied); what differs
is only the waiting, so the ratio racing / no-waits is what the lock costs.
The N processes are forked from one interpreter that did the imports, so
the race is not drowned in N Python start-ups.  Times are medians from the
release to the last exit.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from common import FreshUrl, backends, median, render
from harness.project import Project, clean_environ
from harness.start_together import run_together

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


def write_history(project: Path) -> None:
    bench = Project(project, "bench", env={})
    previous = None
    for number, (message, upgrade) in enumerate(HISTORY, start=1):
        revision = f"{number:04d}"
        bench.write_revision(revision, previous, f"# {message}\n{upgrade}")
        previous = revision


class Race:
    """N upgrades released together, each given its database URL."""

    def __init__(self, project: Path, base: Path, processes: int) -> None:
        self.project, self.processes = project, processes
        self.env = clean_environ(base / "home")
        self.env["PYTHONDONTWRITEBYTECODE"] = "0"  # a deployed service has its bytecode
        self.url_env = "BENCH_DATABASE_URL"

    def run(self, urls: list[str]) -> float:
        """Seconds from the release to the last exit."""
        commands = [["-m", "alembic", "upgrade", "head"]] * len(urls)
        envs = [{self.url_env: url} for url in urls]
        results, seconds = run_together(
            sys.executable, commands, cwd=self.project, env=self.env, envs=envs
        )
        failed = [r for r in results if r.returncode != 0]
        if failed:
            raise SystemExit(f"an upgrade failed:\n{failed[0].stdout}{failed[0].stderr}")
        return seconds

    def at_head(self, fresh_url: FreshUrl, count: int) -> list[str]:
        """``count`` databases already at head (upgraded one after the other, untimed)."""
        urls = [fresh_url() for _ in range(count)]
        for url in urls:
            self.run([url])
        return urls


def benchmark(name: str, race: Race, fresh_url: FreshUrl, repeat: int) -> None:
    others = race.processes - 1
    racing: list[float] = []
    no_waits: list[float] = []
    race.run([fresh_url()] * race.processes)  # warm-up: bytecode, page cache
    at_head = race.at_head(fresh_url, others)  # `upgrade head` leaves them there
    for _ in range(repeat):  # interleaved, so that load changes hit both alike
        racing.append(race.run([fresh_url()] * race.processes))
        no_waits.append(race.run([fresh_url(), *at_head]))
    one, other = median(racing), median(no_waits)
    print(f"\n{name}: {len(HISTORY)} revisions, {race.processes} processes, {repeat} repetitions")
    print(f"  racing for one database     {one:6.2f}s")
    print(f"  no lock waits (own ones)    {other:6.2f}s")
    print(f"  ratio                       {one / other:6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="repetitions (default 5)")
    parser.add_argument("--processes", type=int, default=8, help="concurrent upgrades (default 8)")
    options = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="bench-upgrade-") as tmp:
        base = Path(tmp)
        project = render(base / "bench", "bench")
        write_history(project)
        race = Race(project, base, options.processes)
        for backend in backends(base):
            benchmark(backend.name, race, backend.fresh_url, options.repeat)


if __name__ == "__main__":
    main()
