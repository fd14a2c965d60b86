"""`python -m <pkg> db ...` runs the migration workflow with no alembic.ini, from anywhere.

A developer with the project installed in editable mode (``pip install -e .``,
here: PYTHONPATH) works on the models from any directory, without the
alembic.ini at the project root: the command line takes its configuration from
the package.  (``db current``, ``history`` and ``downgrade`` are tested on the
installed wheel, in test_packaged_service.py.)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import NewProject
from harness.project import Project, revision_id

SUPPLIER_MODEL = '''
class Supplier(Base):
    """Someone the service buys from."""

    __tablename__ = "supplier"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
'''

Cli = Callable[..., str]


def db_cli(service: Project, cwd: Path) -> Cli:
    """``python -m <pkg> db ARGS`` run in ``cwd``: checks the exit status, returns the output."""

    def cli(*args: str, expect: int = 0) -> str:
        result = service.db(*args, check=False, cwd=cwd, PYTHONPATH=str(service.path))
        output = result.stdout + result.stderr
        assert result.returncode == expect, (
            f"db {' '.join(args)} exited {result.returncode}:\n{output}"
        )
        assert "Traceback" not in output
        return output

    return cli


def failures(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("FAILED")]


@pytest.fixture
def service(new_project: NewProject) -> Project:
    """A rendered project whose alembic.ini is gone: nothing may need it."""
    service = new_project(program_name="parts_api")
    (service.path / "alembic.ini").unlink()
    return service


def test_the_whole_workflow_runs_from_another_directory(service: Project, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cli = db_cli(service, elsewhere)

    # First revision, written into the source checkout's versions folder.
    output = cli("revision", "--autogenerate", "-m", "create item table")
    (first,) = service.versions()
    assert "op.create_table('item'" in first.read_text()
    assert first.name in output
    output = cli("check", expect=255)
    assert failures(output) == [
        "FAILED: Target database is not up to date. "
        f"Upgrade it first: `python -m {service.program_name} db upgrade head`."
    ]

    cli("upgrade", "head")
    assert service.tables() == {"item", "alembic_version"}
    assert service.version_rows() == [revision_id(first)]
    output = cli("check")
    assert "No new upgrade operations detected" in output

    # A model change without a revision: `db check` fails with one line naming it.
    service.add_to_models(SUPPLIER_MODEL)
    output = cli("check", expect=255)
    (failure,) = failures(output)
    assert failure.startswith("FAILED: New upgrade operations detected: [('add_table'")
    assert "supplier" in failure
    assert output.count("New upgrade operations detected") == 1
    assert "db revision --autogenerate" in output  # says what to do

    cli("revision", "--autogenerate", "-m", "add supplier table")
    (second,) = set(service.versions()) - {first}
    cli("upgrade", "head")
    assert service.tables() == {"item", "supplier", "alembic_version"}
    assert service.version_rows() == [revision_id(second)]

    # Nothing was read from or written to the working directory.
    assert list(elsewhere.iterdir()) == []
