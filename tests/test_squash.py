"""``db squash REVISION``: old revisions replaced by one baseline, proven before it is written.

Sixty revisions (tables, columns, indexes, foreign keys, CHECK and UNIQUE
constraints, an ENUM, renames, a data migration: ``harness/history.py``)
squashed at the fortieth, on SQLite and PostgreSQL: the baseline builds what
they built, a fresh database through the baseline and the twenty later ones
equals one through the old sixty, a database made before the squash at
revision 50 upgrades to head with the new files, and one at revision 20 is
told in one line what to do first.  The squash runs in this process, as the
command line runs it (``squash_command``); one test runs the command line.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.util import CommandError
from conftest import NewProject
from harness.database import assert_no_password, query, snapshot
from harness.history import DATA_MIGRATION_AT, SEEDED, SEEDED_ROWS, revision_id, write_history
from harness.postgres import PostgresCluster
from harness.project import Project

Copy = Callable[[str], str]


@pytest.fixture
def copy_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Copy]:
    """``copy_database(url)``: a new database holding what the one at ``url`` holds."""
    copies: list[str] = []
    cluster: list[PostgresCluster] = []

    def copy(url: str) -> str:
        parsed = sa.make_url(url)
        if parsed.get_backend_name() == "sqlite":
            new = tmp_path / f"copy-{uuid.uuid4().hex[:8]}.sqlite"
            shutil.copyfile(str(parsed.database), new)
            return f"sqlite:///{new}"
        if not cluster:
            cluster.append(request.getfixturevalue("pg_cluster"))
        name = f"c_{uuid.uuid4().hex[:12]}"
        cluster[0].create_database(name, owner=str(parsed.username), template=parsed.database)
        copies.append(name)
        return parsed.set(database=name).render_as_string(hide_password=False)

    yield copy
    for name in copies:
        cluster[0].drop_database(name)


def squash(project: Project, revision: str, **options: Any) -> str:
    """``db squash`` in this process, as ``python -m <package> db squash`` runs it: its output."""
    with project.imported():
        migrate = importlib.import_module(f"{project.program_name}.migrate")
        squashing = importlib.import_module(f"{project.program_name}.migration_machinery.squash")
        config = migrate.alembic_config()
        config.stdout = output = io.StringIO()
        config.attributes["command"] = f"python -m {project.program_name} db"
        try:
            squashing.squash_command(config, revision, **options)
        except CommandError as error:
            raise CommandError(f"{output.getvalue()}FAILED: {error}") from None
    return output.getvalue()


def versions(project: Project) -> dict[str, str]:
    return {path.name: path.read_text() for path in project.versions()}


def loaded(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(f"baseline_{uuid.uuid4().hex}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("backend", "choice"),
    [
        ("sqlite", "keep_data_migrations"),
        pytest.param("postgresql", "drop_data_migrations", marks=pytest.mark.postgres),
    ],
)
def test_sixty_revisions_squashed_at_forty(
    request: pytest.FixtureRequest,
    new_project: NewProject,
    copy_database: Copy,
    tmp_path: Path,
    backend: str,
    choice: str,
) -> None:
    if backend == "postgresql":
        new_pg_url = request.getfixturevalue("new_pg_url")
        fresh, scratch = (lambda: str(new_pg_url())), str(new_pg_url())
    else:
        numbers = iter(range(100))
        fresh, scratch = (lambda: f"sqlite:///{tmp_path / f'{next(numbers)}.sqlite'}"), None
    backends = {"scratch_url": scratch} if scratch else {"sqlite_only": True}
    project = new_project(database_url=fresh())
    ids = write_history(project, 60)
    # Databases made before the squash: at 20, at 50, and at the old head.
    at_20 = project.with_database(fresh())
    at_20.command("upgrade", revision_id(20))
    at_50 = project.with_database(copy_database(at_20.database_url))
    at_50.command("upgrade", revision_id(50))
    old_head = project.with_database(copy_database(at_50.database_url))
    old_head.command("upgrade", "head")
    before = versions(project)

    # The data migration is reported, and nothing is done until told what to do with it.
    with pytest.raises(CommandError) as refused:
        squash(project, "r0040", **backends)
    listed, failed = str(refused.value).splitlines()
    data = revision_id(DATA_MIGRATION_AT)
    assert listed.startswith(f"  {data} (") and "data migration: op.bulk_insert()" in listed
    assert failed == (
        "FAILED: 1 of the revisions up to r0040 do what a baseline built from the schema would "
        "lose (listed above): say what to do with it, "
        f"`python -m {project.program_name} db squash r0040 --keep-data-migrations` (their code, "
        "without its schema operations, runs at the end of the baseline) or "
        f"`python -m {project.program_name} db squash r0040 --drop-data-migrations` (left out)."
    )
    assert versions(project) == before

    said = squash(project, "r0040", **backends, **{choice: True})

    built_for = "SQLite and PostgreSQL" if backend == "postgresql" else "SQLite"
    assert f"Proven on {built_for}: the baseline builds what the revisions built at r0040" in said
    handled = "kept" if choice == "keep_data_migrations" else "dropped"
    assert f"\n{handled}: {data} (" in said
    assert_no_password(said)
    if scratch is not None:  # the scratch database is left as it was given: empty
        assert project.with_database(scratch).tables() == set()
        assert query(scratch, "SELECT count(*) FROM pg_type WHERE typname = 'color'") == [(0,)]
    # The baseline took r0040's id and file; the 39 before it are gone, the 20 after it unchanged.
    after = versions(project)
    baseline = project.package / "migrations" / "versions" / "r0040_handwritten.py"
    assert sorted(after) == [f"{revision}_handwritten.py" for revision in ids[39:]]
    assert all(after[name] == before[name] for name in after if name != baseline.name)
    module = loaded(baseline)
    assert (module.revision, module.down_revision) == ("r0040", None)
    assert module.squashed == tuple(ids[:39])
    assert ("def kept_from_r0030() -> None:" in after[baseline.name]) == (handled == "kept")

    # A fresh database through the baseline and the 20 later ones: what the old 60 built.
    new_head = project.with_database(fresh())
    new_head.command("upgrade", "head")
    assert new_head.schema() == old_head.schema()
    seeded = query(new_head.database_url, f"SELECT count(*) FROM {SEEDED}")
    assert seeded == [(SEEDED_ROWS if handled == "kept" else 0,)]
    # Made before the squash, at 50: upgrades to head with the new files.
    at_50.command("upgrade", "head")
    assert at_50.version_rows() == ["r0060"]
    assert at_50.schema() == old_head.schema()
    # At 20, older than the baseline: one line saying what to do, and nothing applied.
    untouched = snapshot(at_20.database_url)
    with pytest.raises(CommandError) as older:
        at_20.command("upgrade", "head")
    assert str(older.value) == (
        "The database is at revision r0020, older than the baseline r0040 that replaced it "
        "(db squash): upgrade it first with a release from before the squash (`alembic upgrade "
        'r0040`, from a checkout or install pinned as README.md, "Squashing old revisions" '
        "says), then run `alembic upgrade head` with this one."
    )
    assert snapshot(at_20.database_url) == untouched
    # The baseline downgrades to an empty database (the data migration did not say it cannot).
    new_head.command("downgrade", "base")
    assert new_head.tables() == {"alembic_version"}


def test_a_baseline_that_would_build_another_schema_is_not_written(
    new_project: NewProject,
) -> None:
    """The proof holds the baseline to the comparison: a difference is shown, nothing written."""
    project = new_project()
    project.write_revision(
        "aa01", None, 'op.create_table("item", sa.Column("id", sa.Integer(), primary_key=True))'
    )
    # Raw SQL on SQLite: a CHECK without a name, which a baseline's create_table would name.
    project.write_revision(
        "aa02",
        "aa01",
        'op.execute("CREATE TABLE legacy (id INTEGER PRIMARY KEY, qty INTEGER, CHECK (qty > 0))")',
        'op.execute("DROP TABLE legacy")',
    )
    before = versions(project)

    with pytest.raises(CommandError) as refused:
        squash(project, "aa02", sqlite_only=True)

    lines = str(refused.value).splitlines()
    assert lines[0] == "SQLite, at aa02:"
    assert lines[1] == "  table legacy, check constraint 0"
    assert lines[2] == "    revisions: sqltext='qty > 0'"
    assert lines[3] == "    baseline:  (none)"
    assert lines[-1] == (
        "FAILED: The baseline would build another schema than the revisions up to aa02 (the "
        "differences above), so nothing was written: keep this history, or squash at another "
        "revision."
    )
    assert versions(project) == before
    assert project.tables() == set()  # the service's database was never touched


def test_what_cannot_be_squashed_is_refused_before_anything_runs(
    new_project: NewProject,
) -> None:
    project = new_project()
    create = 'op.create_table("{0}", sa.Column("id", sa.Integer(), primary_key=True))'
    project.write_revision("aa01", None, create.format("one"))
    project.write_revision("aa02", "aa01", create.format("two"))
    project.write_revision("aa03", "aa01", create.format("three"))  # a branch beside aa02
    project.write_revision(
        "aa04",
        ("aa02", "aa03"),
        # Only asking which database it is, and a view: the view must be said.
        'if op.get_bind().dialect.name == "sqlite":\n'
        '    op.execute("CREATE VIEW both_ AS SELECT id FROM one")',
        "raise NotImplementedError('no way back')",
    )
    marked = 'irreversible = "the old prices are gone"  # migration_machinery/irreversible.py'
    project.write_revision("aa05", "aa04", create.format("four"), imports=marked)
    before = versions(project)

    def refusal(revision: str, **options: Any) -> str:
        with pytest.raises(CommandError) as refused:
            squash(project, revision, **options)
        return str(refused.value)

    assert refusal("aa01") == (
        "FAILED: Revision aa01 is the first one: there is nothing before it to squash."
    )
    assert refusal("aa02") == (
        "FAILED: Revision aa03 follows aa01, which a squash at aa02 replaces, without following "
        "aa02: squash at a revision every later one follows (a merge point, or head)."
    )
    assert refusal("aa04", keep_data_migrations=True, drop_data_migrations=True) == (
        "FAILED: Choose one: --keep-data-migrations or --drop-data-migrations."
    )
    listed = refusal("aa05").splitlines()
    assert listed[0].startswith("  aa04 (") and listed[0].endswith(
        "creates what the comparison cannot see: op.execute('CREATE VIEW both_ AS SELECT id "
        "FROM one'); irreversible: its downgrade raises"
    )
    assert listed[1].startswith("  aa05 (")
    assert listed[1].endswith("irreversible: the old prices are gone")
    assert versions(project) == before
    assert project.tables() == set()

    # Kept: the view is created at the end of the baseline, which is irreversible in turn.
    squash(project, "aa05", keep_data_migrations=True, sqlite_only=True)
    baseline = loaded(project.versions()[0])
    assert baseline.irreversible == (
        "it squashes irreversible revisions: aa04 (its downgrade raises); "
        "aa05 (the old prices are gone)"
    )
    project.command("upgrade", "head")
    assert query(project.database_url, "SELECT count(*) FROM both_") == [(0,)]
    with pytest.raises(CommandError, match=r"^Revision aa05 \(.*\) is irreversible: it squashes"):
        project.command("downgrade", "base")


def test_a_postgresql_service_needs_a_scratch_postgresql_database(
    new_project: NewProject,
) -> None:
    project = new_project(database="postgresql")
    project.write_revision("aa01", None, "pass")
    project.write_revision("aa02", "aa01", "pass")

    with pytest.raises(CommandError) as refused:
        squash(project, "aa02")
    with pytest.raises(CommandError) as sqlite_only:
        squash(project, "aa02", sqlite_only=True)

    variable = f"{project.program_name.upper()}_TEST_DATABASE_URL"
    assert str(refused.value) == (
        "FAILED: This service runs on PostgreSQL, so the baseline must be built and proven "
        "there too: give db squash an EMPTY PostgreSQL database to use and wipe, with "
        f"--scratch-url URL or {variable} (the tests' database)."
    )
    assert str(sqlite_only.value) == (
        "FAILED: This service runs on PostgreSQL: --sqlite-only would build a baseline it "
        "cannot run; give db squash an EMPTY PostgreSQL database instead, with --scratch-url "
        f"URL or {variable} (the tests' database)."
    )
    assert len(project.versions()) == 2


def test_db_squash_on_the_command_line(new_project: NewProject) -> None:
    """What the command line adds: its options, the list on stdout, one FAILED line, exit 255."""
    project = new_project()
    write_history(project, DATA_MIGRATION_AT)

    refused = project.db("squash", revision_id(DATA_MIGRATION_AT), check=False)

    assert refused.returncode == 255, refused.stderr
    assert refused.stdout.startswith(f"  {revision_id(DATA_MIGRATION_AT)} (")
    failed = refused.stderr.strip().splitlines()[-1]
    assert failed.startswith("FAILED: 1 of the revisions up to r0030 do what a baseline")
    assert f"`python -m {project.program_name} db squash r0030 --drop-data-migrations`" in failed
    assert project.tables() == set()

    # A SQLite service is tested on PostgreSQL too (its CI workflow): SQLite alone is a choice.
    rev, drop = revision_id(DATA_MIGRATION_AT), "--drop-data-migrations"
    before = versions(project)
    no_postgresql = project.db("squash", rev, drop, check=False)
    both = project.db("squash", rev, drop, "--sqlite-only", "--scratch-url", "x", check=False)
    for refused in (no_postgresql, both):
        assert refused.returncode == 255, refused.stderr
        assert versions(project) == before
    variable = f"{project.program_name.upper()}_TEST_DATABASE_URL"
    assert no_postgresql.stderr.strip().splitlines()[-1] == (
        "FAILED: The CI workflow tests this service on PostgreSQL too, so the baseline must be "
        "built and proven there as well: give db squash an EMPTY PostgreSQL database to use "
        f"and wipe, with --scratch-url URL or {variable}, or pass --sqlite-only for a service "
        "that never runs on PostgreSQL."
    )
    assert both.stderr.strip().splitlines()[-1] == (
        "FAILED: Choose one: --scratch-url (PostgreSQL too) or --sqlite-only."
    )
    done = project.db("squash", rev, drop, "--sqlite-only")
    assert "Built for SQLite only (--sqlite-only): on PostgreSQL the baseline stops" in done.stdout
    assert len(project.versions()) == 1
