"""Benchmark: a fresh database at head by ``create_schema()`` versus ``upgrade head``.

Run it from the repository root (it is not a test; nothing asserts on timings):

    uv run python benchmarks/fresh_database.py                # 50, 100, 200 revisions, 3 runs
    uv run python benchmarks/fresh_database.py --revisions 200 --repeat 5

It renders the template once per history length, replaces the example model
with a generated history: every four revisions a table (with a foreign key to
the previous one, an index), a column added to it, a longer string column
(on SQLite a table rebuild) with an index on the new column, and a data
migration (rows inserted, then updated).  The models say what the
history ends with, and before timing anything the rendered project's own
equality check (tests/test_create_schema.py) confirms both ways build the
same schema.

Then, on SQLite and (when the server binaries are installed) a throwaway
PostgreSQL server, each on a fresh database, in this process, interleaved:
``migrate.upgrade()`` (replays every revision) and ``migrate.create_schema()``
(``create_all`` + stamp head).  Both read every revision file (the stamp
needs the history), with bytecode cached as in a real checkout.  Beside them,
a copy of a database at head: a file copy on SQLite (what the rendered tests'
fixtures give a test at head there), ``CREATE DATABASE ... TEMPLATE`` on
PostgreSQL (which they do not use: see the line "a test at head", which
counts what each way leaves to drop or wipe).  It prints medians, the
ratios, and how the replay grows with the history.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa
from common import Backend, FreshUrl, backends, median, render
from harness.project import Project

MODELS_HEAD = "class Item(Base):"


def revision_steps(count: int) -> list[tuple[str, str, str]]:
    """``count`` revisions as (message, upgrade, downgrade) code: four per table."""
    steps = []
    for number in range(count):
        table, step = divmod(number, 4)
        name, parent = f"t{table}", f"t{table - 1}"
        if step == 0:
            foreign_key = (
                f'sa.ForeignKeyConstraint(["parent_id"], ["{parent}.id"], '
                f'name=op.f("fk_{name}_parent_id_{parent}"), ondelete="CASCADE"),'
                if table
                else ""
            )
            upgrade = f"""
                op.create_table(
                    "{name}",
                    sa.Column("id", sa.Integer(), nullable=False),
                    sa.Column("name", sa.String(length=50), nullable=False),
                    sa.Column("parent_id", sa.Integer(), nullable=True),
                    sa.PrimaryKeyConstraint("id", name=op.f("pk_{name}")),
                    {foreign_key}
                )
                op.create_index(op.f("ix_{name}_name"), "{name}", ["name"])
            """
            steps.append((f"create {name}", upgrade, f'op.drop_table("{name}")'))
        elif step == 1:
            upgrade = f"""
                with op.batch_alter_table("{name}") as batch:
                    batch.add_column(sa.Column("note", sa.String(length=100), nullable=True))
            """
            downgrade = f"""
                with op.batch_alter_table("{name}") as batch:
                    batch.drop_column("note")
            """
            steps.append((f"add {name}.note", upgrade, downgrade))
        elif step == 2:
            # A longer name: on SQLite a "move and copy" rebuild of the table.
            upgrade = f"""
                with op.batch_alter_table("{name}") as batch:
                    batch.alter_column("name", type_=sa.String(length=80))
                op.create_index(op.f("ix_{name}_note"), "{name}", ["note"])
            """
            downgrade = f"""
                op.drop_index(op.f("ix_{name}_note"), table_name="{name}")
                with op.batch_alter_table("{name}") as batch:
                    batch.alter_column("name", type_=sa.String(length=50))
            """
            steps.append((f"longer {name}.name, index {name}.note", upgrade, downgrade))
        else:
            upgrade = f"""
                rows = sa.table("{name}", sa.column("id"), sa.column("name"))
                op.bulk_insert(rows, [{{"id": i, "name": f"row {{i}}"}} for i in range(1, 21)])
                op.execute("UPDATE {name} SET note = 'seeded' WHERE note IS NULL")
            """
            steps.append((f"seed {name}", upgrade, f'op.execute("DELETE FROM {name}")'))
    return steps


def models_after(count: int) -> str:
    """The model classes saying what the first ``count`` revisions build."""
    classes = []
    for table in range((count + 3) // 4):
        done = count - 4 * table  # steps of this table applied
        name, parent = f"t{table}", f"t{table - 1}"
        lines = [
            f"class T{table}(Base):",
            f'    __tablename__ = "{name}"',
            "",
            "    id: Mapped[int] = mapped_column(primary_key=True)",
            f"    name: Mapped[str] = mapped_column(String({80 if done >= 3 else 50}), index=True)",
        ]
        if table:
            lines.append(
                "    parent_id: Mapped[int | None] = mapped_column("
                f'ForeignKey("{parent}.id", ondelete="CASCADE"))'
            )
        else:
            lines.append("    parent_id: Mapped[int | None]")
        if done >= 2:
            indexed = ", index=True" if done >= 3 else ""
            lines.append(f"    note: Mapped[str | None] = mapped_column(String(100){indexed})")
        classes.append("\n".join(lines))
    return "\n\n\n".join(classes) + "\n"


def write_history(project: Path, package: str, count: int) -> None:
    models = project / package / "models.py"
    head = models.read_text().split(MODELS_HEAD)[0]
    models.write_text(
        head.replace("from sqlalchemy import ", "from sqlalchemy import ForeignKey, ")
        + models_after(count)
    )
    service = Project(project, package, env={})
    previous = None
    for number, (message, upgrade, downgrade) in enumerate(revision_steps(count), start=1):
        revision = f"r{number:04d}"
        service.write_revision(revision, previous, f"# {message}\n{upgrade}", downgrade)
        previous = revision


def load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Service:
    """A rendered project with a generated history, imported into this process."""

    def __init__(self, base: Path, count: int) -> None:
        self.count = count
        package = f"bench{count}"
        self.path = render(base / package, package)
        write_history(self.path, package, count)
        sys.path.insert(0, str(self.path))
        self.migrate = importlib.import_module(f"{package}.migrate")
        self.equality = load(self.path / "tests" / "test_create_schema.py", f"{package}_equality")
        self.conftest = load(self.path / "tests" / "conftest.py", f"{package}_conftest")

    def schema_of(self, url: str) -> dict[str, str]:
        """The rendered test's description of the schema at ``url``."""
        engine = sa.create_engine(url, poolclass=sa.NullPool)
        try:
            with engine.connect() as connection:
                return self.equality.schema_of(connection)
        finally:
            engine.dispose()

    def check_equality(self, fresh_url: FreshUrl) -> None:
        """Both ways build the same schema (the rendered test's own comparison)."""
        replayed, created = fresh_url(), fresh_url()
        self.migrate.upgrade(url=replayed)
        self.migrate.create_schema(url=created)
        one, other = self.schema_of(replayed), self.schema_of(created)
        if one != other:
            different = sorted(k for k in one.keys() | other.keys() if one.get(k) != other.get(k))
            raise SystemExit(f"{self.count} revisions: the schemas differ: {different[:5]}")
        tables = sum(1 for key in one if key.startswith("table ") and "," not in key)
        print(f"  {self.count} revisions: same schema both ways ({tables} tables)", flush=True)


def timed(action: Callable[..., object], *args: object, **kwargs: object) -> float:
    """Seconds ``action(*args, **kwargs)`` takes."""
    started = time.perf_counter()
    action(*args, **kwargs)
    return time.perf_counter() - started


def benchmark(backend: Backend, services: list[Service], repeat: int) -> None:
    print(f"\n{backend.name}: medians of {repeat} runs, each on a fresh database", flush=True)
    for service in services:
        service.check_equality(backend.fresh_url)
    print(f"  {'revisions':>9}{'upgrade head':>15}{'create_schema':>16}{'ratio':>8}"
          f"{'copy':>9}{'ratio':>8}{'drop':>8}")  # fmt: skip
    replay: dict[int, float] = {}
    for service in services:
        head = backend.fresh_url()
        service.migrate.create_schema(url=head)  # what copies copy
        upgrades, creates, wipes, copies, drops = [], [], [], [], []
        for _ in range(repeat):  # interleaved: load changes hit all alike
            upgrades.append(timed(service.migrate.upgrade, url=backend.fresh_url()))
            created = backend.fresh_url()
            creates.append(timed(service.migrate.create_schema, url=created))
            wipes.append(timed(service.conftest.on_database, created, service.conftest.wipe))
            started = time.perf_counter()
            copy = backend.copy(head)
            copies.append(time.perf_counter() - started)
            drops.append(timed(backend.drop, copy))
        up, create, copied = median(upgrades), median(creates), median(copies)
        replay[service.count] = up
        print(
            f"  {service.count:>9}{up:>14.2f}s{create:>15.2f}s{up / create:>7.1f}x"
            f"{copied:>8.3f}s{up / copied:>7.0f}x{median(drops):>7.3f}s",
            flush=True,
        )
        if backend.name == "PostgreSQL":
            # What tests/conftest.py does there: create_schema, then wipe after the test.
            print(f"  {'':>9}a test at head: create_schema + wipe {create + median(wipes):.2f}s "
                  f"(copy + drop {copied + median(drops):.2f}s)")  # fmt: skip
    counts = sorted(replay)
    if len(counts) > 1:
        first, last = counts[0], counts[-1]
        print(
            f"  replay grows {replay[last] / replay[first]:.1f}x from {first} to {last} "
            f"revisions ({1000 * replay[first] / first:.0f} ms -> "
            f"{1000 * replay[last] / last:.0f} ms per revision)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--revisions", type=int, nargs="+", default=[50, 100, 200], help="history lengths"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (default 3)")
    options = parser.parse_args()
    # A checkout keeps its revisions' bytecode; this environment may say not to.
    sys.dont_write_bytecode = False
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    print(f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="bench-fresh-") as tmp:
        base = Path(tmp)
        services = [Service(base, count) for count in options.revisions]
        for backend in backends(base):
            benchmark(backend, services, options.repeat)


if __name__ == "__main__":
    main()
