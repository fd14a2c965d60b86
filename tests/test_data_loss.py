"""Autogenerate never loses data silently (issue 25), told as a user's stories.

A table and a column renamed in the models with ``renamed_from`` keep every
row, on SQLite and PostgreSQL, and leave ``check`` (and the rendered
create_schema comparison) clean; the same renames without the hint print a
line per drop, write comments saying what the revision deletes, and with
``-x allow_drops=false`` write nothing; tables the models never had survive
autogenerate while a model removed after its revision is dropped; a revision
marked ``irreversible`` stops ``downgrade`` before it changes anything.  Real
Copier, Alembic in-process (one subprocess for the command line's lines).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.util import CommandError
from conftest import VARIANTS, NewProject
from harness.database import query, snapshot
from harness.project import Project, revision_id

CUSTOMERS = """
from sqlalchemy import Boolean, ForeignKey


class Customer(Base):
    __tablename__ = "customer"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str | None] = mapped_column(String(50), index=True)
    email: Mapped[str] = mapped_column(String(50), unique=True)
    active: Mapped[bool] = mapped_column(Boolean(create_constraint=True))


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id", ondelete="CASCADE"))
"""

#: The same models after the renames, each said where the new name is defined.
RENAMED_WITH_HINTS = {
    '    __tablename__ = "customer"\n': (
        '    __tablename__ = "account"\n'
        '    __table_args__ = {"info": {"renamed_from": "customer"}}\n'
    ),
    "    name: Mapped[str | None] = mapped_column(String(50), index=True)": (
        "    display_name: Mapped[str | None] = mapped_column(\n"
        '        String(80), index=True, info={"renamed_from": "name"}\n'
        "    )"
    ),
    "    active: Mapped[bool] = mapped_column(Boolean(create_constraint=True))": (
        "    enabled: Mapped[bool] = mapped_column(\n"
        '        Boolean(create_constraint=True), info={"renamed_from": "active"}\n'
        "    )"
    ),
    'ForeignKey("customer.id"': 'ForeignKey("account.id"',
}

ROWS = "INSERT INTO customer (id, name, email, active) VALUES {}"
CUSTOMER_ROWS = "(1, 'Ada', 'ada@x', true), (2, 'Bob', 'bob@x', false), (3, NULL, 'cy@x', true)"
KEPT = [(1, "Ada", "ada@x", True), (2, "Bob", "bob@x", False), (3, None, "cy@x", True)]


def edit(project: Project, replacements: dict[str, str]) -> None:
    for old, new in replacements.items():
        project.replace_in_models(old, new)


def execute(project: Project, *statements: str) -> None:
    engine = project.engine()
    with engine.begin() as connection:
        for statement in statements:
            connection.execute(sa.text(statement))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def two_databases(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """Two fresh, empty databases on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'one.sqlite'}", f"sqlite:///{tmp_path / 'two.sqlite'}"
    new_pg_url: Callable[[], str] = request.getfixturevalue("new_pg_url")
    return new_pg_url(), new_pg_url()


def test_a_table_and_columns_renamed_with_the_hint_keep_every_row(
    new_project: NewProject, two_databases: tuple[str, str]
) -> None:
    url, other = two_databases
    project = new_project(database_url=url)
    project.add_to_models(CUSTOMERS)
    project.autogenerate("create customers")
    project.command("upgrade", "head")
    execute(project, ROWS.format(CUSTOMER_ROWS), "INSERT INTO orders VALUES (1, 1), (2, 3)")
    edit(project, RENAMED_WITH_HINTS)

    before = set(project.versions())
    printed = project.command("revision", message="rename customer", autogenerate=True).stdout
    (written,) = set(project.versions()) - before
    revision = written.read_text()

    assert "Drops" not in printed, printed
    upgrade, downgrade = revision.split("def downgrade")
    assert "op.rename_table('customer', 'account')" in upgrade
    assert "op.alter_column('account', 'name', new_column_name='display_name')" in upgrade
    assert "op.alter_column('account', 'active', new_column_name='enabled')" in upgrade
    assert "type_=sa.String(length=80)" in upgrade  # the type change comes with it
    for dropping in ("drop_column", "drop_table", "create_table", "add_column"):
        assert dropping not in revision, revision
    assert "ALTER TABLE account RENAME CONSTRAINT pk_customer TO pk_account" in upgrade
    assert "op.rename_table('account', 'customer')" in downgrade

    project.command("upgrade", "head")

    rows = query(url, "SELECT id, display_name, email, enabled FROM account ORDER BY id")
    assert [(i, name, email, bool(enabled)) for i, name, email, enabled in rows] == KEPT
    assert query(url, "SELECT id, customer_id FROM orders ORDER BY id") == [(1, 1), (2, 3)]
    assert project.tables() == {"account", "orders", "item", "alembic_version"}
    inspector = sa.inspect(project.engine())
    assert inspector.get_pk_constraint("account")["name"] == "pk_account"
    assert {i["name"] for i in inspector.get_indexes("account")} >= {"ix_account_display_name"}
    assert [u["name"] for u in inspector.get_unique_constraints("account")] == ["uq_account_email"]
    assert [fk["name"] for fk in inspector.get_foreign_keys("orders")] == [
        "fk_orders_customer_id_account"
    ]
    # Once applied, the hints ask for nothing more.
    assert "No new upgrade operations detected" in project.command("check").stdout
    # The rendered suite's comparison with create_schema() finds the same names.
    replayed = project.schema(url)
    fresh = project.with_database(other)
    with fresh.imported():
        importlib.import_module(f"{project.program_name}.migrate").create_schema(url=other)
    assert fresh.schema() == replayed

    project.command("downgrade", "-1")

    assert project.tables() == {"customer", "orders", "item", "alembic_version"}
    rows = query(url, "SELECT id, name, email, active FROM customer ORDER BY id")
    assert [(i, name, email, bool(active)) for i, name, email, active in rows] == KEPT
    assert sa.inspect(project.engine()).get_pk_constraint("customer")["name"] == "pk_customer"


NOTES = """
class Note(Base):
    __tablename__ = "note"

    id: Mapped[int] = mapped_column(primary_key=True)
    memo: Mapped[str | None] = mapped_column(String(200))


class Tag(Base):
    __tablename__ = "tag"

    id: Mapped[int] = mapped_column(primary_key=True)
    label: Mapped[str] = mapped_column(String(20))
"""

RENAMED_WITHOUT_HINTS = {
    "    memo: Mapped[str | None]": "    body: Mapped[str | None]",
    '    __tablename__ = "tag"': '    __tablename__ = "label"',
}

COLUMN_LINE = (
    "Drops column note.memo and its data. Renamed? Say so on the new column in models.py: "
    'mapped_column(..., info={"renamed_from": "memo"}).'
)
TABLE_LINE = (
    "Drops table tag and its rows. Renamed? Say so on the model under its new name in "
    'models.py: __table_args__ = {"info": {"renamed_from": "tag"}}.'
)


def test_renames_without_the_hint_say_what_they_delete_and_can_be_refused(
    new_project: NewProject, capsys: pytest.CaptureFixture[str]
) -> None:
    project = new_project()
    project.add_to_models(NOTES)
    project.autogenerate("create notes")
    project.command("upgrade", "head")
    execute(
        project,
        "INSERT INTO note VALUES (1, 'buy milk'), (2, 'call Ada'), (3, NULL)",
        "INSERT INTO tag VALUES (1, 'home')",
    )
    edit(project, RENAMED_WITHOUT_HINTS)
    versions = project.versions()

    # A team's hard stop: nothing written, one line saying how to accept the drops.
    refused = project.alembic(
        "-x", "allow_drops=false", "revision", "--autogenerate", "-m", "rename memo", check=False
    )

    assert refused.returncode == 255, refused.stdout + refused.stderr
    assert project.versions() == versions
    lines = refused.stdout.splitlines()
    assert COLUMN_LINE in lines and TABLE_LINE in lines, refused.stdout
    assert lines[-1] == (
        "FAILED: The models drop table tag, column note.memo, and allow_drops is false: no "
        "revision written. Say in models.py what was renamed (renamed_from, above), or accept "
        'the loss: `alembic -x allow_drops=true revision --autogenerate -m "rename memo"`.'
    ), refused.stdout
    # The same from alembic.ini, for everyone.
    ini = project.path / "alembic.ini"
    ini.write_text(ini.read_text().replace("[alembic]\n", "[alembic]\nallow_drops = false\n", 1))
    with pytest.raises(CommandError, match=r"^The models drop table tag, column note\.memo, "):
        project.command("revision", message="rename memo", autogenerate=True)
    assert project.versions() == versions

    # Accepted: written, each drop saying what it deletes, each line printed.
    output = project.command(
        "revision", message="rename memo", autogenerate=True, x=["allow_drops=true"]
    )
    (written,) = set(project.versions()) - set(versions)

    assert COLUMN_LINE in output.stdout.splitlines() and TABLE_LINE in output.stdout.splitlines()
    upgrade, downgrade = written.read_text().split("def downgrade")
    assert (
        "        # Deletes column note.memo and every value in it. (Renamed? Say so in\n"
        '        # models.py: mapped_column(..., info={"renamed_from": "memo"}).)\n'
        "        batch_op.drop_column('memo')\n"
    ) in upgrade
    assert "    # Deletes table tag and all its rows. (Renamed? Say so on the model in\n" in upgrade
    assert "    op.drop_table('tag')\n" in upgrade
    assert "        # Adds column note.memo back empty: the values upgrade()\n" in downgrade
    assert "    # Creates table tag again, empty: the rows upgrade() deleted are not" in downgrade
    assert 'irreversible = "why"' in downgrade
    # db lint names them too, with their revision file.
    with project.imported():
        lint = importlib.import_module(f"{project.program_name}.migration_machinery.lint")
        migrate = importlib.import_module(f"{project.program_name}.migrate")
        _, findings = lint.lint(migrate.alembic_config(), revision_id(written))
    assert {(f.revision, f.rule) for f in findings} >= {
        (written, "ban-drop-column"),
        (written, "ban-drop-table"),
    }

    # Told, autogenerate writes the renames: the memos survive.
    written.unlink()
    edit(
        project,
        {
            "    body: Mapped[str | None] = mapped_column(String(200))": (
                '    body: Mapped[str | None] = mapped_column(String(200), info={"renamed_from": '
                '"memo"})'
            ),
            '    __tablename__ = "label"': (
                '    __tablename__ = "label"\n'
                '    __table_args__ = {"info": {"renamed_from": "tag"}}'
            ),
        },
    )
    project.autogenerate("rename memo")
    project.command("upgrade", "head")
    assert query(project.database_url, "SELECT id, body FROM note ORDER BY id") == [
        (1, "buy milk"),
        (2, "call Ada"),
        (3, None),
    ]
    assert query(project.database_url, "SELECT id, label FROM label") == [(1, "home")]


AUDIT_LOG = 'op.execute("CREATE TABLE audit_log (id INTEGER PRIMARY KEY, what VARCHAR(50))")'


def test_tables_the_models_never_had_stay_and_a_removed_model_is_dropped(
    new_project: NewProject, backend_url: str
) -> None:
    project = new_project(database_url=backend_url)
    first = revision_id(project.autogenerate("create item"))
    project.write_revision("a1", first, AUDIT_LOG, 'op.execute("DROP TABLE audit_log")')
    project.command("upgrade", "head")
    execute(
        project,
        # PostGIS's table, as its extension creates it; and one made by hand.
        "CREATE TABLE spatial_ref_sys (srid INTEGER PRIMARY KEY, auth_name VARCHAR(256))",
        "CREATE INDEX spatial_ref_sys_auth_name ON spatial_ref_sys (auth_name)",
        "INSERT INTO spatial_ref_sys VALUES (4326, 'EPSG')",
        "CREATE TABLE legacy_report (id INTEGER PRIMARY KEY)",
    )

    # The example model goes: its table (a revision created it) is dropped; so is the
    # table a revision created in SQL, which the models never had.
    project.replace_in_models('    __tablename__ = "item"', "    __abstract__ = True")
    before = set(project.versions())
    output = project.command("revision", message="drop item", autogenerate=True)
    (written,) = set(project.versions()) - before
    revision = written.read_text()

    assert "op.drop_table('item')" in revision and "op.drop_table('audit_log')" in revision
    assert "spatial_ref_sys" not in revision and "legacy_report" not in revision
    assert "Left table 'spatial_ref_sys' alone: neither the models nor a revision created it" in (
        output.log
    )
    project.command("upgrade", "head")
    assert project.tables() == {"alembic_version", "spatial_ref_sys", "legacy_report"}
    assert query(project.database_url, "SELECT * FROM spatial_ref_sys") == [(4326, "EPSG")]
    assert "No new upgrade operations detected" in project.command("check").stdout

    # A table the revisions create that the models are not to manage: the README's hook.
    project.command("downgrade", "-1")
    readme = (project.path / "README.md").read_text()
    section = readme.split("### Renames, drops and tables the models never had")[1]
    section = section.split("\n### ")[0]
    hook, call = re.findall(r"```python\n(.*?)```", section, re.DOTALL)[-2:]
    env = project.env_py.read_text()
    env = env.replace("\n\ndef run_migrations_offline", f"\n\n{hook}\n\ndef run_migrations_offline")
    line = "            **env_helpers.autogenerate_fixes(config, target_metadata),\n"
    assert line in env
    project.env_py.write_text(env.replace(line, call))
    written.unlink()

    revision = project.autogenerate("drop item").read_text()
    assert "op.drop_table('item')" in revision and "audit_log" not in revision


IRREVERSIBLE = 'irreversible = "the memos are deleted: a downgrade brings back an empty column"'


@pytest.mark.parametrize("variant_name", list(VARIANTS))
def test_an_irreversible_revision_stops_downgrade_with_the_database_unchanged(
    new_project: NewProject, variant_name: str
) -> None:
    project = new_project(**VARIANTS[variant_name])
    first = revision_id(project.autogenerate("create item"))
    dropping = project.write_revision(
        "b2",
        first,
        'op.add_column("item", sa.Column("memo", sa.String(20)))',
        'op.drop_column("item", "memo")',
    )
    dropping.write_text(
        dropping.read_text().replace("depends_on = None\n", f"depends_on = None\n{IRREVERSIBLE}\n")
    )
    project.write_revision("c3", "b2", 'op.add_column("item", sa.Column("sku", sa.String(9)))')
    project.command("upgrade", "head")
    execute(project, "INSERT INTO item (name) VALUES ('kettle')")
    before = snapshot(project.database_url)

    with pytest.raises(CommandError) as refused:
        project.command("downgrade", "base")

    assert str(refused.value) == (
        f"Revision b2 ({dropping}) is irreversible: the memos are deleted: a downgrade brings "
        "back an empty column. Nothing was downgraded. Downgrade to it at most, "
        "`alembic downgrade b2`; or through it, without what it deleted: "
        "`alembic -x allow_irreversible=true downgrade base`."
    )
    assert snapshot(project.database_url) == before
    assert project.version_rows() == ["c3"]
    # pytest-alembic's up/down test stops above it (the rendered conftest's floor).
    with project.imported():
        irreversible = importlib.import_module(
            f"{project.program_name}.migration_machinery.irreversible"
        )
        migrate = importlib.import_module(f"{project.program_name}.migrate")
        assert irreversible.downgrade_floor(migrate.alembic_config()) == first

    project.command("downgrade", "b2")  # above it: as ever
    assert project.version_rows() == ["b2"]
    project.command("downgrade", "base", x=["allow_irreversible=true"])  # said so
    assert project.version_rows() == []
