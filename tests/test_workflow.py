"""The migration workflow a user follows, told once, on SQLite and on PostgreSQL.

render → autogenerate → upgrade → add rows → edit the models → check →
autogenerate → upgrade → add and drop a column → downgrade → upgrade →
downgrade to base.  The steps run Alembic's command API in this process on
the project's own alembic.ini (same env.py, models and guards as the
``alembic`` command); the tests after the story run the real command line
where it is the subject.  On PostgreSQL the database belongs to a role whose
password is ``p%w@:/?#x``, and no output may show it.
"""

from __future__ import annotations

import importlib
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.util import CommandError
from conftest import NewProject
from harness.database import QUOTED_PASSWORD, assert_no_password, query
from harness.project import Project, revision_id

CUSTOMER_MODEL = """
from sqlalchemy import ForeignKey


class Customer(Base):
    __tablename__ = "customer"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(200), unique=True)
    item_id: Mapped[int | None] = mapped_column(ForeignKey("item.id"), index=True)
"""
PRICE = "    price_cents: Mapped[int] = mapped_column(server_default='0')\n"
NOTE = "    note: Mapped[str | None] = mapped_column(String(200))\n"
CREATED_AT = "    created_at: Mapped[datetime]"


POSTGRESQL = {"database": "postgresql", "program_name": "billing_service"}


@pytest.fixture(
    params=[
        pytest.param({}, id="sqlite"),
        pytest.param(POSTGRESQL, id="postgresql", marks=pytest.mark.postgres),
        pytest.param({"use_async": True}, id="async-sqlite"),
        pytest.param(
            {**POSTGRESQL, "use_async": True}, id="async-postgresql", marks=pytest.mark.postgres
        ),
    ]
)
def project(request: pytest.FixtureRequest, new_project: NewProject, tmp_path: Path) -> Project:
    """A fresh project answered for the backend (and variant), on an empty database of it."""
    answers: dict[str, str] = request.param
    if answers.get("database") == "postgresql":
        return new_project(database_url=request.getfixturevalue("pg_url"), **answers)
    return new_project(**answers)


def name_length(project: Project) -> int:
    """The declared length of item.name, as the database reports it."""
    engine = project.engine()
    try:
        columns = sa.inspect(engine).get_columns("item")
    finally:
        engine.dispose()
    (name,) = [column for column in columns if column["name"] == "name"]
    return int(name["type"].length)


def test_the_migration_workflow(project: Project) -> None:
    outputs: list[str] = []

    def command(name: str, *args: str, **kwargs: object) -> str:
        """Run an Alembic command; return what it printed."""
        output = project.command(name, *args, **kwargs)
        outputs.extend(output)
        return output.stdout

    # First revision: autogenerate writes it, upgrade creates the table.
    first = project.autogenerate("create initial tables")
    text = first.read_text()
    assert "op.create_table('item'" in text
    assert "op.f('pk_item')" in text  # the naming convention names constraints
    assert "op.drop_table('item')" in text
    assert project.tables() == set()  # autogenerate does not touch the schema
    command("upgrade", "head")
    assert project.tables() == {"item", "alembic_version"}
    assert project.columns("item") == {"id", "name", "created_at"}
    assert project.version_rows() == [revision_id(first)]
    assert "No new upgrade operations detected" in command("check")
    with project.engine().begin() as connection:
        connection.execute(sa.text("INSERT INTO item (name) VALUES ('anvil'), ('rope')"))

    # The models change: a longer column (a table rebuild on SQLite), a new
    # column with a server default, a new table with a foreign key.
    project.replace_in_models("String(100)", "String(250)")
    project.replace_in_models(CREATED_AT, PRICE + CREATED_AT)
    project.add_to_models(CUSTOMER_MODEL)
    with pytest.raises(CommandError, match="New upgrade operations detected") as drift:
        command("check")
    assert "'customer'" in str(drift.value) and "price_cents" in str(drift.value)
    second = project.autogenerate("customers, prices, longer item names")
    text = second.read_text()
    assert "op.create_table('customer'" in text
    assert "batch_op.add_column(sa.Column('price_cents'" in text
    assert "type_=sa.String(length=250)" in text
    command("upgrade", "head")
    assert "No new upgrade operations detected" in command("check")
    assert {"customer", "item"} <= project.tables()
    assert name_length(project) == 250
    names = query(project.database_url, "SELECT name, price_cents FROM item ORDER BY name")
    assert names == [("anvil", 0), ("rope", 0)]  # the rows survived, defaults filled

    # Add, then drop, a column; step back one revision and forward again.
    project.replace_in_models(CREATED_AT, NOTE + CREATED_AT)
    added = project.autogenerate("add note")
    command("upgrade", "head")
    assert "note" in project.columns("item")
    project.replace_in_models(NOTE, "")
    dropped = project.autogenerate("drop note")
    assert "batch_op.drop_column('note')" in dropped.read_text()
    command("upgrade", "head")
    assert "note" not in project.columns("item")
    command("downgrade", "-1")
    assert "note" in project.columns("item")
    assert project.version_rows() == [revision_id(added)]
    assert command("current").strip() == revision_id(added)
    command("upgrade", "head")
    assert "note" not in project.columns("item")
    assert project.version_rows() == [revision_id(dropped)]
    history = command("history")
    assert f"{revision_id(added)} -> {revision_id(dropped)} (head), drop note" in history
    assert f"<base> -> {revision_id(first)}, create initial tables" in history

    # Back to an empty database.
    command("downgrade", "base")
    assert project.tables() - {"alembic_version"} == set()
    assert project.version_rows() == []
    if project.database_url.startswith("postgresql"):
        sequences = "SELECT relname FROM pg_class WHERE relkind = 'S'"
        # But the migrations' record's, which stays, as alembic_version does.
        assert query(project.database_url, sequences) == [("alembic_version_history_id_seq",)]
    assert_no_password(*outputs)


@pytest.mark.postgres
def test_a_project_answered_sqlite_migrates_postgresql(
    new_project: NewProject, pg_url: str
) -> None:
    """env.py takes any SQLAlchemy URL, whatever database was chosen at copy time."""
    project = new_project(database_url=pg_url)
    revision = project.autogenerate("create initial tables")

    output = project.command("upgrade", "head")

    assert "Context impl PostgresqlImpl." in output.log
    assert f"Running upgrade  -> {revision_id(revision)}" in output.log
    assert project.tables() == {"item", "alembic_version"}
    assert project.version_rows() == [revision_id(revision)]
    assert_no_password(*output)


@pytest.mark.postgres
def test_a_first_revision_generated_on_postgresql_runs_on_sqlite(
    new_project: NewProject, pg_url: str, tmp_path: Path
) -> None:
    """The README's other direction: the example model's default is written portably."""
    project = new_project(database_url=pg_url)
    revision = project.autogenerate("create initial tables")
    assert "server_default=sa.text('CURRENT_TIMESTAMP')" in revision.read_text()
    on_sqlite = project.with_database(f"sqlite:///{tmp_path / 'dev.sqlite'}")

    on_sqlite.command("upgrade", "head")

    with on_sqlite.engine().begin() as connection:
        connection.execute(sa.text("INSERT INTO item (name) VALUES ('kettle')"))
    (created_at,) = query(on_sqlite.database_url, "SELECT created_at FROM item")[0]
    assert created_at is not None
    assert "No new upgrade operations detected" in on_sqlite.command("check").stdout


# -- where the URL comes from -------------------------------------------------------------


@pytest.mark.parametrize(
    ("program_name", "use_async"),
    [("shop", False), ("billing_core", False), ("billing_core", True)],
    ids=["shop", "billing_core", "async-billing_core"],
)
@pytest.mark.parametrize("xdg_data_home", [True, False], ids=["XDG_DATA_HOME", "HOME"])
def test_with_no_url_the_default_database_is_created_in_the_data_dir(
    new_project: NewProject, tmp_path: Path, xdg_data_home: bool, program_name: str, use_async: bool
) -> None:
    project = new_project(program_name=program_name, use_async=use_async)
    home = tmp_path / "fresh-home"
    home.mkdir()
    del project.env[project.url_env]
    project.env["HOME"] = str(home)
    if xdg_data_home:
        project.env["XDG_DATA_HOME"] = str(tmp_path / "xdg-data")
        expected = tmp_path / "xdg-data" / program_name / "main.db"
    else:
        del project.env["XDG_DATA_HOME"]
        expected = home / ".local" / "share" / program_name / "main.db"
    assert not expected.parent.exists()

    project.autogenerate("init")
    project.command("upgrade", "head")

    assert expected.is_file()
    assert "item" in project.with_database(f"sqlite:///{expected}").tables()


def upgrade_with_url_in_code(project: Project, url: str, mode: str) -> None:
    """``command.upgrade(migrate.alembic_config(url=url), "head")``, as an application calls it."""
    with project.imported():
        migrate = importlib.import_module(f"{project.program_name}.migrate")
        command.upgrade(migrate.alembic_config(url=url), "head", sql=mode == "offline")


@pytest.mark.postgres
@pytest.mark.parametrize("mode", ["offline", "online"])
@pytest.mark.parametrize("given", ["sqlite", "postgresql"])
def test_a_url_given_in_code_wins_over_the_environment_online_and_offline(
    new_project: NewProject,
    pg_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    mode: str,
    given: str,
) -> None:
    """``alembic_config(url=...)``: one URL resolution for ``--sql`` and for real."""
    urls = {"sqlite": f"sqlite:///{tmp_path / 'given.sqlite'}", "postgresql": pg_url}
    other = "postgresql" if given == "sqlite" else "sqlite"
    project = new_project(database_url=urls[other])  # the environment names the other one
    project.autogenerate("create initial tables")
    capsys.readouterr()

    upgrade_with_url_in_code(project, urls[given], mode)

    printed = capsys.readouterr()
    assert_no_password(printed.out, printed.err)
    if mode == "offline":
        # Each dialect writes the example's datetime column its own way.
        ddl = {"sqlite": "created_at DATETIME", "postgresql": "TIMESTAMP WITHOUT TIME ZONE"}
        assert ddl[given] in printed.out
        assert ddl[other] not in printed.out
        assert project.with_database(urls[given]).tables() == set()
    else:
        assert project.with_database(urls[given]).tables() == {"item", "alembic_version"}
    assert project.with_database(urls[other]).tables() == set()


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("mode", "bad", "says"),
    [
        ("offline", "unknown dialect", "SQLAlchemy has no database dialect or driver 'postgres'"),
        ("online", "unknown dialect", "SQLAlchemy has no database dialect or driver 'postgres'"),
        ("online", "wrong password", "password authentication failed"),
    ],
)
def test_a_bad_url_given_in_code_is_one_line_without_the_password(
    new_project: NewProject, pg_url: str, mode: str, bad: str, says: str
) -> None:
    """Whichever URL carries the password (the argument or the variable), it never shows."""
    project = new_project(database_url=pg_url)  # the variable carries the password too
    project.autogenerate("create initial tables")
    if bad == "unknown dialect":  # SQLAlchemy dropped the postgres:// alias
        given = pg_url.replace("postgresql+psycopg://", "postgres://")
    else:
        given = pg_url.replace(QUOTED_PASSWORD, "not-" + QUOTED_PASSWORD)

    with pytest.raises(CommandError) as error:
        upgrade_with_url_in_code(project, given, mode)

    (line,) = str(error.value).splitlines()
    assert says in line
    assert "(from the url argument)" in line
    assert_no_password(line)
    assert "not-" + QUOTED_PASSWORD not in line


# -- the command line, where it is the subject -------------------------------------------


@pytest.mark.parametrize(
    ("program_name", "use_async"),
    [("shop", False), ("billing_core", False), ("billing_core", True)],
    ids=["shop", "billing_core", "async-billing_core"],
)
def test_alembic_runs_from_another_directory(
    new_project: NewProject, tmp_path: Path, program_name: str, use_async: bool
) -> None:
    project = new_project(program_name=program_name, use_async=use_async)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    ini = str(project.path / "alembic.ini")

    # Autogenerate imports the package and its models, and writes into the project.
    project.alembic("-c", ini, "revision", "--autogenerate", "-m", "init", cwd=elsewhere)

    (revision,) = project.versions()
    assert "op.create_table('item'" in revision.read_text()
    assert not list(elsewhere.iterdir())  # nothing written to the working directory


def test_autogenerate_without_a_change_writes_no_file(new_project: NewProject) -> None:
    project = new_project()
    project.autogenerate("create initial tables")
    project.command("upgrade", "head")
    before = project.versions()

    result = project.alembic("revision", "--autogenerate", "-m", "nothing")

    assert project.versions() == before
    assert "No changes in schema detected; no revision file written." in result.stdout


def test_history_current_and_offline_sql_print_what_the_readme_says(
    new_project: NewProject, variant: dict[str, Any]
) -> None:
    project = new_project(**variant)
    first = revision_id(project.autogenerate("create initial tables"))

    sql = project.alembic("upgrade", "head", "--sql").stdout
    assert "CREATE TABLE item" in sql
    assert f"INSERT INTO alembic_version (version_num) VALUES ('{first}')" in sql
    assert project.tables() == set()  # --sql changed nothing

    project.command("upgrade", "head")
    project.replace_in_models("String(100)", "String(120)")
    second = revision_id(project.autogenerate("longer names"))
    history = project.alembic("history").stdout
    assert f"{first} -> {second} (head), longer names" in history
    assert f"<base> -> {first}, create initial tables" in history
    assert project.alembic("current").stdout.strip() == first


PROGRAMMATIC_UPGRADE = textwrap.dedent(
    """
    import json, logging, sys
    from alembic import command
    from alembic.config import Config

    handler = logging.StreamHandler(sys.stderr)
    logging.basicConfig(level=logging.DEBUG, handlers=[handler])
    app_logger = logging.getLogger("myapp")

    config = Config("alembic.ini")
    config.attributes["configure_logger"] = CONFIGURE
    command.upgrade(config, "head")

    root = logging.getLogger()
    print(json.dumps({
        "root_level": root.level,
        "root_handlers_kept": root.handlers == [handler],
        "app_logger_enabled": not app_logger.disabled,
    }))
    """
)


@pytest.mark.parametrize("configure_logger", [False, True])
def test_upgrade_from_python_keeps_the_callers_logging_when_asked(
    new_project: NewProject, configure_logger: bool
) -> None:
    project = new_project()
    project.autogenerate("create initial tables")
    script = PROGRAMMATIC_UPGRADE.replace("CONFIGURE", str(configure_logger))

    result = project.run(project.python, "-c", script)

    state = json.loads(result.stdout.strip().splitlines()[-1])
    assert "item" in project.tables()
    assert state["app_logger_enabled"]  # env.py never disables existing loggers
    if configure_logger:
        # The default: alembic.ini's logging sections take over the root logger.
        assert state == {**state, "root_level": 30, "root_handlers_kept": False}
    else:
        assert state == {"root_level": 10, "root_handlers_kept": True, "app_logger_enabled": True}


def test_what_alembic_says_before_the_first_upgrade(new_project: NewProject) -> None:
    """An empty database and a revision not applied yet: each message says what to run."""
    project = new_project()

    current = project.alembic("current")
    project.autogenerate("create initial tables")
    second = project.alembic("revision", "--autogenerate", "-m", "again", check=False)

    assert current.stdout.strip() == "No revision applied yet; apply them: `alembic upgrade head`."
    assert second.returncode == 255
    assert second.stdout.strip().splitlines()[-1] == (
        "FAILED: Target database is not up to date. Upgrade it first: `alembic upgrade head`."
    )
    assert "ERROR" not in second.stderr  # said once, not also as a log line
    project.command("upgrade", "head")
    autogenerate = project.alembic("revision", "--autogenerate", "-m", "nothing")
    assert "No changes in schema detected" in autogenerate.stdout  # it compared
    assert "setting up autogenerate plugin" not in autogenerate.stderr  # Alembic's chatter


def test_a_sqlite_url_with_a_tilde_means_the_home_folder(
    new_project: NewProject, tmp_path: Path
) -> None:
    project = new_project()
    home = Path(project.env["HOME"])
    (home / "data").mkdir(parents=True)
    project.env[project.url_env] = "sqlite:///~/data/app.db"
    project.autogenerate("create initial tables")

    project.command("upgrade", "head")

    assert "item" in project.with_database(f"sqlite:///{home / 'data' / 'app.db'}").tables()
    assert not (project.path / "~").exists()


def test_a_sqlite_file_in_a_missing_folder_says_to_create_it(
    new_project: NewProject, tmp_path: Path
) -> None:
    missing = tmp_path / "no" / "such" / "folder"
    project = new_project(database_url=f"sqlite:///{missing / 'app.db'}")

    with pytest.raises(CommandError) as error:
        project.command("upgrade", "head")

    assert f"Check that the folder {missing} exists and is writable (mkdir -p {missing})" in str(
        error.value
    )
    assert project.url_env in str(error.value)
