"""The throwaway PostgreSQL server of tests/harness/postgres.py really works."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import require_postgres_binaries
from harness.database import AWKWARD_PASSWORD, query
from harness.postgres import PostgresCluster

pytestmark = pytest.mark.postgres


def test_role_with_awkward_password_connects(
    pg_cluster: PostgresCluster, capfd: pytest.CaptureFixture[str]
) -> None:
    pg_cluster.create_role("app_user", AWKWARD_PASSWORD)
    pg_cluster.create_database("app_db", owner="app_user")
    url = pg_cluster.url_for("app_db", user="app_user", password=AWKWARD_PASSWORD)

    assert query(url, "select current_user") == [("app_user",)]
    assert query(url, "select current_database()") == [("app_db",)]
    assert query(pg_cluster.admin_url, "select current_user") == [("postgres",)]

    pg_cluster.drop_database("app_db")
    exists = "select count(*) from pg_database where datname = 'app_db'"
    assert query(pg_cluster.admin_url, exists) == [(0,)]
    out, err = capfd.readouterr()
    assert AWKWARD_PASSWORD not in out + err


def test_wrong_password_is_rejected(pg_cluster: PostgresCluster) -> None:
    pg_cluster.create_role("wrong_pw_user", "right-password")
    pg_cluster.create_database("wrong_pw_db", owner="wrong_pw_user")
    url = pg_cluster.url_for("wrong_pw_db", user="wrong_pw_user", password="wrong")

    with pytest.raises(sa.exc.OperationalError, match="password authentication failed"):
        query(url, "select 1")


def test_stop_closes_the_port(tmp_path: Path) -> None:
    bindir = require_postgres_binaries()
    pg = PostgresCluster.start(tmp_path, bindir)
    with socket.create_connection(("127.0.0.1", pg.port), timeout=5):
        pass  # the server accepts connections

    pg.stop()

    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", pg.port), timeout=5).close()
    pg.stop()  # stopping twice is harmless
