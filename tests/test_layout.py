"""The rendered package: the service's code in front, the template's machinery in one place.

env.py stays Alembic's own template plus short patches (held to a bound
against the installed Alembic's template, so it cannot drift); the commands
that only migrate load none of the autogenerate machinery; the rendered
README's tree lists exactly the files a copy has.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

import alembic
import pytest
from conftest import VARIANTS, NewProject
from harness.project import revision_id

#: Lines env.py may add to Alembic's own template, comments included (issue: <= 80).
MAX_ADDED_LINES = 80

#: Alembic's template each variant's env.py starts from.
UPSTREAM = {"sync": "generic", "async": "async"}


def non_blank(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("variant_name", list(VARIANTS))
def test_env_py_is_alembics_template_with_short_patches(
    new_project: NewProject, variant_name: str
) -> None:
    project = new_project(**VARIANTS[variant_name])
    stock = Path(alembic.__file__).parent / "templates" / UPSTREAM[variant_name] / "env.py"
    ours = project.env_py.read_text()
    diff = list(difflib.ndiff(non_blank(stock.read_text()), non_blank(ours)))
    added = [line[2:] for line in diff if line.startswith("+ ")]
    assert len(added) <= MAX_ADDED_LINES, "\n".join(added)
    # Alembic's own structure is all there: its functions and its closing dispatch.
    kept = [line[2:] for line in diff if line.startswith("  ")]
    for line in ("def run_migrations_offline() -> None:", "if context.is_offline_mode():"):
        assert line in kept
    if variant_name == "async":
        assert "def do_run_migrations(connection: Connection) -> None:" in kept
    # Every patch says why, in a comment at most a few lines above it: no
    # uncommented run of added code longer than a short block.
    run = longest = 0
    for line in added:
        comment = line.lstrip().startswith("#") or line.lstrip().startswith('"""')
        run = 0 if comment else run + 1
        longest = max(longest, run)
    assert longest <= 12, "a long uncommented patch in env.py"


#: What a command that only migrates must not load: autogenerate's corrections
#: (renames and drops among them) and the ENUM library they use (26 modules,
#: tens of milliseconds).
AUTOGENERATE_ONLY = (
    "{pkg}.migration_machinery.autogenerate",
    "{pkg}.migration_machinery.renames",
    "{pkg}.migration_machinery.data_loss",
    "alembic_postgresql_enum",
)

IMPORTS_PER_COMMAND = """
import sys
from alembic.config import main

loaded = lambda: sorted(m for m in {watched} if m in sys.modules)
for argv in (["upgrade", "head"], ["current"], ["downgrade", "base"], ["stamp", "head"],
             ["upgrade", "head", "--sql"], ["check"]):
    try:
        main(argv)
    except SystemExit:
        pass
    print("loaded after", *argv, "->", *loaded())
print("from", *[sys.modules[m].__file__ for m in loaded()], "path", *sys.path)
"""


@pytest.mark.parametrize("variant_name", list(VARIANTS))
def test_only_the_commands_that_compare_import_the_autogenerate_machinery(
    new_project: NewProject, variant_name: str
) -> None:
    project = new_project(**VARIANTS[variant_name])
    project.autogenerate("create item")
    watched = tuple(name.format(pkg=project.program_name) for name in AUTOGENERATE_ONLY)
    code = IMPORTS_PER_COMMAND.format(watched=watched)
    # A process of its own: this one has imported them for the revision above.
    output = project.run(project.python, "-c", code).stdout.splitlines()
    printed = [line.removeprefix("loaded after ") for line in output if "loaded after" in line]
    assert printed[0] == "upgrade head ->", output  # (where they came from, if loaded)
    assert printed == [
        "upgrade head ->",
        "current ->",
        "downgrade base ->",
        "stamp head ->",
        "upgrade head --sql ->",
        f"check -> {' '.join(sorted(watched))}",
    ]


def test_a_revision_calling_an_enum_operation_without_its_library_is_one_line(
    new_project: NewProject,
) -> None:
    """Revisions written before upgrades stopped loading the ENUM library lack its import."""
    project = new_project()
    first = revision_id(project.autogenerate("create item"))
    call = "op.add_enum_value(enum_schema='public', enum_name='mood', new_value='sleepy')"
    old = project.write_revision("aa01", first, call)

    failed = project.alembic("upgrade", "head", check=False)

    assert failed.returncode == 255, failed.stderr
    # Alembic's own command line prints its FAILED line on stdout.
    assert failed.stdout.strip().splitlines()[-1] == (
        "FAILED: A revision calls op.add_enum_value, which alembic-postgresql-enum provides: "
        f"add `import alembic_postgresql_enum  # noqa: F401` to it (in {old}), then run "
        "`alembic upgrade head` again."
    )
    assert project.version_rows() == [first]  # the revision before it stays applied, alone
    old.write_text(
        old.read_text().replace("import sqlalchemy", ENUM_IMPORT + "\nimport sqlalchemy")
    )
    project.alembic("upgrade", "head")  # a no-op on SQLite, as the library says
    assert project.version_rows() == ["aa01"]


ENUM_IMPORT = "import alembic_postgresql_enum  # noqa: F401"

#: The rendered README's tree: a path first on each line (a folder ends in /).
TREE_LINE = re.compile(r"^(\S+)(\s|$)")


@pytest.mark.parametrize("variant_name", list(VARIANTS))
def test_the_readmes_tree_lists_every_rendered_file(
    new_project: NewProject, variant_name: str
) -> None:
    project = new_project(**VARIANTS[variant_name])
    readme = (project.path / "README.md").read_text()
    block = readme.split("## What is in this project\n", 1)[1].split("```text\n", 1)[1]
    listed = [TREE_LINE.match(line)[1] for line in block.split("\n```", 1)[0].splitlines()]
    files = {
        path.relative_to(project.path).as_posix()
        for path in project.path.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    folders = [entry for entry in listed if entry.endswith("/")]
    covered = {f for f in files if any(f.startswith(folder) for folder in folders)}
    assert sorted(entry for entry in listed if not entry.endswith("/")) == sorted(files - covered)
    for folder in folders:
        assert any(f.startswith(folder) for f in files), f"{folder} is not in the project"
    # The ownership table names the machinery's folder as the template's.
    assert f"| the template's | `{project.program_name}/migration_machinery/` |" in readme
