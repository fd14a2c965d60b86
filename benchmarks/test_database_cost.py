"""Benchmark: a rendered test's database cost, ``session`` and ``database_url_at_head``.

Run it from the repository root (it is not a test; nothing asserts on timings):

    uv run python benchmarks/test_database_cost.py                  # 5, 13, 50 tables, 3 runs
    uv run python benchmarks/test_database_cost.py --tables 50 --tests 200 --repeat 5

For each table count it renders the template once, replaces the example
model with that many tables (fresh_database.py's, at the end of their
history: a foreign key to the previous table, two indexes) and autogenerates
the first revision.  Into the project's ``tests/`` it writes suites of
``--tests`` trivial tests (each inserts a row into the first table and
commits) besides its own conftest.py, which the benchmark leaves as it is.
Three ways for a test to get a database at head run side by side:

- ``session``: the rendered fixture, a transaction rolled back after the
  test, on the worker's database at head;
- ``database_url_at_head``: the rendered fixture, a database of the test's
  own (a file copy on SQLite; on PostgreSQL ``CREATE DATABASE ... TEMPLATE``
  of the worker's database at head, emptied for the next test when the
  test only wrote rows, dropped otherwise);
- ``create_schema + wipe``: what ``database_url_at_head`` did before, as a
  fixture defined in the suites: the test's empty database (a new SQLite
  file; on PostgreSQL the worker's empty database) checked empty,
  ``migrate.create_schema()`` on it, its tables and types dropped after the
  test.

Each way has two suites of ``--tests`` tests.  In its own, tests through it
(all of them for ``session``; ``--head-tests`` for ``database_url_at_head``
and ``--old-tests`` for ``create_schema + wipe``, which cost hundreds of
milliseconds a test on PostgreSQL), the rest taking no database fixture.  In
its fixed-cost suite, the first test only: Python's start, pytest's, the
collection, and what the way builds once per run (the worker's database at
head, the sessions' database, the first connection), the others taking no
database fixture.  Each suite is the project's own pytest in a child process
(``-p no:cacheprovider -q``, one process, no xdist), timed wall-clock; the
suites of a table count rotate, table counts and backends interleave, run
after run, so that machine noise hits all alike.  A way's cost per test is
its suite's median time minus its fixed-cost suite's, divided by the tests
through it beyond the first.

On SQLite, and (when the server binaries are installed) on a throwaway
PostgreSQL server as the ``<PKG>_TEST_DATABASE_URL`` the suites run
against: durable by default, as a CI service container or a developer's
server runs (``--fast-postgres``: fsync off, as this repository's own test
suite runs it).  It prints the table, the ratios of create_schema + wipe to
each new way, and the issue's targets.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from common import PostgresCluster, find_pg_bindir, median, render
from fresh_database import MODELS_HEAD, models_after
from harness.project import Project, clean_environ, precompile

#: The three ways, as printed, and the fixture each test of a way takes.
FIXTURES = {
    "session": "session",
    "database_url_at_head": "database_url_at_head",
    "create_schema + wipe": "created_and_wiped",
}
WAYS = tuple(FIXTURES)
OLD = "create_schema + wipe"

#: The issue's targets at 50 tables: (way, backend, at most this many ms per test).
TARGET_TABLES = 50
TARGETS = (("session", "PostgreSQL", 5.0), ("session", "SQLite", 2.0),
           ("database_url_at_head", "PostgreSQL", 150.0))  # fmt: skip
#: ... and database_url_at_head at least this many times cheaper than create_schema + wipe.
TARGET_RATIO = 3.0

SUITE_HEAD = '''\
"""Written by benchmarks/test_database_cost.py: {what}."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import enum_types, on_database, wipe
from sqlalchemy import Connection, inspect, text
from sqlalchemy.orm import Session

from {package}.migrate import create_schema

INSERT = text("INSERT INTO t0 (id, name) VALUES (1, 'one')")


def insert(connection: Connection) -> None:
    connection.execute(INSERT)


def schema_objects(connection: Connection) -> list[str]:
    return sorted(inspect(connection).get_table_names() + enum_types(connection))


@pytest.fixture
def created_and_wiped(
    head_revisions: tuple[str, ...], empty_database_url: str, request: pytest.FixtureRequest
) -> Iterator[str]:
    """What database_url_at_head was before: create_schema() on the test's empty
    database, checked empty first; its tables and types dropped after the test."""
    existing = on_database(empty_database_url, schema_objects)
    assert not existing, existing
    create_schema(url=empty_database_url)
    yield empty_database_url
    if request.getfixturevalue("worker_databases") is None:
        on_database(empty_database_url, wipe)  # on PostgreSQL, empty_database_url wipes it

'''

THROUGH = {
    "session": """
@pytest.mark.parametrize("number", range({count}))
def test_session(session: Session, number: int) -> None:
    session.execute(INSERT)
    session.commit()
""",
    "url": """
@pytest.mark.parametrize("number", range({count}))
def test_{fixture}({fixture}: str, number: int) -> None:
    on_database({fixture}, insert)
""",
}

BARE = """
@pytest.mark.parametrize("number", range({count}))
def test_taking_no_database(number: int) -> None:
    pass
"""


def suite(package: str, tests: int, way: str, through: int) -> str:
    """A test file of ``tests`` tests: ``through`` tests through ``way``'s fixture
    first, the rest taking none (``through`` 1: the way's fixed cost)."""
    what = f"{through} of {tests} tests through {way}"
    fixture = FIXTURES[way]
    code = THROUGH["session" if fixture == "session" else "url"]
    text = SUITE_HEAD.format(what=what, package=package)
    text += "\n" + code.format(count=through, fixture=fixture)
    if tests > through:
        text += "\n" + BARE.format(count=tests - through)
    return text


@dataclass
class Suites:
    """A rendered project with ``count`` tables, a first revision, and the suites."""

    base: Path
    count: int
    through: dict[str, int]  # by way: its tests through it
    tests: int  # in every suite
    path: Path = field(init=False)
    package: str = field(init=False)
    files: dict[str, tuple[Path, Path]] = field(init=False)  # by way: its suite, fixed cost

    def __post_init__(self) -> None:
        self.package = f"cost{self.count}"
        self.path = render(self.base / self.package, self.package)
        models = self.path / self.package / "models.py"
        head = models.read_text().split(MODELS_HEAD)[0]
        models.write_text(
            head.replace("from sqlalchemy import ", "from sqlalchemy import ForeignKey, ")
            + models_after(4 * self.count)  # four revisions a table: each at its end
        )
        url = f"sqlite:///{self.base / f'{self.package}-autogenerate.sqlite'}"
        env = {**clean_environ(self.base / "home"), f"{self.package.upper()}_DATABASE_URL": url}
        with redirect_stdout(io.StringIO()):  # Alembic's "Generating ... done"
            Project(self.path, self.package, env).autogenerate("create tables")
        self.files = {}
        for way, through in self.through.items():
            name = FIXTURES[way]
            self.files[way] = (
                self.write(name, suite(self.package, self.tests, way, through)),
                self.write(f"{name}_fixed", suite(self.package, self.tests, way, 1)),
            )
        precompile(self.path)  # as a checkout has its bytecode
        # Untimed, once: pytest's rewritten bytecode of conftest.py and the suites; all pass.
        self.run([file for pair in self.files.values() for file in pair], None)

    def write(self, name: str, text: str) -> Path:
        path = self.path / "tests" / f"test_cost_{name}.py"
        path.write_text(text)
        return path

    def run(self, files: list[Path], test_database_url: str | None) -> float:
        """The project's pytest on ``files`` in a child process: its wall-clock seconds."""
        env = clean_environ(self.base / "home")
        del env["PYTHONDONTWRITEBYTECODE"]  # a checkout has its bytecode
        env["PYTHONPATH"] = str(self.path)
        if test_database_url is not None:
            env[f"{self.package.upper()}_TEST_DATABASE_URL"] = test_database_url
        # This repository's pytest plugins stay out, as in Project.own_tests().
        command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                   "-p", "no:copier", "-p", "no:gitconfig", "-p", "no:dir-equal",
                   *(str(file.relative_to(self.path)) for file in files)]  # fmt: skip
        started = time.perf_counter()
        done = subprocess.run(command, cwd=self.path, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if done.returncode != 0 or f"{len(files) * self.tests} passed" not in done.stdout:
            raise SystemExit(
                f"{self.count} tables, {' '.join(file.name for file in files)}: "
                f"pytest exited {done.returncode}\n{done.stdout}{done.stderr}"
            )
        return seconds


@contextmanager
def suite_backends(base: Path, *, fast: bool) -> Iterator[list[tuple[str, str | None]]]:
    """The backends: (name, ``<PKG>_TEST_DATABASE_URL``, or None: SQLite files).

    PostgreSQL is a throwaway server, when its binaries are installed; its
    role may create databases, as the rendered fixtures need.
    """
    sqlite = ("SQLite", None)
    bindir = find_pg_bindir()
    if bindir is None:
        print("PostgreSQL: skipped (no server binaries; see .ci/install-postgres.sh)")
        yield [sqlite]
        return
    with PostgresCluster.start(base / "pg", bindir, durable=not fast) as cluster:
        cluster.create_role("bench", "bench-password", createdb=True)
        cluster.create_database("bench", owner="bench")
        how = "fsync off (--fast-postgres)" if fast else "durable (fsync on)"
        print(f"PostgreSQL: a throwaway server of {bindir}, {how}")
        yield [sqlite, ("PostgreSQL", cluster.url_for("bench", "bench", "bench-password"))]


@dataclass
class Row:
    backend: str
    tables: int
    way: str
    through: int
    suite: float  # median seconds
    fixed: float  # median seconds of its fixed-cost suite

    @property
    def per_test(self) -> float:
        """Milliseconds a test through the way costs (the first one is in the fixed cost)."""
        return 1000 * (self.suite - self.fixed) / (self.through - 1)


def measure(
    backends: list[tuple[str, str | None]], projects: list[Suites], repeat: int
) -> list[Row]:
    """Every suite ``repeat`` times, interleaved and rotated; the medians."""
    names = [(way, which) for way in WAYS for which in (0, 1)]  # 1: the fixed cost
    times: dict[tuple[str, int, str, int], list[float]] = {}
    for number in range(repeat):
        for backend, url in backends:
            for project in projects:
                shift = number % len(names)
                for way, which in names[shift:] + names[:shift]:
                    seconds = project.run([project.files[way][which]], url)
                    times.setdefault((backend, project.count, way, which), []).append(seconds)
        print(f"  run {number + 1} of {repeat} done", flush=True)
    return [
        Row(backend, project.count, way, project.through[way],
            median(times[backend, project.count, way, 0]),
            median(times[backend, project.count, way, 1]))
        for backend, _ in backends for project in projects for way in WAYS
    ]  # fmt: skip


def smoke(backends: list[tuple[str, str | None]], projects: list[Suites]) -> None:
    """Every suite once on each backend, in one pytest: they pass, or this exits."""
    for backend, url in backends:
        for project in projects:
            if url is not None:  # on SQLite, they passed as Suites wrote them
                project.run([file for pair in project.files.values() for file in pair], url)
            print(f"  {backend:<12}{project.count:>6}  every suite passed (untimed)")


def report(rows: list[Row], tables: Sequence[int]) -> None:
    print(f"\n  {'backend':<12}{'tables':>6}  {'way':<22}{'tests':>6}{'ms/test':>10}"
          f"{'suite':>9}{'fixed':>8}")  # fmt: skip
    for row in rows:
        print(f"  {row.backend:<12}{row.tables:>6}  {row.way:<22}{row.through:>6}"
              f"{row.per_test:>10.2f}{row.suite:>8.2f}s{row.fixed:>7.2f}s")  # fmt: skip
    cost = {(row.backend, row.tables, row.way): row.per_test for row in rows}

    def ratio(backend: str, count: int, way: str) -> str:
        new = cost[backend, count, way]
        return f"{cost[backend, count, OLD] / new:.1f}x" if new > 0 else "(noise: <= 0 ms)"

    print(f"\n  ratios, {OLD} / each new way, per test (this run):")
    for backend, count in dict.fromkeys((row.backend, row.tables) for row in rows):
        cheaper = ", ".join(f"{way} {ratio(backend, count, way)}" for way in WAYS if way != OLD)
        print(f"  {backend:<12}{count:>6}  {cheaper}")

    print(f"\n  targets, at {TARGET_TABLES} tables:")
    for way, backend, most in TARGETS:
        drop = " (its drop included)" if way == "database_url_at_head" else ""
        what = f"{way} on {backend} <= {most:g} ms per test{drop}"
        measured = cost.get((backend, TARGET_TABLES, way))
        if measured is None:
            print(f"  {what}: not measured")
        else:
            print(f"  {what}: {measured:.2f} ms {'PASS' if measured <= most else 'MISS'}")
    what = f"database_url_at_head on PostgreSQL >= {TARGET_RATIO:g}x cheaper than {OLD}"
    if ("PostgreSQL", TARGET_TABLES, OLD) in cost:
        old, new = (cost["PostgreSQL", TARGET_TABLES, way] for way in (OLD, "database_url_at_head"))
        times = old / new if new > 0 else float("inf")
        print(f"  {what}: {times:.1f}x {'PASS' if times >= TARGET_RATIO else 'MISS'}")
    else:
        print(f"  {what}: not measured")
    if TARGET_TABLES not in tables:
        print(f"  (the targets are at {TARGET_TABLES} tables: --tables {TARGET_TABLES})")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tables", type=int, nargs="+", default=[5, 13, 50], help="table counts (5 13 50)"
    )
    parser.add_argument(
        "--tests", type=int, default=300, help="tests in a suite, all through session (300)"
    )
    parser.add_argument(
        "--head-tests", type=int, default=20, help="of them through database_url_at_head (20)"
    )
    parser.add_argument("--old-tests", type=int, default=10, help=f"through {OLD} (10)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each suite (default 3)")
    parser.add_argument(
        "--fast-postgres", action="store_true", help="PostgreSQL with fsync off, not durable"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="run every suite once on each backend, untimed"
    )
    options = parser.parse_args(argv)
    through = {
        "session": options.tests,
        "database_url_at_head": options.head_tests,
        OLD: options.old_tests,
    }
    if not 2 <= min(through.values()) <= max(through.values()) <= options.tests:
        parser.error("each way needs 2 tests or more, and at most --tests")
    started = time.perf_counter()
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"{os.cpu_count()} CPUs (load {load}), Python {sys.version.split()[0]}, "
          f"SQLAlchemy {sa.__version__}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-cost-") as tmp:
        base = Path(tmp)
        projects = [Suites(base, count, through, options.tests) for count in options.tables]
        with suite_backends(base, fast=options.fast_postgres) as backends:
            print(
                f"{options.tests} tests a suite, medians of {options.repeat} runs, on "
                f"{' and '.join(name for name, _ in backends)}",
                flush=True,
            )
            if options.smoke:  # this repository's test that the suites still pass
                smoke(backends, projects)
                return
            rows = measure(backends, projects, options.repeat)
        report(rows, options.tables)
    print(f"\n  {time.perf_counter() - started:.0f}s in all")


if __name__ == "__main__":
    main()
