"""The PostgreSQL extensions the models need are created by the first revision that needs them.

A CITEXT column (``citext``), a trigram index (``pg_trgm``) and a
``uuid_generate_v4()`` server default (``uuid-ossp``): without the
extensions the first upgrade fails (``type "citext" does not exist``).  The
story: autogenerate → upgrade (the extensions exist and work) → check → the
project's own suite → downgrade base (the extensions stay) → upgrade again →
a second revision needing one again does not create it again.  Generated on
SQLite, the revision creates them on PostgreSQL; a role that may not create
them gets one line with the SQL to run, and nothing of the migration.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import NewProject
from harness.database import AWKWARD_PASSWORD, assert_no_password, query
from harness.postgres import PostgresCluster
from harness.project import Project

#: Runs on both backends: CITEXT on PostgreSQL only, the index's operator class too.
MEMBER = """
from sqlalchemy import Index
from sqlalchemy.dialects.postgresql import CITEXT


class Member(Base):
    __tablename__ = "member"
    __table_args__ = (
        Index(
            "ix_member_name_trgm",
            "name",
            postgresql_using="gin",
            postgresql_ops={"name": "gin_trgm_ops"},
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(
        String(320).with_variant(CITEXT(), "postgresql"), unique=True
    )
    name: Mapped[str] = mapped_column(String(100))
"""

#: PostgreSQL only: uuid_generate_v4() comes from uuid-ossp.
TOKEN = """
import uuid

from sqlalchemy import text


class Token(Base):
    __tablename__ = "token"

    id: Mapped[int] = mapped_column(primary_key=True)
    value: Mapped[uuid.UUID] = mapped_column(server_default=text("uuid_generate_v4()"))
"""

#: A second CITEXT column, once citext exists.
NICKNAME = (
    "    name: Mapped[str] = mapped_column(String(100))\n",
    "    name: Mapped[str] = mapped_column(String(100))\n"
    "    nickname: Mapped[str | None] = mapped_column(\n"
    '        String(50).with_variant(CITEXT(), "postgresql")\n'
    "    )\n",
)

GUARD = 'if op.get_bind().dialect.name == "postgresql":'


def extensions(url: str) -> set[str]:
    return {row[0] for row in query(url, "SELECT extname FROM pg_extension")} - {"plpgsql"}


def execute(url: str, *statements: str) -> None:
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.begin() as connection:
            for statement in statements:
                connection.exec_driver_sql(statement)
    finally:
        engine.dispose()


def assert_clean(project: Project) -> None:
    assert "No new upgrade operations detected" in project.command("check").stdout


def upgrade_and_downgrade(text: str) -> tuple[str, str]:
    upgrade, _, downgrade = text.partition("def downgrade()")
    return upgrade.partition("def upgrade()")[2], downgrade


@pytest.mark.postgres
def test_the_first_revision_needing_an_extension_creates_it(
    new_project: NewProject, pg_url: str, new_pg_url: Callable[[], str]
) -> None:
    project = new_project(database_url=pg_url)
    project.add_to_models(MEMBER)
    project.add_to_models(TOKEN)
    revision = project.autogenerate("members and tokens")
    upgrade, downgrade = upgrade_and_downgrade(revision.read_text())
    # First, before the tables that need them, and on PostgreSQL only.
    assert upgrade.index(GUARD) < upgrade.index("op.create_table(")
    created = [line.strip() for line in upgrade.splitlines() if "CREATE EXTENSION" in line]
    assert created == [
        "op.execute('CREATE EXTENSION IF NOT EXISTS citext')",
        "op.execute('CREATE EXTENSION IF NOT EXISTS pg_trgm')",
        """op.execute('CREATE EXTENSION IF NOT EXISTS "uuid-ossp"')""",
    ]
    assert "EXTENSION" not in downgrade.replace("# The extensions stay", "")
    assert "# The extensions stay (citext, pg_trgm, uuid-ossp)" in downgrade

    upgraded = project.alembic("upgrade", "head")
    assert_no_password(upgraded)
    assert extensions(pg_url) == {"citext", "pg_trgm", "uuid-ossp"}
    execute(
        pg_url,
        "INSERT INTO member (email, name) VALUES ('Ann@Example.com', 'Ann Smith')",
        "INSERT INTO token DEFAULT VALUES",
    )
    # citext compares case-insensitively; its unique index refuses the same address in capitals.
    found = query(pg_url, "SELECT name FROM member WHERE email = 'ann@EXAMPLE.com'")
    assert found == [("Ann Smith",)]
    with pytest.raises(sa.exc.IntegrityError):
        execute(pg_url, "INSERT INTO member (email, name) VALUES ('ANN@example.com', 'Other')")
    ((token,),) = query(pg_url, "SELECT value FROM token")
    assert isinstance(token, uuid.UUID) and token.version == 4
    plan = query(pg_url, "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_member_name_trgm'")
    assert "gin (name gin_trgm_ops)" in plan[0][0]
    for _ in range(2):
        assert_clean(project)
    linted = project.db("lint", check=False)
    assert linted.returncode == 0, linted.stdout + linted.stderr

    # The project's own suite on an empty database: replayed, and built by create_schema().
    test_url = {f"{project.program_name.upper()}_TEST_DATABASE_URL": new_pg_url()}
    suite = project.own_tests("-q", python=sys.executable, **test_url)
    assert suite.returncode == 0, suite.stdout + suite.stderr
    assert " passed" in suite.stdout and "failed" not in suite.stdout

    # Down: the tables go, the extensions stay (the revision cannot know it made them).
    project.alembic("downgrade", "base")
    assert project.tables() == {"alembic_version"}
    assert extensions(pg_url) == {"citext", "pg_trgm", "uuid-ossp"}
    project.alembic("upgrade", "head")
    assert {"member", "token"} <= project.tables()

    # A second column needing citext: the first revision made it, this one does not.
    project.replace_in_models(*NICKNAME)
    second = project.autogenerate("nicknames").read_text()
    assert ".with_variant(postgresql.CITEXT(), 'postgresql')" in second
    assert "EXTENSION" not in second
    project.alembic("upgrade", "head")
    assert_clean(project)


@pytest.mark.postgres
def test_a_revision_generated_on_sqlite_creates_the_extensions_on_postgresql(
    new_project: NewProject, pg_url: str
) -> None:
    project = new_project()  # the default: a SQLite file
    project.add_to_models(MEMBER)
    revision = project.autogenerate("members").read_text()
    assert GUARD in revision
    assert "CREATE EXTENSION IF NOT EXISTS citext" in revision
    assert "CREATE EXTENSION IF NOT EXISTS pg_trgm" in revision
    project.alembic("upgrade", "head")  # SQLite: nothing to create
    assert "member" in project.tables()
    assert_clean(project)

    on_postgresql = project.with_database(pg_url)
    on_postgresql.alembic("upgrade", "head")
    assert extensions(pg_url) == {"citext", "pg_trgm"}
    column = query(
        pg_url, "SELECT udt_name FROM information_schema.columns WHERE column_name = 'email'"
    )
    assert column == [("citext",)]
    assert_clean(on_postgresql)


@pytest.mark.postgres
def test_a_role_that_may_not_create_an_extension_is_told_the_sql_to_run(
    new_project: NewProject,
    pg_cluster: PostgresCluster,
    new_pg_url: Callable[[], str],
    variant: dict[str, Any],
) -> None:
    """A role that may create tables, not extensions: one line, nothing migrated."""
    owner_url = new_pg_url()  # a database, and its owner, who may create trusted extensions
    database = sa.make_url(owner_url).database
    assert database is not None
    role = f"app_{uuid.uuid4().hex[:8]}"
    pg_cluster.create_role(role, AWKWARD_PASSWORD)
    # Not the database's owner, nor CREATE on it: CREATE EXTENSION is refused even when trusted.
    execute(
        owner_url,
        f"GRANT CONNECT ON DATABASE {database} TO {role}",
        f"GRANT USAGE, CREATE ON SCHEMA public TO {role}",
    )
    url = pg_cluster.url_for(database, user=role, password=AWKWARD_PASSWORD)
    project = new_project(database_url=url, **variant)
    project.add_to_models(MEMBER)
    project.autogenerate("members")

    for command in (project.alembic, project.db):
        failed = command("upgrade", "head", check=False)
        output = failed.stdout + failed.stderr
        assert failed.returncode == 255, output  # Alembic's exit status for a FAILED line
        assert "Traceback" not in output, output
        assert_no_password(failed)
        assert "ERROR" not in output, output  # not the FAILED line a second time, as a log
        (line,) = [line for line in output.splitlines() if line.startswith("FAILED:")]
        assert line.startswith("FAILED: This role may not create the PostgreSQL extension citext")
        assert "`CREATE EXTENSION IF NOT EXISTS citext;`" in line
        assert "Must have CREATE privilege on current database" in line
        assert "member" not in project.tables()  # rolled back: nothing half-applied
        assert extensions(url) == set()

    # Done as the line says, the same upgrade goes through.
    execute(owner_url, "CREATE EXTENSION IF NOT EXISTS citext")
    failed = project.alembic("upgrade", "head", check=False)  # pg_trgm is still missing
    assert "`CREATE EXTENSION IF NOT EXISTS pg_trgm;`" in failed.stdout
    execute(owner_url, "CREATE EXTENSION IF NOT EXISTS pg_trgm")
    project.alembic("upgrade", "head")  # IF NOT EXISTS: no right needed where it exists
    assert "member" in project.tables()
