"""The migration workflow a user follows, for real, on a SQLite file.

render → autogenerate → upgrade → edit a model → check / autogenerate →
upgrade → downgrade, with the real `alembic` command in the rendered project.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import Render, Service, revision_id


@pytest.fixture
def service(render: Render) -> Service:
    """A freshly rendered service."""
    return render(program_name="shop")


@pytest.fixture(params=["shop", "billing_core"])
def any_service(render: Render, request: pytest.FixtureRequest) -> Service:
    """A freshly rendered service, under two package names: nothing may depend on one."""
    return render(program_name=request.param)


@pytest.fixture
def migrated(service: Service) -> Service:
    """A service after the README's first step: autogenerate + upgrade."""
    service.autogenerate("create initial tables")
    service.alembic("upgrade", "head")
    return service


def test_first_autogenerate_writes_a_revision_creating_the_example_table(
    service: Service,
) -> None:
    revision = service.autogenerate("create initial tables")

    text = revision.read_text()
    assert "op.create_table('item'" in text
    assert "op.f('pk_item')" in text  # the naming convention names constraints
    assert "op.drop_table('item')" in text
    assert service.tables() == set()  # autogenerate does not touch the schema


def test_first_upgrade_creates_the_table_and_records_the_revision(any_service: Service) -> None:
    revision = any_service.autogenerate("create initial tables")

    any_service.alembic("upgrade", "head")

    assert any_service.tables() == {"item", "alembic_version"}
    assert any_service.columns("item") == {"id", "name", "created_at"}
    assert any_service.version_rows() == [revision_id(revision)]


def test_a_model_change_is_detected_then_applied(migrated: Service) -> None:
    migrated.replace_in_models(
        "    created_at: Mapped[datetime]",
        "    price_cents: Mapped[int] = mapped_column(server_default='0')\n"
        "    created_at: Mapped[datetime]",
    )

    check = migrated.alembic("check", check=False)
    assert check.returncode != 0
    assert "price_cents" in check.stdout + check.stderr

    revision = migrated.autogenerate("add price")
    assert "add_column" in revision.read_text()
    assert "price_cents" in revision.read_text()

    migrated.alembic("upgrade", "head")
    assert "price_cents" in migrated.columns("item")
    assert migrated.alembic("check").returncode == 0


def test_rows_survive_a_column_change_that_rebuilds_the_sqlite_table(
    migrated: Service,
) -> None:
    engine = migrated.engine()
    with engine.begin() as connection:
        connection.execute(sa.text("INSERT INTO item (name) VALUES ('anvil'), ('rope')"))
    migrated.replace_in_models("String(100)", "String(250)")

    revision = migrated.autogenerate("widen item name")
    assert "batch_alter_table" in revision.read_text()  # SQLite cannot ALTER: batch
    migrated.alembic("upgrade", "head")

    with engine.connect() as connection:
        names = connection.execute(sa.text("SELECT name FROM item ORDER BY name")).scalars()
        assert list(names) == ["anvil", "rope"]
    engine.dispose()
    assert migrated.alembic("check").returncode == 0


def test_add_then_drop_a_column_with_downgrade_and_upgrade(migrated: Service) -> None:
    migrated.replace_in_models(
        "    created_at: Mapped[datetime]",
        "    note: Mapped[str | None] = mapped_column(String(200))\n"
        "    created_at: Mapped[datetime]",
    )
    added = migrated.autogenerate("add note")
    migrated.alembic("upgrade", "head")
    assert "note" in migrated.columns("item")

    migrated.replace_in_models("    note: Mapped[str | None] = mapped_column(String(200))\n", "")
    dropped = migrated.autogenerate("drop note")
    assert "drop_column('note')" in dropped.read_text()
    migrated.alembic("upgrade", "head")
    assert "note" not in migrated.columns("item")

    migrated.alembic("downgrade", "-1")
    assert "note" in migrated.columns("item")
    assert migrated.version_rows() == [revision_id(added)]

    migrated.alembic("upgrade", "head")
    assert "note" not in migrated.columns("item")
    assert migrated.version_rows() == [revision_id(dropped)]


def test_downgrade_base_removes_every_table(migrated: Service) -> None:
    migrated.add_to_models(
        """
class Customer(Base):
    __tablename__ = "customer"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(200), index=True)
"""
    )
    migrated.autogenerate("add customer")
    migrated.alembic("upgrade", "head")
    assert {"item", "customer"} <= migrated.tables()

    migrated.alembic("downgrade", "base")

    assert migrated.tables() - {"alembic_version"} == set()
    assert migrated.version_rows() == []


def test_autogenerate_without_a_change_writes_no_file(migrated: Service) -> None:
    before = migrated.versions()

    result = migrated.alembic("revision", "--autogenerate", "-m", "nothing")

    assert migrated.versions() == before
    assert "No changes in schema detected" in result.stdout


def test_history_and_current_show_the_revisions(migrated: Service) -> None:
    first = revision_id(migrated.versions()[0])
    migrated.replace_in_models("String(100)", "String(120)")
    second = revision_id(migrated.autogenerate("longer names"))

    history = migrated.alembic("history").stdout
    assert f"{first} -> {second} (head), longer names" in history
    assert f"<base> -> {first}, create initial tables" in history
    assert migrated.alembic("current").stdout.strip() == first
    migrated.alembic("upgrade", "head")
    assert migrated.alembic("current").stdout.strip() == f"{second} (head)"


@pytest.mark.parametrize("xdg_data_home", [True, False], ids=["XDG_DATA_HOME", "HOME"])
def test_with_no_url_the_default_database_is_created_in_the_data_dir(
    any_service: Service, tmp_path: Path, xdg_data_home: bool
) -> None:
    service = any_service
    home = tmp_path / "fresh-home"
    home.mkdir()
    env = dict(service.env, HOME=str(home))
    del env[service.url_env]
    if xdg_data_home:
        env["XDG_DATA_HOME"] = str(tmp_path / "xdg-data")
        expected = tmp_path / "xdg-data" / service.program_name / "main.db"
    else:
        env.pop("XDG_DATA_HOME")
        expected = home / ".local" / "share" / service.program_name / "main.db"
    service.env = env
    assert not expected.parent.exists()

    service.autogenerate("init")
    service.alembic("upgrade", "head")

    assert expected.is_file()
    service.env[service.url_env] = f"sqlite:///{expected}"
    assert "item" in service.tables()


def test_alembic_runs_from_another_directory(any_service: Service, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    ini = str(any_service.path / "alembic.ini")

    any_service.alembic("-c", ini, "revision", "--autogenerate", "-m", "init", cwd=elsewhere)
    any_service.alembic("-c", ini, "upgrade", "head", cwd=elsewhere)

    assert "item" in any_service.tables()
    assert not list(elsewhere.iterdir())  # nothing written to the working directory


def test_offline_upgrade_prints_the_ddl(migrated: Service) -> None:
    result = migrated.alembic("upgrade", "head", "--sql")
    assert "CREATE TABLE item" in result.stdout
    assert "INSERT INTO alembic_version" in result.stdout


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
    migrated: Service, configure_logger: bool
) -> None:
    migrated.alembic("downgrade", "base")
    script = PROGRAMMATIC_UPGRADE.replace("CONFIGURE", str(configure_logger))

    result = migrated.run(migrated.python, "-c", script)

    state = json.loads(result.stdout.strip().splitlines()[-1])
    assert "item" in migrated.tables()
    assert state["app_logger_enabled"]  # env.py never disables existing loggers
    if configure_logger:
        # The default: alembic.ini's logging sections take over the root logger.
        assert state == {**state, "root_level": 30, "root_handlers_kept": False}
    else:
        assert state == {"root_level": 10, "root_handlers_kept": True, "app_logger_enabled": True}
