"""A bad database URL gets one readable message, never a traceback or the password.

For each way a URL goes wrong (unreachable server, wrong password, unparseable,
unknown dialect, missing driver, empty variable), online and offline
(``--sql``), the user sees one message that names ``<PACKAGE>_DATABASE_URL``,
shows the URL with its password masked and says what to do.  Offline mode
never connects, so a URL that only fails on connecting still produces the SQL
there.  The messages are checked through Alembic's command API; the command
lines (``alembic upgrade head [--sql]``, ``python -m <package> db upgrade
head``) are checked to print them as one ``FAILED:`` line with a non-zero exit.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from alembic.util import CommandError
from harness.database import AWKWARD_PASSWORD, QUOTED_PASSWORD, assert_no_password
from harness.postgres import free_port
from harness.project import Project, Renderer
from harness.venv import make_venv, uv

QUOTED = QUOTED_PASSWORD


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
    "password as a query parameter": BadUrl(
        f"postgresql+psycopg://app@127.0.0.1:{{port}}/app?password={QUOTED}",
        "postgresql+psycopg://app@127.0.0.1:{port}/app?password=",
        "Check that the server is running and reachable",
        fails_offline=False,
    ),
    "password not URL-quoted": BadUrl(
        f"postgresql+psycopg://app:{AWKWARD_PASSWORD}@127.0.0.1:5432/app",
        "postgresql+psycopg://app:***@127.0.0.1:5432/app",
        "URL-quote special characters of the user name, password and query values",
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
    "psycopg2 driver": BadUrl(
        f"postgresql+psycopg2://app:{QUOTED}@db.example.org/app",
        "postgresql+psycopg2://app:***@db.example.org/app",
        "is not installed: pip install psycopg2-binary",
        fails_offline=False,
    ),
    "empty variable": BadUrl(
        "  ",
        None,
        "is set but empty. Set it to a SQLAlchemy URL such as",
        fails_offline=True,
    ),
}


def replace_words(text: str, words: dict[str, str]) -> str:
    for old, new in words.items():
        text = text.replace(old, new)
    return text


#: The same cases as an asyncio service's user meets them: asyncio drivers.
ASYNC_WORDS = {
    "postgresql+psycopg": "postgresql+asyncpg",
    "mysql+mysqldb": "mysql+aiomysql",
    "pip install mysqlclient": "install the Python package of the 'aiomysql' driver",
}
ASYNC_CASES = {
    name: BadUrl(
        **{
            field: replace_words(value, ASYNC_WORDS) if isinstance(value, str) else value
            for field, value in vars(case).items()
        }
    )
    for name, case in CASES.items()
} | {
    "psycopg2 driver": BadUrl(  # a synchronous driver
        f"postgresql+psycopg2://app:{QUOTED}@db.example.org/app",
        "use postgresql+asyncpg://app:***@db.example.org/app",
        "is not an asyncio driver, and this service is asyncio",
        fails_offline=True,
    )
}


COMMANDS = {
    "alembic upgrade head": ["-m", "alembic", "upgrade", "head"],
    "alembic upgrade head --sql": ["-m", "alembic", "upgrade", "head", "--sql"],
    "python -m <package> db upgrade head": ["-m", "{package}", "db", "upgrade", "head"],
}


@pytest.fixture(scope="module", params=["sync", "async"])
def service(
    request: pytest.FixtureRequest, renderer: Renderer, tmp_path_factory: pytest.TempPathFactory
) -> Project:
    """A project with its first revision (written against its SQLite default), each variant."""
    service = renderer.new(
        tmp_path_factory.mktemp("errors"),
        program_name="stock_keeper",
        use_async=request.param == "async",
    )
    service.autogenerate("create initial tables")
    return service


def cases(service: Project) -> dict[str, BadUrl]:
    """The bad URLs as the service's user writes them (asyncio drivers for an asyncio one)."""
    asyncio = "use_async: true" in (service.path / ".copier-answers.yml").read_text()
    return ASYNC_CASES if asyncio else CASES


def run(service: Project, command: str, url: str) -> subprocess.CompletedProcess[str]:
    args = [arg.format(package=service.program_name) for arg in COMMANDS[command]]
    return service.run(service.python, *args, check=False, **{service.url_env: url})


def assert_one_readable_failure(
    result: subprocess.CompletedProcess[str], service: Project, *phrases: str
) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 255, output  # Alembic's status, for `alembic` and `db` alike
    assert "Traceback" not in output, output
    assert "ERROR" not in output, output  # not the FAILED line a second time, as a log
    (failed,) = [line for line in output.splitlines() if line.startswith("FAILED:")]
    assert_readable(failed.removeprefix("FAILED: "), service, *phrases)
    assert_no_password(result)


def assert_readable(message: str, service: Project, *phrases: str) -> None:
    """One line naming the variable, saying what to do, without the password."""
    (line,) = message.splitlines()
    assert service.url_env in line, line
    for phrase in phrases:
        assert phrase in line, f"{phrase!r} not in {line!r}"
    assert_no_password(line)


@pytest.mark.parametrize("mode", ["online", "offline"])
@pytest.mark.parametrize("case", CASES)
def test_a_bad_url_fails_with_one_readable_message(service: Project, case: str, mode: str) -> None:
    bad = cases(service)[case]
    port = free_port()
    user = service.with_database(bad.url.format(port=port))

    if mode == "offline" and not bad.fails_offline:
        output = user.command("upgrade", "head", sql=True)
        assert "CREATE TABLE item" in output.stdout
        assert_no_password(*output)
        return
    with pytest.raises(CommandError) as error:
        user.command("upgrade", "head", sql=mode == "offline")
    phrases = [bad.remedy] + ([bad.shown.format(port=port)] if bad.shown else [])
    assert_readable(str(error.value), service, *phrases)


# The command lines print what the in-process test above checks, the same for both
# variants (__main__.py and Alembic's CLI do not depend on it).
@pytest.mark.parametrize("service", ["sync"], indirect=True)
@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_line_prints_it_as_one_failed_line(service: Project, command: str) -> None:
    bad = cases(service)["password not URL-quoted"]

    result = run(service, command, bad.url)

    assert_one_readable_failure(result, service, bad.remedy, str(bad.shown))


@pytest.mark.postgres
@pytest.mark.parametrize("mode", ["online", "offline"])
def test_a_wrong_password_fails_with_one_readable_message(
    service: Project, pg_url: str, mode: str
) -> None:
    wrong = quote("not-" + AWKWARD_PASSWORD, safe="")
    url = pg_url.replace(QUOTED, wrong)
    assert url != pg_url
    user = service.with_database(url)

    if mode == "offline":  # never connects
        output = user.command("upgrade", "head", sql=True)
        assert "CREATE TABLE item" in output.stdout
        assert wrong not in output.stdout + output.log
        return
    with pytest.raises(CommandError) as error:
        user.command("upgrade", "head")
    shown = pg_url.replace(QUOTED, "***")
    assert_readable(str(error.value), service, shown, "password authentication failed")
    assert wrong not in str(error.value)


@pytest.mark.postgres
@pytest.mark.parametrize("service", ["sync"], indirect=True)  # psycopg is the sync driver
def test_without_psycopg_the_message_names_the_extra_and_installing_it_works(
    service: Project, pg_url: str, tmp_path: Path
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
    uv("pip", "install", "--quiet", "--python", python, "-e", f"{service.path}[postgresql]")
    result = service.run(python, "-m", "alembic", "upgrade", "head", **{service.url_env: pg_url})
    assert_no_password(result)
    assert "Running upgrade  ->" in result.stderr
