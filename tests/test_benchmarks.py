"""The benchmarks still run against today's template (their timings are not tested).

A benchmark nobody runs rots silently: these run each one's setup, small.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from harness import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))

import concurrent_upgrade  # noqa: E402
import env_overhead  # noqa: E402
import fresh_database  # noqa: E402
import squash  # noqa: E402
import test_database_cost  # noqa: E402
from common import render, sqlite_backend, sqlite_databases  # noqa: E402
from harness.database import query  # noqa: E402
from harness.project import Project  # noqa: E402


def test_the_fresh_database_history_builds_the_same_schema_both_ways(tmp_path: Path) -> None:
    # Nine revisions: two tables and a third begun (every kind of step, a partial table).
    service = fresh_database.Service(tmp_path, 9)
    service.check_equality(sqlite_databases(tmp_path))  # exits, naming the differences
    versions = sorted((service.path / "bench9" / "migrations" / "versions").glob("r*.py"))
    assert [path.stem for path in versions] == [f"r{n:04d}_handwritten" for n in range(1, 10)]


def test_the_concurrency_benchmarks_history_applies_once(tmp_path: Path) -> None:
    project = render(tmp_path / "bench", "bench")
    concurrent_upgrade.write_history(project)
    race = concurrent_upgrade.Race(project, tmp_path, processes=8)
    url = sqlite_databases(tmp_path)()
    bench = Project(project, "bench", {**race.env, race.url_env: url})

    bench.command("upgrade", "head")  # in this process (tests/test_concurrency.py races)

    assert query(url, "SELECT version_num FROM alembic_version") == [("0006",)]
    assert query(url, "SELECT count(*) FROM customer") == [(200,)]  # seeded once


def test_the_env_overhead_benchmark_runs_both_env_files_to_head(tmp_path: Path) -> None:
    pair = env_overhead.EnvPair(tmp_path, 3)
    backend = sqlite_backend(tmp_path)
    empty = env_overhead.empty_database(backend)

    def upgrade(which: str) -> env_overhead.Run:  # checks the copy reaches head
        return env_overhead.upgrade_on_a_copy(pair, backend, empty, which, importtime=True)

    with ThreadPoolExecutor(3) as pool:  # all at once: a child is a second of imports
        stock, per_migration, rendered = pool.map(upgrade, env_overhead.WHICH)

    assert stock.cpu > 0 and per_migration.cpu > 0 and rendered.cpu > 0
    # The comparison the target is measured against differs from stock by one option only.
    stock_env = (pair.path / "stock_migrations" / "env.py").read_text()
    per_migration_env = (pair.path / "stock_per_migration_migrations" / "env.py").read_text()
    assert per_migration_env.replace(", transaction_per_migration=True", "") == stock_env
    assert "transaction_per_migration=True" in per_migration_env
    # Both read the project's models (stock's env.py: for its target_metadata).
    assert "bench3.models" in stock.imports and "bench3.models" in rendered.imports


def test_the_squash_benchmark_times_both_histories_to_the_same_head(tmp_path: Path) -> None:
    # Seven revisions squashed at four, on SQLite only (no scratch PostgreSQL database).
    histories = squash.Histories(tmp_path, 7, squash.squashed_at(7))
    said = histories.squash(None)
    assert "Proven on SQLite: the baseline builds what the revisions built at r0004" in said
    names = [path.name for path in histories.after.versions()]
    assert names == [f"r{n:04d}_handwritten.py" for n in range(4, 8)]
    fresh = sqlite_databases(tmp_path)
    before, after = fresh(), fresh()
    assert histories.upgrade(histories.before, before) > 0
    assert histories.upgrade(histories.after, after) > 0
    head = "SELECT version_num FROM alembic_version"
    assert query(before, head) == query(after, head) == [("r0007",)]


def test_the_test_database_cost_benchmarks_suites_pass_on_each_backend(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Two tables, suites of three tests, once each (--smoke): each pytest passes, or it exits.
    argv = ["--tables", "2", "--tests", "3", "--head-tests", "2", "--old-tests", "2"]
    test_database_cost.main([*argv, "--smoke", "--fast-postgres"])
    printed = capsys.readouterr().out
    rows = [line.split() for line in printed.splitlines() if line.startswith("  ")]
    backends = ["SQLite"] if "PostgreSQL: skipped" in printed else ["SQLite", "PostgreSQL"]
    assert [row[:2] for row in rows if "passed" in row] == [[name, "2"] for name in backends]


def test_the_test_database_cost_benchmark_prints_each_way_and_each_target(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Timings a run could measure: session cheap, a new copy dearer than the old way.
    ms = {"session": 1.0, "database_url_at_head": 200.0, test_database_cost.OLD: 400.0}
    rows = [
        test_database_cost.Row(backend, tables, way, 11, 1.0 + ms[way] / 100, 1.0)
        for backend in ("SQLite", "PostgreSQL")
        for tables in (5, 50)
        for way in test_database_cost.WAYS
    ]
    test_database_cost.report(rows, [5, 50])
    printed = capsys.readouterr().out
    lines = [" ".join(line.split()) for line in printed.splitlines()]
    for backend in ("SQLite", "PostgreSQL"):
        for way in test_database_cost.WAYS:
            assert f"{backend} 50 {way} 11 {ms[way]:.2f} {1 + ms[way] / 100:.2f}s 1.00s" in lines
        assert f"{backend} 50 session 400.0x, database_url_at_head 2.0x" in lines
    assert "session on PostgreSQL <= 5 ms per test: 1.00 ms PASS" in printed
    assert (
        "database_url_at_head on PostgreSQL <= 150 ms per test (its drop included): "
        "200.00 ms MISS" in printed
    )
    assert (
        "database_url_at_head on PostgreSQL >= 3x cheaper than create_schema + wipe: "
        "2.0x MISS" in printed
    )
