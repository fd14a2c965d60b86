"""Benchmark: a fresh database at head before and after ``db squash``.

Run it from the repository root (it is not a test; nothing asserts on timings):

    uv run python benchmarks/squash.py                      # 60 revisions, squashed at 40
    uv run python benchmarks/squash.py --revisions 60 240 --repeat 5

For each history length it renders the template, writes the history of
``tests/harness/history.py`` (tables with foreign keys, indexes, CHECK and
UNIQUE constraints, columns added and renamed, a table rebuilt on SQLite, a
table renamed, an ENUM, a data migration), and copies the project twice:
one keeps the whole history, the other is squashed at two thirds of it with
``db squash --drop-data-migrations`` (proven on SQLite, and on PostgreSQL when
its server binaries are installed; the squash's own time is printed too).
Then, on each backend, each on a fresh database, interleaved: ``upgrade
head`` through every revision, and through the baseline and the revisions
after it.  It prints the medians side by side and their ratio.
"""

from __future__ import annotations

import argparse
import importlib
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

from common import Backend, FreshUrl, median, postgres_backend, render, sqlite_backend
from harness.history import revision_id, write_history
from harness.project import Project, clean_environ

PACKAGE = "bench"


class Histories:
    """One history, whole and squashed, as two copies of a rendered project."""

    def __init__(self, base: Path, count: int, at: int) -> None:
        self.count, self.at = count, at
        rendered = render(base / f"rendered-{count}", PACKAGE)
        env = clean_environ(base / "home")
        env.pop(f"{PACKAGE.upper()}_TEST_DATABASE_URL", None)
        self.before = Project(base / f"before-{count}", PACKAGE, env)
        self.after = Project(base / f"after-{count}", PACKAGE, env)
        for project in (self.before, self.after):
            shutil.copytree(rendered, project.path)
            write_history(project, count)
        self.squash_seconds = 0.0

    def squash(self, scratch_url: str | None) -> str:
        """Squash the second copy at ``at``: what the command printed."""
        with self.after.imported():
            migrate = importlib.import_module(f"{PACKAGE}.migrate")
            squash = importlib.import_module(f"{PACKAGE}.migration_machinery.squash")
            config = migrate.alembic_config()
            config.stdout = output = io.StringIO()
            started = time.perf_counter()
            squash.squash_command(
                config,
                revision_id(self.at),
                drop_data_migrations=True,
                scratch_url=scratch_url,
                sqlite_only=scratch_url is None,
            )
            self.squash_seconds = time.perf_counter() - started
        return output.getvalue()

    def upgrade(self, project: Project, url: str) -> float:
        """Seconds ``migrate.upgrade(url=url)`` takes in ``project`` (imported beforehand)."""
        with project.imported():
            migrate: ModuleType = importlib.import_module(f"{PACKAGE}.migrate")
            started = time.perf_counter()
            migrate.upgrade(url=url)
            return time.perf_counter() - started


def benchmark(backend: Backend, histories: list[Histories], repeat: int) -> None:
    print(f"\n{backend.name}: medians of {repeat} runs, each on a fresh database", flush=True)
    print(f"  {'revisions':>9}{'squashed at':>13}{'before':>10}{'after':>10}{'ratio':>8}")
    for each in histories:
        before, after = [], []
        for _ in range(repeat):  # interleaved: load changes hit both alike
            before.append(each.upgrade(each.before, backend.fresh_url()))
            after.append(each.upgrade(each.after, backend.fresh_url()))
        old, new = median(before), median(after)
        print(
            f"  {each.count:>9}{each.at:>13}{old:>9.2f}s{new:>9.2f}s{old / new:>7.1f}x",
            flush=True,
        )


def squashed_at(count: int) -> int:
    """Two thirds of the history: the part every deployed database has passed."""
    return max(2, count * 2 // 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--revisions", type=int, nargs="+", default=[60], help="history lengths")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (default 3)")
    options = parser.parse_args()
    # A checkout keeps its revisions' bytecode; this environment may say not to.
    sys.dont_write_bytecode = False
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    print(f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="bench-squash-") as tmp:
        base = Path(tmp)
        histories = [Histories(base, n, squashed_at(n)) for n in options.revisions]
        with postgres_backend(base) as postgres:
            scratch: FreshUrl | None = postgres.fresh_url if postgres else None
            for each in histories:
                said = each.squash(scratch() if scratch else None)
                proven = said.splitlines()[1]
                print(
                    f"{each.count} revisions squashed at {each.at} in {each.squash_seconds:.1f}s. "
                    f"{proven}",
                    flush=True,
                )
            benchmark(sqlite_backend(base), histories, options.repeat)
            if postgres is not None:
                benchmark(postgres, histories, options.repeat)


if __name__ == "__main__":
    main()
