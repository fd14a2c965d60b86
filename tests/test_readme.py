"""What the READMEs state mechanically is true: counts, the rendered tree, the commands.

The template's README counts the questions and lists the rendered tree; both
READMEs show `alembic` and `python -m <package> db` commands in code blocks,
each of which the real command line must accept as written.
"""

from __future__ import annotations

import importlib
import re
import shlex

import pytest
import yaml
from alembic.config import CommandLine
from conftest import NewProject
from harness import ROOT
from harness.project import Project, rendered_files

NUMBERS = {"five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10}
README = (ROOT / "README.md").read_text()


def questions() -> list[str]:
    config = yaml.safe_load((ROOT / "copier.yml").read_text())
    # `when: false` entries are computed from the answers, never asked.
    return [
        name
        for name, question in config.items()
        if not name.startswith("_") and question.get("when") is not False
    ]


def code_blocks(markdown: str, language: str = "[a-z]*") -> list[str]:
    pattern = rf"^ *```{language}\n(.*?)^ *```"
    return re.findall(pattern, markdown, re.MULTILINE | re.DOTALL)


def test_the_readme_counts_and_lists_the_questions() -> None:
    (word,) = re.findall(r"answer (\w+)\s+questions", README)
    assert NUMBERS[word] == len(questions())
    table = README[README.index("### The questions") : README.index("### What you get")]
    listed = re.findall(
        r"`(\w+)`",
        " ".join(line.split("|")[1] for line in table.splitlines()[4:] if line.startswith("|")),
    )
    assert listed == questions()


def test_the_readme_tree_is_the_rendered_tree(new_project: NewProject) -> None:
    project = new_project()
    tree = README[README.index("### What you get") :]
    (block,) = code_blocks(tree)[:1]
    listed = {
        line.split()[0].replace("<program_name>", project.program_name)
        for line in block.splitlines()
        if line and not line.startswith(" ")
    }
    rendered = rendered_files(project.path)
    folders = {entry for entry in listed if entry.endswith("/")}
    # A folder entry stands for what it holds (versions/: only .gitkeep at first).
    in_folders = {path for path in rendered if any(path.startswith(f) for f in folders)}
    assert listed - folders == rendered - in_folders
    assert in_folders == {f"{project.program_name}/migrations/versions/.gitkeep"}


def commands(markdown: str, program: str) -> list[list[str]]:
    """Every `alembic ...` and `python -m <program> db ...` line of the bash code blocks."""
    found = []
    for block in code_blocks(markdown, "bash"):
        for line in block.splitlines():
            for part in line.split("&&"):
                if not part.strip().startswith(("alembic ", "python -m ")):
                    continue
                words = shlex.split(part, comments=True)
                if words[:1] == ["alembic"] or words[:4] == ["python", "-m", program, "db"]:
                    found.append(words)
    return found


def test_every_migration_command_in_the_readmes_is_one_the_cli_accepts(
    new_project: NewProject,
) -> None:
    project: Project = new_project()
    rendered_readme = (project.path / "README.md").read_text()
    found = commands(README, project.program_name) + commands(rendered_readme, project.program_name)
    assert len(found) >= 15, found
    with project.imported():
        main = importlib.import_module(f"{project.program_name}.__main__")
        for words in found:
            if words[0] == "alembic":
                parser = CommandLine(prog="alembic").parser
                options = parser.parse_args(words[1:])
            else:
                parser = main.ServiceCommandLine(prog="db").parser
                options = parser.parse_args(words[4:])
            assert hasattr(options, "cmd"), words  # a command, not just options


@pytest.mark.parametrize("path", ["LICENSE", "CHANGELOG.md"])
def test_the_files_the_readme_and_pyproject_mention_exist(path: str) -> None:
    assert (ROOT / path).is_file()
    if path == "LICENSE":
        pyproject = (ROOT / "pyproject.toml").read_text()
        assert 'license = "MIT"' in pyproject
        assert (ROOT / path).read_text().startswith("MIT License")


def test_the_readmes_do_not_point_at_placeholders(new_project: NewProject) -> None:
    rendered = (new_project().path / "README.md").read_text()
    for text in (README, rendered):
        assert "gh:OWNER" not in text
        assert "Your Name" not in text
