"""Warnings in the rendered suite reach the user as themselves (issue 22, point 6).

SQLAlchemy's warnings about the models and the package's own fail the suite,
each in one line that names the model (or the line) and quotes the warning,
which says what to change; the warnings of other libraries, sqlalchemy-utils'
among them, are shown in the warnings summary.  Real Copier, real Alembic,
the rendered project's own pytest, on SQLite (the default of a new project).
"""

from __future__ import annotations

import re
import subprocess
import sys
import warnings

from conftest import NewProject
from harness.project import Project

PROGRAM = "ledger"

# Prefect's per-dialect UUID default, as it was before it set inherit_cache:
# SQLAlchemy warns the first time anything builds the class's cache key.
GENERATE_UUID = '''
import uuid as uuid_module

from sqlalchemy import Uuid
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement


class GenerateUUID(FunctionElement[uuid_module.UUID]):
    """A UUID the database generates."""

    name = "uuid_default"


@compiles(GenerateUUID, "postgresql")
@compiles(GenerateUUID)
def _uuid_postgresql(element: GenerateUUID, compiler: SQLCompiler, **kw: Any) -> str:
    return "(GEN_RANDOM_UUID())"


@compiles(GenerateUUID, "sqlite")
def _uuid_sqlite(element: GenerateUUID, compiler: SQLCompiler, **kw: Any) -> str:
    return "(lower(hex(randomblob(16))))"


class Flow(Base):
    __tablename__ = "flow"

    id: Mapped[uuid_module.UUID] = mapped_column(
        Uuid, primary_key=True, server_default=GenerateUUID()
    )
'''

# A library type that warns on every use, about the line using it (stacklevel=2).
ENCRYPTED = """
from sqlalchemy import Unicode
from sqlalchemy_utils import EncryptedType


class Secret(Base):
    __tablename__ = "secret"

    id: Mapped[int] = mapped_column(primary_key=True)
    value: Mapped[str] = mapped_column(EncryptedType(Unicode, "a key"))
"""
ENCRYPTED_WARNING = "DeprecationWarning: The 'EncryptedType' class will change implementation"

# The user's own test running the function: under `filterwarnings = error` at the
# warning's source, its first cache key was a crash (KeyError inside SQLAlchemy).
TEST_USING_THE_FUNCTION = """
from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger.models import GenerateUUID


def test_the_database_generates_a_uuid(session: Session) -> None:
    assert len(session.scalars(select(GenerateUUID())).one()) == 32
"""

INHERIT_CACHE_LINE = re.compile(
    r"^Flow \(table flow\), column id server default: SAWarning: Class GenerateUUID will not"
    r" make use of SQL compilation caching as it does not set the 'inherit_cache' attribute"
    r" .*Set this attribute to True.*$",
    re.MULTILINE,
)


def run_own_tests(project: Project) -> tuple[int, str]:
    result: subprocess.CompletedProcess[str] = project.own_tests("-v", python=sys.executable)
    return result.returncode, result.stdout + result.stderr


def outcomes(output: str) -> dict[str, str]:
    """``{test id: PASSED or FAILED}`` from pytest's ``-v`` lines."""
    return dict(re.findall(r"^(tests/\S+::\S+) (PASSED|FAILED|ERROR)", output, re.MULTILINE))


def test_sqlalchemys_warning_about_a_model_fails_in_one_line_and_a_librarys_is_shown(
    new_project: NewProject,
) -> None:
    project = new_project(program_name=PROGRAM)
    project.add_to_models(GENERATE_UUID)
    project.add_to_models(ENCRYPTED)
    (project.path / "tests" / "test_flow.py").write_text(TEST_USING_THE_FUNCTION)
    with warnings.catch_warnings():  # this process's filters make errors of it
        warnings.filterwarnings("ignore", "The 'EncryptedType' class", DeprecationWarning)
        project.autogenerate("create flow and secret")
        project.command("upgrade", "head")
    assert project.tables() >= {"flow", "secret"}

    returncode, output = run_own_tests(project)

    assert returncode == 1, output
    failed = {test for test, outcome in outcomes(output).items() if outcome != "PASSED"}
    assert failed == {"tests/test_model_warnings.py::test_the_models_raise_no_warnings"}, output
    assert "tests/test_flow.py::test_the_database_generates_a_uuid PASSED" in output
    assert len(INHERIT_CACHE_LINE.findall(output)) == 1, output  # the failure; the summary indents
    assert "KeyError" not in output and "_generated_cache_key_traversal" not in output, output
    assert "Traceback" not in output and "sqlalchemy/sql/" not in output, output
    assert_shown_not_failed(output, ENCRYPTED_WARNING)

    name = '    name = "uuid_default"'
    project.replace_in_models(name, f"{name}\n    inherit_cache = True")
    returncode, output = run_own_tests(project)

    assert returncode == 0, output
    assert set(outcomes(output).values()) == {"PASSED"}, output
    assert "inherit_cache" not in output, output
    assert_shown_not_failed(output, ENCRYPTED_WARNING)


def assert_shown_not_failed(output: str, warning: str) -> None:
    summary = output.split("warnings summary")[1].split("-- Docs:")[0]
    assert warning in summary, output
    assert "value: Mapped[str] = mapped_column(EncryptedType(" in summary  # at the user's line
    assert warning not in output.split("warnings summary")[0], output  # not among the failures


# The package's own warning, in a function a test calls; and one from another
# module whose name starts with the package's.  (At import: test_rendered_project.py.)
OWN_WARNING = """
import warnings


def legacy_total() -> int:
    warnings.warn("legacy_total() is going away: use total()", UserWarning, stacklevel=1)
    return 0
"""
LOOKALIKE = """import warnings


def helper() -> None:
    warnings.warn("ledger_tools is a different package", UserWarning, stacklevel=1)
"""
TESTS_CALLING_THEM = """
import ledger_tools

from ledger.models import legacy_total


def test_legacy_total() -> None:
    assert legacy_total() == 0


def test_lookalike() -> None:
    ledger_tools.helper()
"""


def test_the_packages_own_warning_fails_and_a_lookalike_packages_is_shown(
    new_project: NewProject,
) -> None:
    project = new_project(program_name=PROGRAM)
    project.add_to_models(OWN_WARNING)
    (project.path / "ledger_tools.py").write_text(LOOKALIKE)
    (project.path / "tests" / "test_own.py").write_text(TESTS_CALLING_THEM)
    project.autogenerate("create item")

    returncode, output = run_own_tests(project)

    assert returncode == 1, output
    failed = {test for test, outcome in outcomes(output).items() if outcome != "PASSED"}
    assert failed == {"tests/test_own.py::test_legacy_total"}, output
    assert "E       UserWarning: legacy_total() is going away: use total()" in output
    summary = output.split("warnings summary")[1]
    assert "UserWarning: ledger_tools is a different package" in summary, output
