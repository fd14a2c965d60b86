"""Replicas starting at once: 8 concurrent upgrades apply each revision exactly once.

Eight processes are released together at a barrier (see start_together.py)
against one fresh database, half of them as ``python -m alembic upgrade head``,
half as ``python -m <package> db upgrade head``.  The history is built so that
applying any revision twice shows: a table created twice fails, a unique row
inserted twice fails, and every revision logs itself into a table without a
unique constraint.

The first revision takes 0.6 s; SQLite's busy timeout is set to a quarter of a
second, so replicas waiting on SQLite's own write lock would give up with
"database is locked": the lock file is what makes them wait.  Without the
migration lock the race breaks (last test), so these tests can fail.
"""

from __future__ import annotations

import subprocess
import time

import pytest
import sqlalchemy as sa
from conftest import NewProject
from harness.database import assert_no_password, query
from harness.project import Project
from harness.start_together import run_together

REVISIONS = ["0001", "0002", "0003", "0004"]
PROCESSES = 8


def write_history(service: Project) -> None:
    """Four revisions, each of which fails or shows when applied twice."""
    service.write_revision(
        "0001",
        None,
        """
        op.create_table(
            "applied_revision",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("revision", sa.String(10), nullable=False),
        )
        op.create_table(
            "account",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("name", sa.String(50), nullable=False, unique=True),
        )
        op.execute("INSERT INTO applied_revision (revision) VALUES ('0001')")
        time.sleep(0.6)  # a slow migration: the others arrive while it runs
        """,
        'op.drop_table("account")\nop.drop_table("applied_revision")',
        imports="import time",
    )
    service.write_revision(
        "0002",
        "0001",
        """
        op.execute("INSERT INTO account (name) VALUES ('alice')")
        op.execute("INSERT INTO applied_revision (revision) VALUES ('0002')")
        """,
    )
    service.write_revision(
        "0003",
        "0002",
        """
        op.add_column("account", sa.Column("email", sa.String(100)))
        op.execute("INSERT INTO applied_revision (revision) VALUES ('0003')")
        """,
    )
    service.write_revision(
        "0004",
        "0003",
        """
        op.create_index("ix_account_email", "account", ["email"])
        op.execute("INSERT INTO applied_revision (revision) VALUES ('0004')")
        """,
    )


def upgrade_together(service: Project, processes: int = PROCESSES) -> list[str]:
    """Release the upgrades at once; return each one's exit code and output."""
    commands = [
        ["-m", "alembic", "upgrade", "head"],
        ["-m", service.program_name, "db", "upgrade", "head"],
    ] * (processes // 2)
    results, _seconds = run_together(service.python, commands, cwd=service.path, env=service.env)
    assert_no_password(*results)
    return [f"exit {r.returncode}\n{r.stdout}{r.stderr}" for r in results]


@pytest.fixture
def service(request: pytest.FixtureRequest, new_project: NewProject, backend_url: str) -> Project:
    """Orders, on each backend; an asyncio service where the test says so (indirect)."""
    if backend_url.startswith("sqlite"):
        backend_url += "?timeout=0.25"  # SQLite's busy timeout, in seconds (default 5)
    answers = getattr(request, "param", {})
    service = new_project(database_url=backend_url, program_name="orders", **answers)
    write_history(service)
    return service


@pytest.mark.parametrize("service", [{}, {"use_async": True}], ids=["sync", "async"], indirect=True)
def test_concurrent_upgrades_all_succeed_and_apply_each_revision_once(service: Project) -> None:
    outputs = upgrade_together(service)

    assert all(output.startswith("exit 0\n") for output in outputs), "\n\n".join(outputs)
    assert service.version_rows() == ["0004"]
    counts = "SELECT revision, COUNT(*) FROM applied_revision GROUP BY revision ORDER BY revision"
    assert query(service.database_url, counts) == [(r, 1) for r in REVISIONS]
    assert query(service.database_url, "SELECT name, email FROM account") == [("alice", None)]
    # What the operator sees in the logs: each revision ran in one process only.
    for old, new in zip(["", *REVISIONS], REVISIONS, strict=False):
        ran = [o for o in outputs if f"Running upgrade {old} -> {new}" in o]
        assert len(ran) == 1, f"{old} -> {new} ran {len(ran)} times"


def test_without_the_lock_the_same_race_breaks(service: Project) -> None:
    """The control experiment: the race is real, and the lock is what wins it."""
    lock = "        guards.migration_lock(connection),\n"  # one of the guards env.py enters
    env_py = service.env_py.read_text()
    assert lock in env_py
    service.env_py.write_text(env_py.replace(lock, ""))

    outputs = upgrade_together(service, processes=4)

    failed = [output for output in outputs if not output.startswith("exit 0\n")]
    counts = query(
        service.database_url,
        "SELECT revision, COUNT(*) FROM applied_revision GROUP BY revision ORDER BY revision",
    )
    # SQLite: "database is locked" after the busy timeout; PostgreSQL: two
    # processes creating alembic_version at once ("duplicate key").
    assert failed or counts != [(r, 1) for r in REVISIONS], "the unlocked race did not break"


def test_an_upgrade_reads_the_version_table_only_once_it_holds_the_lock(service: Project) -> None:
    """While it waits, another replica brings the database to head: it must see that."""
    with service.migration_lock_held() as upgrade_is_waiting:
        upgrade = subprocess.Popen(
            [service.python, "-m", "alembic", "upgrade", "head"],
            cwd=service.path,
            env=service.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while not upgrade_is_waiting():
            assert upgrade.poll() is None, upgrade.communicate()
            assert time.monotonic() < deadline, "the upgrade never reached the lock"
            time.sleep(0.05)
        time.sleep(0.5)
        assert upgrade.poll() is None, "the upgrade did not wait for the lock"
        # The other replica's work, done while it holds the lock: the history
        # is applied (here, only recorded) and committed.
        engine = sa.create_engine(service.database_url, poolclass=sa.NullPool)
        with engine.begin() as connection:
            connection.execute(sa.text("CREATE TABLE alembic_version (version_num VARCHAR(32))"))
            connection.execute(sa.text("INSERT INTO alembic_version VALUES ('0004')"))
        engine.dispose()

    stdout, stderr = upgrade.communicate(timeout=60)
    assert upgrade.returncode == 0, stdout + stderr
    assert "Running upgrade" not in stderr  # it found the database at head
    assert service.tables() == {"alembic_version"}
    assert service.version_rows() == ["0004"]
