"""A bad database URL gets one readable message, never a traceback or the password.

For each way a URL goes wrong (unreachable server, wrong password, unparseable,
unknown dialect, missing driver, empty variable) and each way of migrating
(``alembic upgrade head``, ``alembic upgrade head --sql``, ``python -m <package>
db upgrade head``), the user sees: a non-zero exit, one ``FAILED:`` line that
names ``<PACKAGE>_DATABASE_URL``, shows the URL with its password masked and
says what to do.  Offline mode (``--sql``) never connects, so a URL that only
fails on connecting still produces the SQL there.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from conftest import AWKWARD_PASSWORD, Render, Service, make_venv
from migration_helpers import assert_no_password
from postgres_cluster import free_port

QUOTED = quote(AWKWARD_PASSWORD, safe="")


@dataclass
class BadUrl:
    url: str
    shown: str | None  # the URL as the message must show it, password masked
    remedy: str  # what the message must tell the user
    fails_offline: bool  # offline mode needs no server and no driver


CASES = {
    "unreachable server": BadUrl(
        f"postgresql+psycopg://app:{QUOTED}@127.0.0.1:{{port}}/app",
        "postgresql+psycopg://app:***@127.0.0.1:{port}/app",
        "Check that the server is running and reachable",
        fails_offline=False,
    ),
    "password not URL-quoted": BadUrl(
        f"postgresql+psycopg://app:{AWKWARD_PASSWORD}@127.0.0.1:5432/app",
        "postgresql+psycopg://app:***@127.0.0.1:5432/app",
        "URL-quote special characters of the user name and password",
        fails_offline=True,
    ),
    "not a URL": BadUrl(
        f"app:{QUOTED}@db.example.org:5432/app",
        None,
        "Expected dialect[+driver]://user:password@host:port/dbname",
        fails_offline=True,
    ),
    "unknown dialect": BadUrl(  # SQLAlchemy dropped the postgres:// alias
        f"postgres://app:{QUOTED}@db.example.org/app",
        "postgres://app:***@db.example.org/app",
        "Check its spelling (for example postgresql+psycopg or sqlite)",
        fails_offline=True,
    ),
    "missing driver": BadUrl(
        f"mysql+mysqldb://app:{QUOTED}@db.example.org/app",
        "mysql+mysqldb://app:***@db.example.org/app",
        "is not installed: pip install mysqlclient",
        fails_offline=False,
    ),
    "empty variable": BadUrl(
        "  ",
        None,
        "is set but empty. Set it to a SQLAlchemy URL such as",
        fails_offline=True,
    ),
}

COMMANDS = {
    "alembic upgrade head": ["-m", "alembic", "upgrade", "head"],
    "alembic upgrade head --sql": ["-m", "alembic", "upgrade", "head", "--sql"],
    "python -m <package> db upgrade head": ["-m", "{package}", "db", "upgrade", "head"],
}


@pytest.fixture(scope="module")
def service(render_shared: Render) -> Service:
    """A service with its first revision (written against its SQLite default)."""
    service = render_shared(program_name="stock_keeper")
    service.autogenerate("create initial tables")
    return service


def run(service: Service, command: str, url: str) -> subprocess.CompletedProcess[str]:
    args = [arg.format(package=service.program_name) for arg in COMMANDS[command]]
    return service.run(service.python, *args, check=False, **{service.url_env: url})


def assert_one_readable_failure(
    result: subprocess.CompletedProcess[str], service: Service, *phrases: str
) -> None:
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    (failed,) = [line for line in result.stdout.splitlines() if line.startswith("FAILED:")]
    assert service.url_env in failed, failed
    for phrase in phrases:
        assert phrase in failed, f"{phrase!r} not in {failed!r}"
    assert_no_password(result)


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("case", CASES)
def test_a_bad_url_fails_with_one_readable_message(
    service: Service, case: str, command: str
) -> None:
    bad = CASES[case]
    port = free_port()
    url = bad.url.format(port=port)

    result = run(service, command, url)

    if command.endswith("--sql") and not bad.fails_offline:
        assert result.returncode == 0, result.stderr
        assert "CREATE TABLE item" in result.stdout
        assert_no_password(result)
        return
    phrases = [bad.remedy] + ([bad.shown.format(port=port)] if bad.shown else [])
    assert_one_readable_failure(result, service, *phrases)


@pytest.mark.postgres
@pytest.mark.parametrize("command", COMMANDS)
def test_a_wrong_password_fails_with_one_readable_message(
    service: Service, pg_url: str, command: str
) -> None:
    wrong = quote("not-" + AWKWARD_PASSWORD, safe="")
    url = pg_url.replace(QUOTED, wrong)
    assert url != pg_url

    result = run(service, command, url)

    assert wrong not in result.stdout + result.stderr
    if command.endswith("--sql"):  # never connects
        assert result.returncode == 0, result.stderr
        assert "CREATE TABLE item" in result.stdout
        return
    shown = pg_url.replace(QUOTED, "***")
    assert_one_readable_failure(result, service, shown, "password authentication failed")


@pytest.mark.postgres
def test_without_psycopg_the_message_names_the_extra_and_installing_it_works(
    service: Service, pg_url: str, tmp_path: Path
) -> None:
    """A SQLite-rendered service, installed without the PostgreSQL extra, pointed at PostgreSQL."""
    python = str(make_venv(tmp_path / "venv", "-e", str(service.path)))
    no_psycopg = service.run(python, "-c", "import psycopg", check=False)
    assert "No module named 'psycopg'" in no_psycopg.stderr
    shown = pg_url.replace(QUOTED, "***")
    project = re.search(r'^name = "(.+)"', (service.path / "pyproject.toml").read_text(), re.M)
    assert project
    extra = f"pip install '{project.group(1)}[postgresql]'"

    for command in ("alembic upgrade head", "python -m <package> db upgrade head"):
        args = [arg.format(package=service.program_name) for arg in COMMANDS[command]]
        result = service.run(python, *args, check=False, **{service.url_env: pg_url})
        assert_one_readable_failure(result, service, shown, "'psycopg'", extra)

    # The remedy the message gives, as a user in a source checkout runs it.
    install = ["uv", "pip", "install", "--quiet", "--python", python]
    subprocess.run([*install, "-e", f"{service.path}[postgresql]"], check=True, timeout=600)
    result = service.run(python, "-m", "alembic", "upgrade", "head", **{service.url_env: pg_url})
    assert_no_password(result)
    assert "Running upgrade  ->" in result.stderr
