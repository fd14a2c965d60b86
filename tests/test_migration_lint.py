"""``db lint`` flags the migrations that would stall a busy PostgreSQL database.

Unsafe revisions are flagged, each finding with the revision file it comes
from; the safe patterns the rendered README teaches ("Deploying without
downtime") pass the linter as written there, and apply for real.
"""

from __future__ import annotations

import importlib
import re
import textwrap
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import NewProject
from harness.database import query
from harness.project import Project, revision_id

# One unsafe operation per revision, and the squawk rule it must trigger.
UNSAFE = {
    "add_required": (
        'op.add_column("item", sa.Column("sku", sa.String(40), nullable=False))',
        "adding-required-field",
    ),
    "index": (
        'op.create_index("ix_item_created_at", "item", ["created_at"])',
        "require-concurrent-index-creation",
    ),
    "type": (
        'op.alter_column("item", "name", type_=sa.String(200), existing_type=sa.String(100))',
        "changing-column-type",
    ),
    "rename_column": (
        'op.alter_column("item", "created_at", new_column_name="added_at")',
        "renaming-column",
    ),
    "rename_table": ('op.rename_table("item", "product")', "renaming-table"),
    "foreign_key": (
        'op.add_column("product", sa.Column("parent_id", sa.Integer()))\n'
        'op.create_foreign_key("fk_product_parent", "product", "product", ["parent_id"], ["id"])',
        "constraint-missing-not-valid",
    ),
}


def write_revisions(
    project: Project, bodies: dict[str, str], after: str | None = None
) -> dict[str, str]:
    """Chain one revision per body after ``after``, else the project's head: {name: its file}.

    The files are named by the revisions, relative to the project.
    """
    down = after or revision_id(project.versions()[-1])
    written = {}
    for name, body in bodies.items():
        path = project.package / "migrations" / "versions" / f"{name}.py"
        path.write_text(
            f'"""{name}."""\n\nimport sqlalchemy as sa\nfrom alembic import op\n\n'
            f"revision = {name!r}\ndown_revision = {down!r}\n"
            "branch_labels = None\ndepends_on = None\n\n\n"
            f"{body.strip()}\n\n\ndef downgrade() -> None:\n    pass\n"
        )
        written[name] = path.relative_to(project.path).as_posix()
        down = name
    return written


def upgrade_of(code: str) -> str:
    return "def upgrade() -> None:\n" + textwrap.indent(code, "    ")


# A data migration that reads rows: its SQL cannot be rendered without a database.
READS_ROWS = 'ids = op.get_bind().execute(sa.text("SELECT id FROM product")).scalars().all()'


def test_unsafe_migrations_are_flagged_with_their_revision_files(new_project: NewProject) -> None:
    # A SQLite project: the SQL is rendered for PostgreSQL all the same, no server needed.
    project = new_project()
    first = project.autogenerate("create item")
    revisions = {name: upgrade_of(code) for name, (code, _) in UNSAFE.items()}
    revisions["reads_rows"] = upgrade_of(READS_ROWS)
    revisions["reads_rows_checked"] = (
        "# squawk-ignore: not-linted -- reads ids only\n" + upgrade_of(READS_ROWS)
    )
    files = write_revisions(project, revisions)

    result = project.db("lint", "base:head", check=False)

    assert result.returncode == 1, result.stdout + result.stderr
    for name, (_, rule) in UNSAFE.items():
        assert re.search(rf"^{re.escape(files[name])}: {rule}: ", result.stdout, re.M), (
            name,
            result.stdout,
        )
    assert first.name not in result.stdout  # creating a table stalls nobody
    assert "fk_product_parent FOREIGN KEY(parent_id)" in result.stdout  # the statement shown
    # Not linted, and said so; unless the revision says it was checked by hand.
    assert f"{files['reads_rows']}: not-linted: AttributeError: " in result.stdout
    assert "reads_rows_checked" not in result.stdout
    assert re.search(r"^\d+ findings in 7 of 9 revisions\. ", result.stdout, re.M)
    assert "# squawk-ignore: RULE -- why" in result.stdout
    assert result.stderr == ""


def readme_revisions(project: Project) -> dict[str, str]:
    """The revisions the rendered README's "Deploying without downtime" shows, in order."""
    readme = (project.path / "README.md").read_text()
    section = readme.split("## Deploying without downtime")[1].split("\n## ")[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    revisions = [block for block in blocks if "def upgrade" in block]
    return {f"safe_{number:02d}": block for number, block in enumerate(revisions, start=1)}


def lint(project: Project, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """``python -m <package> db lint ARGS`` in this process: exit status and output."""
    capsys.readouterr()
    with project.imported():
        main = importlib.import_module(f"{project.program_name}.__main__").main
        status = main(["db", "lint", *args], prog=f"python -m {project.program_name}")
    captured = capsys.readouterr()
    return status, captured.out + captured.err


CONSTANT_DEFAULTS = (
    '    active: Mapped[bool] = mapped_column(server_default=text("false"))\n'
    '    stock: Mapped[int] = mapped_column(server_default=text("10"))\n'
)


def test_constant_defaults_generated_on_sqlite_are_not_flagged(
    new_project: NewProject, capsys: pytest.CaptureFixture[str]
) -> None:
    """Alembic's SQLite rendering wrote ``(false)``, which squawk takes for an expression."""
    project = new_project()
    project.autogenerate("create item")
    project.command("upgrade", "head")
    project.replace_in_models("import CheckConstraint,", "import CheckConstraint, text,")
    project.replace_in_models("    created_at:", CONSTANT_DEFAULTS + "    created_at:")
    revision = project.autogenerate("active and stock").read_text()
    assert "server_default=sa.text('false')" in revision
    assert "server_default=sa.text('10')" in revision

    status, output = lint(project, capsys)

    assert (status, output) == (0, "1 revision linted for PostgreSQL: no findings.\n")
    project.command("upgrade", "head")  # and SQLite takes them as written
    assert "No new upgrade operations detected" in project.command("check").stdout


def test_the_readme_safe_patterns_pass_the_linter_and_apply(
    new_project: NewProject,
    backend_url: str,
    capsys: pytest.CaptureFixture[str],
    variant: dict[str, Any],
) -> None:
    project = new_project(database_url=backend_url, **variant)
    project.autogenerate("create item")
    project.command("upgrade", "head")
    engine = project.engine()
    with engine.begin() as connection:
        connection.execute(sa.text("INSERT INTO item (name) VALUES ('kettle'), ('teapot')"))
    revisions = readme_revisions(project)
    assert len(revisions) == 9
    write_revisions(project, revisions)

    status, output = lint(project, capsys)  # the nine pending ones

    assert (status, output) == (0, "9 revisions linted for PostgreSQL: no findings.\n")
    project.command("upgrade", "head")
    rows = query(project.database_url, "SELECT title, sku, parent_id FROM item ORDER BY id")
    assert rows == [("kettle", "item-1", None), ("teapot", "item-2", None)]
    columns = {c["name"]: c for c in sa.inspect(engine).get_columns("item")}
    assert "name" not in columns and columns["sku"]["nullable"] is False
    assert [fk["name"] for fk in sa.inspect(engine).get_foreign_keys("item")] == [
        "fk_item_parent_id_item"
    ]
    assert "ix_item_created_at" in {i["name"] for i in sa.inspect(engine).get_indexes("item")}
    assert sa.inspect(engine).get_check_constraints("item") == []
    if engine.dialect.name == "postgresql":
        # Built concurrently and valid; the NOT VALID constraint validated.
        assert query(
            project.database_url,
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'ix_item_created_at'::regclass",
        ) == [(True,)]
        assert query(
            project.database_url,
            "SELECT convalidated FROM pg_constraint WHERE conname = 'fk_item_parent_id_item'",
        ) == [(True,)]
    engine.dispose()
    status, output = lint(project, capsys)
    assert status == 0 and output.startswith("No revision to lint: the database is at head.")
    status, output = lint(project, capsys, "safe_09:safe_01")  # the wrong way round
    assert status == 255 and output.count("\n") == 1, output
    assert output.rstrip() == (
        "FAILED: Revision safe_09 is not an ancestor of revision safe_01; "
        "see `history` for the revisions there are."
    )


def test_pending_revisions_need_the_database_else_one_line_says_how_to_do_without(
    new_project: NewProject, capsys: pytest.CaptureFixture[str], variant: dict[str, Any]
) -> None:
    project = new_project(**variant)
    project.autogenerate("create item")
    project = project.with_database("sqlite:////no/such/folder/app.db")

    status, output = lint(project, capsys)

    assert status == 255 and output.count("\n") == 1, output
    assert re.match(
        r"FAILED: Cannot connect to the database sqlite(\+aiosqlite)?:////no/such/", output
    )
    assert output.rstrip().endswith(
        "(Or lint without a database, naming the revisions: `python -m shop db lint base:head`.)"
    )


ADD_REQUIRED = 'op.add_column("item", sa.Column("{}", sa.String(9), nullable=False))'


def test_pending_revisions_on_every_branch_each_once_and_the_teams_squawk_config(
    new_project: NewProject, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    project = new_project()
    first = revision_id(project.autogenerate("create item"))
    versions = project.package / "migrations" / "versions"
    for name, down, body in [
        ("b1", first, upgrade_of(ADD_REQUIRED.format("b1"))),
        ("b2", first, upgrade_of(ADD_REQUIRED.format("b2"))),
        ("m1", ("b1", "b2"), upgrade_of("pass")),  # their merge
    ]:
        (versions / f"{name}.py").write_text(
            f"import sqlalchemy as sa\nfrom alembic import op\n\nrevision = {name!r}\n"
            f"down_revision = {down!r}\nbranch_labels = None\ndepends_on = None\n\n\n"
            f"{body}\n"
        )
    project.command("upgrade", "b1")
    monkeypatch.chdir(project.path)

    status, output = lint(project, capsys)  # b2 and the merge are pending, b1 is applied

    assert status == 1
    flagged = re.findall(r"^(\S+): adding-required-field: ", output, re.M)
    assert flagged == [f"{project.program_name}/migrations/versions/b2.py"]  # once, not via m1
    assert "1 finding in 1 of 2 revisions." in output

    # A team's .squawk.toml (found from the working directory, as squawk finds it) counts.
    (project.path / ".squawk.toml").write_text('excluded_rules = ["adding-required-field"]\n')
    assert lint(project, capsys) == (0, "2 revisions linted for PostgreSQL: no findings.\n")


def test_changed_since_lints_only_what_the_branch_adds(
    new_project: NewProject, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """CI lints a change's revisions: one deployed long ago with a finding stays out of it."""
    project = new_project()
    monkeypatch.chdir(project.path)  # the findings name their files relative to it
    project.git("init", "-q", "-b", "main")
    project.autogenerate("create item")
    old = write_revisions(project, {"old_index": upgrade_of(UNSAFE["index"][0])})["old_index"]

    def commit(message: str) -> None:
        project.git("add", "-A")
        project.git("commit", "-q", "-m", message)

    commit("deployed long ago")
    project.git("checkout", "-q", "-b", "feature")
    write_revisions(
        project,
        {"clean": upgrade_of('op.add_column("item", sa.Column("note", sa.Text()))')},
        "old_index",
    )
    commit("a clean revision")

    assert lint(project, capsys, "--changed-since", "main") == (
        0,
        "1 revision linted for PostgreSQL: no findings.\n",
    )

    # Not committed yet, and with a finding: linted all the same, and flagged.
    unsafe = write_revisions(project, {"unsafe": upgrade_of(ADD_REQUIRED.format("sku"))}, "clean")
    unsafe = unsafe["unsafe"]
    status, output = lint(project, capsys, "--changed-since", "main")
    assert status == 1
    assert re.findall(r"^(\S+): (\S+): ", output, re.M) == [(unsafe, "adding-required-field")]
    assert "1 finding in 1 of 2 revisions." in output

    # Accepted in the revision file, with the reason: nothing left.
    path = project.path / unsafe
    comment = "# squawk-ignore: adding-required-field -- the table is empty\n"
    path.write_text(comment + path.read_text())
    commit("an accepted finding")
    assert lint(project, capsys, "--changed-since", "main") == (
        0,
        "2 revisions linted for PostgreSQL: no findings.\n",
    )

    assert lint(project, capsys, "--changed-since", "HEAD") == (
        0,
        "No revisions added since HEAD: nothing to lint.\n",
    )
    # A push that created its branch (git's zeros before it): every revision, the old one too.
    status, output = lint(project, capsys, "--changed-since", "0" * 40)
    assert status == 1 and re.findall(r"^(\S+): ", output, re.M) == [old], output
    # A ref the clone does not have: one line says how to fetch it.
    assert lint(project, capsys, "--changed-since", "origin/main") == (
        255,
        "FAILED: git ref 'origin/main' is unknown (a shallow clone? fetch the history: "
        "`git fetch --unshallow`, or actions/checkout with fetch-depth: 0), "
        "or name another: `git branch --all` lists them.\n",
    )
    status, output = lint(project, capsys, "base:head", "--changed-since", "main")
    assert status == 255 and output.count("\n") == 1, output

    # Outside a git checkout (an installed package), the line says how to lint instead.
    elsewhere = new_project()
    assert lint(elsewhere, capsys, "--changed-since", "main") == (
        255,
        f"FAILED: --changed-since reads git, and {elsewhere.package / 'migrations'} is in no "
        "git checkout: lint the revisions by name instead, `python -m shop db lint base:head`.\n",
    )
