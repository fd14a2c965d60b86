"""Helpers for the tests that race, break and inspect migrations.

``write_revision`` writes a revision file by hand, as a user does for data
migrations; ``snapshot`` captures everything a user could check in a
database (DDL and rows); ``assert_no_password`` checks a command's output.
"""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from conftest import AWKWARD_PASSWORD, Service

# Every form in which the password could leak: as typed, and URL-quoted.
PASSWORD_FORMS = (AWKWARD_PASSWORD, quote(AWKWARD_PASSWORD, safe=""))


def assert_no_password(*results: subprocess.CompletedProcess[str]) -> None:
    """The password appears in no stdout or stderr of ``results``."""
    for result in results:
        output = result.stdout + result.stderr
        for secret in PASSWORD_FORMS:
            assert secret not in output, f"password leaked by {result.args}:\n{output}"


def write_revision(
    service: Service,
    revision: str,
    down_revision: str | None,
    upgrade: str,
    downgrade: str = "pass",
    *,
    imports: str = "",
) -> Path:
    """Write ``<revision>_<...>.py`` into the service's versions folder."""

    def block(code: str) -> str:
        return textwrap.indent(textwrap.dedent(code).strip(), "    ")

    text = "\n".join(
        [
            f'"""Hand-written revision {revision}."""',
            "import sqlalchemy as sa",
            "from alembic import op",
            textwrap.dedent(imports).strip(),
            "",
            f"revision = {revision!r}",
            f"down_revision = {down_revision!r}",
            "branch_labels = None",
            "depends_on = None",
            "",
            "",
            "def upgrade() -> None:",
            block(upgrade),
            "",
            "",
            "def downgrade() -> None:",
            block(downgrade),
            "",
        ]
    )
    path = service.package / "migrations" / "versions" / f"{revision}_handwritten.py"
    path.write_text(text)
    return path


def snapshot(url: str) -> dict[str, Any]:
    """Everything a user could check: each table's DDL and rows, sequences.

    Two snapshots compare equal exactly when the database is unchanged.
    """
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as connection:
            inspector = sa.inspect(connection)
            state: dict[str, Any] = {}
            for table in sorted(inspector.get_table_names()):
                columns = [
                    (c["name"], str(c["type"]), c["nullable"], c.get("default"))
                    for c in inspector.get_columns(table)
                ]
                rows = connection.execute(sa.text(f'SELECT * FROM "{table}"')).all()
                state[table] = {
                    "columns": columns,
                    "primary key": inspector.get_pk_constraint(table),
                    "unique": sorted(map(repr, inspector.get_unique_constraints(table))),
                    "indexes": sorted(map(repr, inspector.get_indexes(table))),
                    "foreign keys": sorted(map(repr, inspector.get_foreign_keys(table))),
                    "rows": sorted(map(repr, rows)),
                }
            if engine.dialect.name == "sqlite":
                # The exact DDL SQLite keeps, temp tables of a batch rebuild included.
                master = "SELECT type, name, tbl_name, sql FROM sqlite_master"
                state["sqlite_master"] = sorted(map(repr, connection.exec_driver_sql(master)))
            else:
                state["sequences"] = sorted(inspector.get_sequence_names())
            return state
    finally:
        engine.dispose()


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` (a plain read, outside any migration)."""
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(sa.text(sql))]
    finally:
        engine.dispose()
