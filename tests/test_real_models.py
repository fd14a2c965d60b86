"""A real application's models migrate the first time, on SQLite and PostgreSQL.

The zoo below is what real applications' models look like, pasted under the
template's ``Base``: composite primary keys, a self-referential foreign key,
a foreign-key cycle, a many-to-many table, ON DELETE CASCADE and SET NULL,
Booleans and Enums (native and not), JSON, Numeric, timezone-aware DateTime,
server defaults, an Identity column, unique constraints sharing a first
column, unnamed CHECK constraints, multi-column indexes, names past
PostgreSQL's 63 bytes, tables named ``user``, ``order`` and ``group``, a
column comment; and what stopped real applications' first revision: their own
TypeDecorators (in models.py and a module, one with ``load_dialect_impl``), a
sqlalchemy-utils type, a foreign-key cycle without ``use_alter``, an index
with DESC and expression columns, a ``@compiles`` server default, CITEXT and
a trigram index (PostgreSQL extensions).  The story, on each backend: autogenerate → upgrade → check
(three times: it must be deterministic) → the project's own test suite passes
against the backend → downgrade base leaves nothing → upgrade again → a second
change (a column with a server default, an index, a foreign key to an existing
table) → check → downgrade one step.
"""

from __future__ import annotations

import re
import sys
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext

import pytest
import sqlalchemy as sa
from alembic.util import CommandError
from conftest import NewProject
from harness.database import assert_no_password, query
from harness.project import Project

ZOO = """
import enum
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Computed,
    Column,
    DateTime,
    Enum,
    ForeignKey,
    Identity,
    Index,
    LargeBinary,
    Numeric,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects import postgresql

from shop.column_types import UTCDateTime


class Role(enum.Enum):
    admin = "admin"
    member = "member"


class Status(enum.Enum):
    draft = "draft"
    placed = "placed"
    shipped = "shipped"


class User(Base):
    __tablename__ = "user"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True, comment="Lowercased login")
    role: Mapped[Role] = mapped_column(Enum(Role, name="user_role"))
    is_active: Mapped[bool] = mapped_column(Boolean(create_constraint=True), default=True)
    # A cycle: user.current_team_id -> team, team.owner_id -> user.
    current_team_id: Mapped[int | None] = mapped_column(
        ForeignKey("team.id", use_alter=True, ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


# A functional index: SQLite cannot report it back to autogenerate.
Index("ix_user_email_lower", func.lower(User.email))


class Team(Base):
    __tablename__ = "team"
    # Two unique constraints starting with the same column.
    __table_args__ = (UniqueConstraint("owner_id", "name"), UniqueConstraint("owner_id", "slug"))

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    slug: Mapped[str] = mapped_column(String(100))


team_member = Table(
    "team_member",
    Base.metadata,
    Column("team_id", ForeignKey("team.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", ForeignKey("user.id", ondelete="CASCADE"), primary_key=True),
)


class Group(Base):
    __tablename__ = "group"
    __table_args__ = (UniqueConstraint("parent_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("group.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))


class Order(Base):
    __tablename__ = "order"
    __table_args__ = (
        CheckConstraint("total >= 0"),
        CheckConstraint("total < 1000000"),
        CheckConstraint("placed_at IS NOT NULL OR status = 'draft'", name="placed_when_not_draft"),
        Index("ix_order_user_id_placed_at", "user_id", "placed_at"),
        # A partial unique index: one draft order per user.
        Index(
            "ix_order_one_draft", "user_id", unique=True, postgresql_where=text("status = 'draft'")
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("user.id", ondelete="SET NULL"), index=True
    )
    status: Mapped[Status] = mapped_column(
        Enum(Status, native_enum=False, create_constraint=True, length=20),
        server_default="draft",
    )
    previous_status: Mapped[Status | None] = mapped_column(
        Enum(Status, native_enum=False, create_constraint=True, length=20)
    )
    total: Mapped[Decimal] = mapped_column(Numeric(12, 2), server_default=text("0"))
    is_gift: Mapped[bool] = mapped_column(Boolean(create_constraint=True), default=False)
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    note: Mapped[str | None] = mapped_column(Text)
    placed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A custom type from the package's column_types.py: the revision imports it.
    shipped_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class OrderLine(Base):
    __tablename__ = "order_line"

    order_id: Mapped[int] = mapped_column(
        ForeignKey("order.id", ondelete="CASCADE"), primary_key=True
    )
    line_number: Mapped[int] = mapped_column(primary_key=True)
    quantity: Mapped[int] = mapped_column(CheckConstraint("quantity > 0"), server_default="1")
    # A generated column: with a compare_server_default callable Alembic fails on it.
    double_quantity: Mapped[int] = mapped_column(Computed("quantity * 2", persisted=True))


class ApiToken(Base):
    __tablename__ = "api_token"
    __table_args__ = {"comment": "Tokens for the public API"}

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    digest: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True, index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    # A variant: JSONB on PostgreSQL, whose rendering names Text().
    claims: Mapped[dict[str, Any]] = mapped_column(
        JSON().with_variant(postgresql.JSONB(), "postgresql"), default=dict
    )


class LoyaltyProgrammeMembershipHistoryEntry(Base):
    __tablename__ = "customer_loyalty_programme_membership_history_entries_archive"
    __table_args__ = (
        UniqueConstraint(
            "originating_customer_account_reference_identifier",
            "membership_tier_at_time_of_recording_description",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    originating_customer_account_reference_identifier: Mapped[int] = mapped_column(
        ForeignKey("user.id", ondelete="CASCADE"), index=True
    )
    membership_tier_at_time_of_recording_description: Mapped[str] = mapped_column(String(50))
"""

# What stopped real applications' first autogenerate or upgrade: a library's
# column type, a foreign-key cycle without use_alter, a DESC column in an index
# (with an expression too), a server default compiled per dialect, CITEXT and a
# trigram index (PostgreSQL extensions).  With OWN_TYPES and TYPES_IN_MODELS:
# TypeDecorators in models.py and in a module, one with load_dialect_impl.
REAL_APPLICATIONS = """
from sqlalchemy.dialects.postgresql import CITEXT
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement
from sqlalchemy_utils import EmailType, EncryptedType


class GenerateUUID(FunctionElement[str]):
    \"\"\"A random id, made by the database (Prefect's pattern).\"\"\"

    name = "uuid_default"
    inherit_cache = True


@compiles(GenerateUUID, "postgresql")
def _uuid_on_postgresql(element: Any, compiler: Any, **kw: Any) -> str:
    return "(GEN_RANDOM_UUID())"


@compiles(GenerateUUID, "sqlite")
def _uuid_on_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
    return "(lower(hex(randomblob(16))))"


class Member(Base):
    __tablename__ = "member"
    __table_args__ = (
        Index(
            "ix_member_handle_trgm",
            "handle",
            postgresql_using="gin",
            postgresql_ops={"handle": "gin_trgm_ops"},
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # A cycle without use_alter: member.crew_id -> crew, crew.captain_id -> member.
    crew_id: Mapped[int | None] = mapped_column(ForeignKey("crew.id"))
    handle: Mapped[str] = mapped_column(String(50).with_variant(CITEXT(), "postgresql"))
    email: Mapped[str | None] = mapped_column(EmailType)
    secret: Mapped[str | None] = mapped_column(EncryptedType(String, "a key"))
    key: Mapped[str] = mapped_column(String(20))
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    token: Mapped[str] = mapped_column(String(36), server_default=GenerateUUID())


class Crew(Base):
    __tablename__ = "crew"

    id: Mapped[int] = mapped_column(primary_key=True)
    captain_id: Mapped[int | None] = mapped_column(ForeignKey("member.id"))


Index("ix_member_key_created_desc", Member.key, Member.created.desc())
Index("ix_member_key_lower_created_desc", func.lower(Member.key), Member.created.desc())
"""

# The second change, on tables that already hold the first revision.
SECOND_CHANGE = """

class Shipment(Base):
    __tablename__ = "shipment"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("order.id", ondelete="CASCADE"))
    carrier: Mapped[str] = mapped_column(String(40), server_default="post", index=True)


# An expression index on a table that already exists.
Index("ix_team_slug_lower", func.lower(Team.slug))
"""

TABLES = {
    "item",  # the template's example, kept
    "user",
    "team",
    "team_member",
    "group",
    "order",
    "order_line",
    "customer_loyalty_programme_membership_history_entries_archive",
    "api_token",
    "tag",
    "member",
    "crew",
}


@pytest.fixture
def zoo(request: pytest.FixtureRequest, new_project: NewProject, backend_url: str) -> Project:
    """The zoo's models in a new service; an asyncio one where the test says so (indirect)."""
    project = new_project(database_url=backend_url, **getattr(request, "param", {}))
    add_the_zoo(project)
    return project


def add_the_zoo(project: Project) -> None:
    project.add_to_models(ZOO)
    for path, code in OWN_TYPES.items():
        (project.path / path).write_text(code)
    project.add_to_models(TYPES_IN_MODELS + REAL_APPLICATIONS)


#: A member, its token from the database's own default.
MEMBER_WITH_A_DEFAULT_TOKEN = (
    "INSERT INTO member (handle, key, created) VALUES ('Ann', 'k', CURRENT_TIMESTAMP) "
    "RETURNING token"
)


def enum_types(project: Project) -> list[str]:
    if not project.database_url.startswith("postgresql"):
        return []
    return [
        row[0]
        for row in query(project.database_url, "SELECT typname FROM pg_type WHERE typtype = 'e'")
    ]


def assert_clean(project: Project, expression_index: bool = True, times: int = 3) -> None:
    """`alembic check` finds nothing, every time it is asked.

    ``expression_index``: the models hold one (SQLite then warns it skips it).
    """
    for _ in range(times):
        with expression_index_warning(project) if expression_index else nullcontext():
            output = project.command("check")
        assert "No new upgrade operations detected" in output.stdout


def on_sqlite(project: Project) -> bool:
    return project.database_url.startswith("sqlite")


@contextmanager
def expression_index_warning(project: Project) -> Iterator[None]:
    """On SQLite, Alembic says it skips the functional index (it cannot reflect it).

    Those warnings, and no other, are expected.
    """
    if not on_sqlite(project):
        yield
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    messages = [str(warning.message) for warning in caught]
    assert any("skipping metadata-specified expression-based index" in m for m in messages)
    about_the_index = re.compile(
        r"expression-based index '?ix_(user_email|team_slug|member_key)_lower"
    )
    library = "The 'EncryptedType' class will change"  # sqlalchemy-utils, at every use
    assert [m for m in messages if not about_the_index.search(m) and library not in m] == []


def index_names(project: Project) -> set[str]:
    if on_sqlite(project):
        sql = "SELECT name FROM sqlite_master WHERE type = 'index'"
    else:
        sql = "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'"
    return {row[0] for row in query(project.database_url, sql)}


def check_conditions(project: Project, table: str) -> str:
    """The table's CHECK conditions, as the database reports them."""
    engine = project.engine()
    try:
        return " | ".join(c["sqltext"] for c in sa.inspect(engine).get_check_constraints(table))
    finally:
        engine.dispose()


def functional_indexes(project: Project) -> list[str]:
    if on_sqlite(project):
        sql = "SELECT name FROM sqlite_master WHERE type = 'index' AND sql LIKE '%lower(email)%'"
    else:
        sql = "SELECT indexname FROM pg_indexes WHERE indexdef LIKE '%lower(%email%'"
    return [row[0] for row in query(project.database_url, sql)]


@pytest.fixture
def sqlite_expression_index_warnings_allowed(zoo: Project) -> Iterator[None]:
    """What the rendered pyproject.toml allows too: SQLite reflecting the functional index,
    sqlalchemy-utils saying its EncryptedType will change (a library's warning)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The 'EncryptedType' class", DeprecationWarning)
        if on_sqlite(zoo):
            warnings.filterwarnings("ignore", message=".*expression-based index '?ix_")
        yield


def assert_own_suite_passes_on_an_empty_database(
    zoo: Project, request: pytest.FixtureRequest
) -> None:
    """The project's own suite against an empty database of the zoo's backend, left empty."""
    if zoo.database_url.startswith("postgresql"):
        test_url = request.getfixturevalue("new_pg_url")()
    else:
        test_url = f"sqlite:///{zoo.path.parent / 'own-suite.sqlite'}"
    test_url_env = {f"{zoo.program_name.upper()}_TEST_DATABASE_URL": test_url}
    suite = zoo.own_tests("-q", python=sys.executable, **test_url_env)
    assert suite.returncode == 0, suite.stdout + suite.stderr
    assert " passed" in suite.stdout and "failed" not in suite.stdout
    assert_no_password(suite)  # the test database's URL holds the awkward password
    assert zoo.with_database(test_url).tables() == set()  # the suite wiped its database
    if not on_sqlite(zoo):  # its ENUM types (up/down consistency, create_schema) too
        assert query(test_url, "SELECT typname FROM pg_type WHERE typtype = 'e'") == []


@pytest.mark.usefixtures("sqlite_expression_index_warnings_allowed")
@pytest.mark.parametrize("zoo", [{}, {"use_async": True}], ids=["sync", "async"], indirect=True)
def test_real_models_migrate_the_first_time(zoo: Project, request: pytest.FixtureRequest) -> None:
    with expression_index_warning(zoo):
        first = zoo.autogenerate("real models")
    # UTCDateTime (column_types.py) as what it stores: revisions never import the package.
    assert "sa.DateTime(timezone=True)" in first.read_text()
    assert "import shop" not in first.read_text()
    assert "from sqlalchemy import Text" in first.read_text()  # for JSONB(astext_type=Text())
    # Written on both backends, though SQLite cannot report it back.
    assert "create_index('ix_user_email_lower'" in first.read_text()
    # Each index once, though SQLite reflects a DESC column and not an expression.
    for index in ("ix_member_key_created_desc", "ix_member_key_lower_created_desc"):
        assert first.read_text().count(f"create_index('{index}'") == 1
    # The cycle's foreign key that would wait for a later table comes after the tables.
    assert "create_foreign_key(batch_op.f('fk_member_crew_id_crew'), 'crew'" in first.read_text()
    # The @compiles default, as each backend compiles it; citext and pg_trgm on PostgreSQL.
    assert (
        "'postgresql': '(GEN_RANDOM_UUID())'}[op.get_context().dialect.name]" in first.read_text()
    )
    assert "CREATE EXTENSION IF NOT EXISTS citext" in first.read_text()
    assert "CREATE EXTENSION IF NOT EXISTS pg_trgm" in first.read_text()
    output = zoo.command("upgrade", "head")
    assert_no_password(*output)
    assert zoo.tables() == TABLES | {"alembic_version"}
    assert functional_indexes(zoo) == ["ix_user_email_lower"]
    assert {"ix_member_key_created_desc", "ix_member_key_lower_created_desc"} <= index_names(zoo)
    assert len(query(zoo.database_url, MEMBER_WITH_A_DEFAULT_TOKEN)[0][0]) in (32, 36)
    assert "quantity > 0" in check_conditions(zoo, "order_line")  # given on the column
    assert_clean(zoo)

    # The project's own suite (the sync variant's: the asyncio one's runs in
    # test_rendered_project.py, and what it adds is the connection, not the models).
    if not request.node.callspec.params["zoo"].get("use_async"):
        assert_own_suite_passes_on_an_empty_database(zoo, request)

    # Down to nothing, and up again.
    zoo.command("downgrade", "base")
    assert zoo.tables() == {"alembic_version"}
    assert enum_types(zoo) == []
    zoo.command("upgrade", "head")
    assert zoo.tables() == TABLES | {"alembic_version"}
    assert functional_indexes(zoo) == ["ix_user_email_lower"]

    # A second change on tables that exist: a new table with a foreign key to
    # one of them, a column with a server default and an index.
    zoo.add_to_models(SECOND_CHANGE)
    zoo.replace_in_models(
        "    slug: Mapped[str] = mapped_column(String(100))\n",
        "    slug: Mapped[str] = mapped_column(String(100))\n"
        '    plan: Mapped[str] = mapped_column(String(20), server_default="free", index=True)\n'
        '    seats: Mapped[int] = mapped_column(CheckConstraint("seats > 0"), server_default="9")'
        "\n",
    )
    with expression_index_warning(zoo):
        second = zoo.autogenerate("shipments, team plans").read_text()
    assert "op.create_table('shipment'" in second
    assert "sa.Column('plan'" in second
    assert "op.f('ix_team_plan')" in second
    assert "create_check_constraint(" in second  # given on the column: alembic #1600
    assert "create_index('ix_team_slug_lower'" in second
    zoo.command("upgrade", "head")
    assert_clean(zoo)
    assert "plan" in zoo.columns("team")
    assert "ix_team_slug_lower" in index_names(zoo)
    assert "seats > 0" in check_conditions(zoo, "team")
    zoo.command("downgrade", "-1")
    assert "seats > 0" not in check_conditions(zoo, "team")
    assert "ix_team_slug_lower" not in index_names(zoo)
    assert "shipment" not in zoo.tables()
    assert "plan" not in zoo.columns("team")
    assert first.exists()


ENUM_MODEL = """
import enum

from sqlalchemy import Enum


class Mood(enum.Enum):
    happy = "happy"
    grumpy = "grumpy"


class Review(Base):
    __tablename__ = "review"

    id: Mapped[int] = mapped_column(primary_key=True)
    mood: Mapped[Mood] = mapped_column(Enum(Mood, name="review_mood"))
"""


def labels(project: Project) -> list[str]:
    """The values of the review_mood type, in order."""
    sql = (
        "SELECT enumlabel FROM pg_enum JOIN pg_type ON pg_type.oid = enumtypid "
        "WHERE typname = 'review_mood' ORDER BY enumsortorder"
    )
    return [row[0] for row in query(project.database_url, sql)]


@pytest.mark.postgres
def test_postgresql_enum_values_follow_the_models(new_project: NewProject, pg_url: str) -> None:
    """Create, extend, shrink and drop an ENUM type, all from autogenerate."""
    project = new_project(database_url=pg_url)
    project.add_to_models(ENUM_MODEL)
    created = project.autogenerate("add review").read_text()
    assert "drop(op.get_bind())" in created  # the downgrade drops the type
    project.command("upgrade", "head")
    assert labels(project) == ["happy", "grumpy"]

    # (The project's own suite with ENUMs: the zoo's, in the test above.)

    project.replace_in_models(
        '    grumpy = "grumpy"\n', '    grumpy = "grumpy"\n    sleepy = "sleepy"\n'
    )
    assert "add_enum_value" in project.autogenerate("sleepy reviews").read_text()
    project.command("upgrade", "head")
    assert labels(project) == ["happy", "grumpy", "sleepy"]
    assert_clean(project)

    project.replace_in_models('    grumpy = "grumpy"\n', "")
    assert "sync_enum_values" in project.autogenerate("no grumpy reviews").read_text()
    project.command("upgrade", "head")
    assert labels(project) == ["happy", "sleepy"]
    assert_clean(project)

    project.command("downgrade", "base")
    assert project.tables() == {"alembic_version"}
    assert enum_types(project) == []


#: The application's own column types, as real services define them: in models.py
#: and in a module of the package, from ``impl`` or per backend (``load_dialect_impl``).
OWN_TYPES = {
    "shop/own_types.py": """
from sqlalchemy import String
from sqlalchemy.types import TypeDecorator


class LowerCaseString(TypeDecorator[str]):
    impl = String(100)
    cache_ok = True

    def process_bind_param(self, value, dialect):  # type: ignore[no-untyped-def]
        return None if value is None else value.lower()
""",
}
TYPES_IN_MODELS = """
import json
import uuid as uuid_module

from sqlalchemy import CHAR, JSON, Text
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import TypeDecorator

from shop.own_types import LowerCaseString


class GUID(TypeDecorator[uuid_module.UUID]):
    \"\"\"UUID on PostgreSQL, CHAR(32) elsewhere (SQLAlchemy's classic recipe).\"\"\"

    impl = CHAR(32)
    cache_ok = True

    def load_dialect_impl(self, dialect):  # type: ignore[no-untyped-def]
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.UUID())
        return dialect.type_descriptor(CHAR(32))

    def process_bind_param(self, value, dialect):  # type: ignore[no-untyped-def]
        if value is None or dialect.name == "postgresql":
            return value
        return uuid_module.UUID(str(value)).hex

    def process_result_value(self, value, dialect):  # type: ignore[no-untyped-def]
        return None if value is None else uuid_module.UUID(str(value))


class JSONDocument(TypeDecorator[dict[str, Any]]):
    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect):  # type: ignore[no-untyped-def]
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.JSONB())
        return dialect.type_descriptor(JSON())


class Tag(Base):
    __tablename__ = "tag"

    id: Mapped[uuid_module.UUID] = mapped_column(GUID(), primary_key=True)
    name: Mapped[str] = mapped_column(LowerCaseString())
    data: Mapped[dict[str, Any]] = mapped_column(JSONDocument())
"""


def test_own_column_types_anywhere_migrate_and_outlive_a_rename(
    new_project: NewProject, backend_url: str
) -> None:
    """TypeDecorators in models.py and in a module: the revision writes what each stores,
    imports nothing of the package, and still builds a database once they are renamed."""
    project = new_project(database_url=backend_url)
    for path, code in OWN_TYPES.items():
        (project.path / path).write_text(code)
    project.add_to_models("from typing import Any\n" + TYPES_IN_MODELS)

    revision = project.autogenerate("tags").read_text()

    assert "import shop" not in revision and "shop." not in revision
    assert "sa.CHAR(length=32).with_variant(sa.UUID(), 'postgresql')" in revision
    # (Text() or sa.Text(): Alembic's PostgreSQL renderer says sa., SQLite's not.)
    json_variant = (
        r"JSON\(\)\.with_variant\(postgresql\.JSONB\(astext_type=(sa\.)?Text\(\)\), 'postgresql'\)"
    )
    assert re.search(json_variant, revision)
    assert "sa.Column('name', sa.String(length=100)" in revision
    project.command("upgrade", "head")
    assert_clean(project, expression_index=False)
    tag = uuid.uuid4()
    engine = project.engine()
    with engine.begin() as connection:  # the column takes what the type binds
        stored = tag.hex if on_sqlite(project) else str(tag)
        connection.execute(sa.text(f"INSERT INTO tag VALUES ('{stored}', 'x', '{{}}')"))
    engine.dispose()

    # The types renamed and moved (GUID into own_types.py as Uuid32): the revision
    # never knew them, so a fresh database still comes to head, and nothing changed.
    moved = TYPES_IN_MODELS.replace("class GUID(", "class Uuid32(").replace("GUID()", "Uuid32()")
    project.replace_in_models(
        "from typing import Any\n" + TYPES_IN_MODELS, "from typing import Any\n" + moved
    )
    (project.path / "shop" / "own_types.py").rename(project.path / "shop" / "string_types.py")
    project.replace_in_models("from shop.own_types import", "from shop.string_types import")
    fresh = project.with_database(
        f"sqlite:///{project.path.parent / 'fresh.sqlite'}"
        if on_sqlite(project)
        else project.database_url
    )
    if not on_sqlite(project):
        fresh.command("downgrade", "base")
    fresh.command("upgrade", "head")
    assert fresh.tables() == {"alembic_version", "item", "tag"}
    assert_clean(fresh, expression_index=False)


USER_DEFINED_TYPE_IN_MODELS = """
from sqlalchemy.types import UserDefinedType


class Point(UserDefinedType[tuple[float, float]]):
    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "POINT"


class Place(Base):
    __tablename__ = "place"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[tuple[float, float]] = mapped_column(Point())
"""


def test_a_user_defined_type_in_models_py_stops_autogenerate_with_the_fix(
    new_project: NewProject,
) -> None:
    """Its DDL is its own code: a revision would import models.py (or fail with NameError)."""
    project = new_project()
    project.add_to_models("from typing import Any\n" + USER_DEFINED_TYPE_IN_MODELS)

    with pytest.raises(CommandError) as error:
        project.autogenerate("places")

    (line,) = str(error.value).splitlines()
    assert line.startswith("Column place.at has the type Point from shop.models,")
    assert "move it to shop/column_types.py" in line
    assert project.versions() == []  # no revision written


DEFAULTS_MODEL = """
import uuid

from sqlalchemy import Uuid, text


class Thing(Base):
    __tablename__ = "thing"

    id: Mapped[int] = mapped_column(primary_key=True)
    label: Mapped[str] = mapped_column(String(20), server_default="")
    state: Mapped[str] = mapped_column(String(20), server_default=text("'active'"))
    made_at: Mapped[datetime] = mapped_column(server_default=text("CURRENT_TIMESTAMP"))
    touched_at: Mapped[datetime] = mapped_column(server_default=func.now())
"""
# A quote inside a literal (on PostgreSQL Alembic 1.20.1 cannot compare it at all:
# its own comparison query is not escaped).
QUOTED_DEFAULT = """
    motto: Mapped[str] = mapped_column(String(20), server_default="it's")
"""
# PostgreSQL rewrites it as gen_random_uuid(), and no two calls are equal.
RANDOM_DEFAULT = """
    token: Mapped[uuid.UUID] = mapped_column(Uuid, server_default=func.gen_random_uuid())
"""


def test_server_defaults_are_compared_without_false_positives(
    new_project: NewProject, backend_url: str
) -> None:
    """Unchanged defaults stay unchanged, however the server rewrites them; changes show."""
    project = new_project(database_url=backend_url)
    backend_only = QUOTED_DEFAULT if on_sqlite(project) else RANDOM_DEFAULT
    project.add_to_models(DEFAULTS_MODEL + backend_only)
    project.autogenerate("things")
    project.command("upgrade", "head")
    assert_clean(project, expression_index=False, times=1)

    for old, new in [
        ("'active'", "'Active'"),  # a literal's case is its value
        ('server_default=""', 'server_default="none"'),
        ('text("CURRENT_TIMESTAMP")', """text("'2026-01-01 00:00:00'")"""),
    ]:
        project.replace_in_models(old, new)
        with pytest.raises(CommandError, match="modify_default"):
            project.command("check")
        project.replace_in_models(new, old)
    assert_clean(project, expression_index=False, times=1)


MEMBER_MODEL = """
from sqlalchemy import Index, text


class Member(Base):
    __tablename__ = "member"
    __table_args__ = (
        Index("ix_member_email_active", "email", unique=True, postgresql_where=text("is_active")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(100))
    is_active: Mapped[bool] = mapped_column(default=True)
"""


def test_a_partial_unique_index_means_the_same_on_both_backends(
    new_project: NewProject, backend_url: str
) -> None:
    """Unique among active members only: SQLite must not make it unique among all."""
    project = new_project(database_url=backend_url)
    project.add_to_models(MEMBER_MODEL)
    revision = project.autogenerate("members").read_text()
    assert "sqlite_where=sa.text('is_active')" in revision
    project.command("upgrade", "head")
    assert_clean(project, expression_index=False, times=1)

    engine = project.engine()
    try:
        insert = "INSERT INTO member (email, is_active) VALUES ('ada@example.org', {})"
        with engine.begin() as connection:
            for active in ("false", "false", "true"):  # inactive duplicates are fine
                connection.execute(sa.text(insert.format(active)))
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as connection:
            connection.execute(sa.text(insert.format("true")))
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_revisions_generated_on_sqlite_upgrade_postgresql_and_check_clean_on_both(
    new_project: NewProject, new_pg_url: Callable[[], str]
) -> None:
    """The default workflow: generate on the SQLite file, deploy to PostgreSQL."""
    zoo = new_project()
    add_the_zoo(zoo)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*expression-based index '?ix_")
        warnings.filterwarnings("ignore", "The 'EncryptedType' class", DeprecationWarning)
        with expression_index_warning(zoo):
            revision = zoo.autogenerate("real models").read_text()
        # What SQLite compiles for the @compiles default, and PostgreSQL's own.
        assert "'sqlite': '(lower(hex(randomblob(16))))'" in revision
        assert "CREATE EXTENSION IF NOT EXISTS citext" in revision
        zoo.command("upgrade", "head")
        postgresql = zoo.with_database(new_pg_url())

        postgresql.command("upgrade", "head")

        assert postgresql.tables() == TABLES | {"alembic_version"}
        assert functional_indexes(postgresql) == ["ix_user_email_lower"]
        assert_clean(zoo, times=5)
        assert_clean(postgresql, times=5)

        # Down and up again there: the native ENUM type goes with its table.
        postgresql.command("downgrade", "base")
        assert postgresql.tables() == {"alembic_version"}
        assert enum_types(postgresql) == []
        postgresql.command("upgrade", "head")
        assert postgresql.tables() == TABLES | {"alembic_version"}


SHARED_ENUMS = """
import enum

from sqlalchemy import Enum
from sqlalchemy.dialects import postgresql


class Kind(enum.Enum):
    x = "x"
    y = "y"


class Mood(enum.Enum):  # used from the second revision on
    happy = "happy"
    sad = "sad"


class Part(Base):
    __tablename__ = "part"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[Kind] = mapped_column(Enum(Kind, name="kind"))


class Tool(Base):
    __tablename__ = "tool"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[Kind] = mapped_column(Enum(Kind, name="kind"))
    flavor: Mapped[str] = mapped_column(
        String(10).with_variant(postgresql.ENUM("sweet", "sour", name="flavor"), "postgresql")
    )
"""
# Then: a new ENUM type on a column added to an existing table, and a new
# table using the existing type.
MORE_ENUMS = """
class Bin(Base):
    __tablename__ = "bin"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[Kind] = mapped_column(Enum(Kind, name="kind"))
"""


@pytest.mark.postgres
def test_enum_types_of_revisions_generated_on_sqlite_come_and_go_on_postgresql(
    new_project: NewProject, pg_url: str
) -> None:
    """Created once, before their first column; dropped after their last; one revision at a time."""
    project = new_project()
    project.add_to_models(SHARED_ENUMS)
    first = project.autogenerate("parts and tools").read_text()
    project.command("upgrade", "head")
    project.add_to_models(MORE_ENUMS)
    project.replace_in_models(
        '    kind: Mapped[Kind] = mapped_column(Enum(Kind, name="kind"))\n\n\nclass Tool',
        '    kind: Mapped[Kind] = mapped_column(Enum(Kind, name="kind"))\n'
        '    mood: Mapped[Mood | None] = mapped_column(Enum(Mood, name="mood"))\n\n\nclass Tool',
    )
    second = project.autogenerate("bins, moods").read_text()
    assert first.count("name='kind').create(op.get_bind())") == 1  # one type, two tables
    assert "name='kind').create(" not in second  # the database has it already
    assert "name='mood').create(op.get_bind())" in second

    postgresql = project.with_database(pg_url)
    postgresql.command("upgrade", "+1")  # each revision in its own run, as deploys go
    assert sorted(enum_types(postgresql)) == ["flavor", "kind"]
    postgresql.command("upgrade", "+1")
    assert sorted(enum_types(postgresql)) == ["flavor", "kind", "mood"]
    postgresql.command("downgrade", "-1")
    assert sorted(enum_types(postgresql)) == ["flavor", "kind"]
    postgresql.command("downgrade", "base")
    assert enum_types(postgresql) == []
    postgresql.command("upgrade", "head")
    assert postgresql.tables() == {"item", "part", "tool", "bin", "alembic_version"}
    assert "mood" in postgresql.columns("part")
    # And on SQLite, where those operations do nothing.
    project.command("downgrade", "base")
    project.command("upgrade", "head")
    assert_clean(project, expression_index=False)


CHECKED_COLUMNS = """
import enum

from sqlalchemy import Boolean, Enum


class Size(enum.Enum):
    small = "small"
    large = "large"


class Parcel(Base):
    __tablename__ = "parcel"

    id: Mapped[int] = mapped_column(primary_key=True)
    fragile: Mapped[bool] = mapped_column(Boolean(create_constraint=True))
    size: Mapped[Size] = mapped_column(Enum(Size, native_enum=False, create_constraint=True))
"""


def check_names(project: Project) -> set[str]:
    engine = project.engine()
    try:
        return {str(c["name"]) for c in sa.inspect(engine).get_check_constraints("parcel")}
    finally:
        engine.dispose()


def test_dropping_a_column_with_a_check_upgrades_and_downgrades(
    new_project: NewProject, backend_url: str
) -> None:
    """Boolean and non-native Enum columns carry CHECKs: dropping them works both ways."""
    project = new_project(database_url=backend_url)
    project.add_to_models(CHECKED_COLUMNS)
    project.autogenerate("parcels")
    project.command("upgrade", "head")
    before = check_names(project)
    assert "ck_parcel_size" in before

    project.replace_in_models(
        "    fragile: Mapped[bool] = mapped_column(Boolean(create_constraint=True))\n", ""
    )
    project.replace_in_models(
        "    size: Mapped[Size] = mapped_column("
        "Enum(Size, native_enum=False, create_constraint=True))\n",
        "",
    )
    revision = project.autogenerate("no fragile, no size").read_text()
    assert "drop_constraint(batch_op.f('ck_parcel_size'), type_='check')" in revision
    project.command("upgrade", "head")
    assert project.columns("parcel") == {"id"}
    assert check_names(project) == set()
    assert_clean(project, expression_index=False, times=1)

    project.command("downgrade", "-1")
    assert project.columns("parcel") == {"id", "fragile", "size"}
    assert check_names(project) == before
