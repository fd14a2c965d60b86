"""What a user could check in a database, and a password that must never show.

``snapshot`` captures everything a user could see (DDL and rows), so two
snapshots compare equal exactly when the database is unchanged; ``query``
reads rows; ``assert_no_password`` checks a command's output for the test
role's password, which holds every character that means something in a URL.
"""

from __future__ import annotations

import subprocess
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa

# Every character with a meaning in a URL: the rendered project must cope.
AWKWARD_PASSWORD = "p%w@:/?#x"
QUOTED_PASSWORD = quote(AWKWARD_PASSWORD, safe="")

# Every form in which the password could leak: as typed, and URL-quoted.
PASSWORD_FORMS = (AWKWARD_PASSWORD, QUOTED_PASSWORD)


def assert_no_password(*results: subprocess.CompletedProcess[str] | str) -> None:
    """The password appears in no output of ``results`` (processes or text)."""
    for result in results:
        output = result if isinstance(result, str) else result.stdout + result.stderr
        for secret in PASSWORD_FORMS:
            assert secret not in output, f"password leaked:\n{output}"


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` (a plain read, outside any migration)."""
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(sa.text(sql))]
    finally:
        engine.dispose()


def snapshot(url: str) -> dict[str, Any]:
    """Everything a user could check: each table's DDL and rows, sequences."""
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
