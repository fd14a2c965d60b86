"""Free-text answers render as typed in every file, or are refused in one line.

Each answer set below is both the description and the author's name of one
rendered project, with an unusual but valid email: every Python file parses
and the package's docstring is the description, ``pyproject.toml`` holds the
three answers (in a form hatchling's build accepts), the YAML files parse and
the answers file records them, the README shows the description as plain
text, and ruff passes.  What cannot be one line of text is refused by Copier's
validators, in one line, before anything is written.
"""

from __future__ import annotations

import ast
import importlib
import re
import shutil
import subprocess
import sys
import tomllib
import unicodedata
from email.headerregistry import Address
from pathlib import Path

import pytest
import yaml
from conftest import NewProject
from copier import run_copy
from harness import ROOT

#: Answer sets (a render each, about a second): each joins a few awkward
#: strings, those whose place matters first or last (a quote or a backslash
#: there meets the string's delimiter; `#` or `1.` first starts a Markdown
#: block), with an email.
ANSWER_SETS = {
    "quotes": (
        '"Quoted" first: A "smart" wrapper around "foo", it\'s \'quoted\', ends in a quote"',
        "o'brien+{x}|y~z@exämple.org",
    ),
    "triple quotes, backslashes": (
        r'C:\new\table \d \N{DASH} \\server \", docstrings end in """',
        "a.b-c_d=e?f^g!h#i$j%k&l*m/n@sub.例え.jp",
    ),
    "template syntax, numbered": (
        "1. Not a list: {{ x }} {% if y %} << y >> <% if z %> <# c #> ${z} %(here)s",
        "grace@example.org",
    ),
    "markdown, html": (
        "# *Not* a _heading_: [a](link) `code` ~~x~~ $m$ > <script>&amp; ends in a backslash \\",
        "",
    ),
    # Under ruff's 100 characters, over its 100 columns: wide characters count two.
    "non-ascii, wide, spaces around": ("  naïve café – 😀 " + "日本語のサービス" * 6 + "  ", ""),
}

#: A backslash-escaped ASCII punctuation character: CommonMark shows the character.
MARKDOWN_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")


def shown_as_text(line: str) -> str:
    """The text a Markdown paragraph of one ``line`` shows; fails if it holds markup.

    Markup is a character that CommonMark (or GitHub's strikethrough ``~`` and
    math ``$``) reads unless backslash-escaped: code, emphasis, links, HTML
    tags, entities and backslash escapes anywhere, and a heading, block quote
    or list marker first.
    """
    unescaped = MARKDOWN_ESCAPE.sub("", line)
    markup = set("`*_[]<&~$") & set(unescaped)
    assert not markup, f"{line!r} has markup: {sorted(markup)}"
    assert not unescaped.endswith("\\"), f"{line!r} ends in an unescaped backslash"
    assert not re.match(r"\s|[#>+-]|[0-9]+[.)]", line), f"{line!r} starts a block"
    return MARKDOWN_ESCAPE.sub(r"\1", line)


def columns(line: str) -> int:
    """The width of ``line`` in a terminal, as ruff measures it: wide characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in line)


def passes_ruff(root: Path) -> None:
    """The rendered project's own ruff configuration passes (this repository's ruff)."""
    for command in (["check"], ["format", "--check"]):
        result = subprocess.run(
            [sys.executable, "-m", "ruff", *command, "--no-cache", "."],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, f"ruff {' '.join(command)}:\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize(("text", "email"), ANSWER_SETS.values(), ids=ANSWER_SETS.keys())
def test_free_text_is_rendered_as_typed_in_every_file(
    new_project: NewProject, text: str, email: str
) -> None:
    service = new_project(description=text, author_name=text, author_email=email)
    root = service.path
    shown = text.strip()  # surrounding spaces are dropped, as ruff format would

    for path in root.rglob("*.py"):
        ast.parse(path.read_text(), filename=str(path))
    with service.imported():
        assert importlib.import_module(service.program_name).__doc__ == shown
    (line,) = (service.package / "__init__.py").read_text().splitlines()
    docstring, _, comment = line.partition("  # ")
    assert comment == ("noqa: E501" if columns(docstring) > 100 else ""), line

    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    assert project["description"] == shown
    assert project["authors"] == [{"name": shown, "email": email} if email else {"name": shown}]
    if email:
        str(Address(display_name=shown, addr_spec=email))  # what hatchling's build checks

    yaml_files = {path.relative_to(root).as_posix(): path for path in root.rglob("*.y*ml")}
    assert {".copier-answers.yml", ".github/workflows/ci.yml"} <= set(yaml_files)
    documents = {name: yaml.safe_load(path.read_text()) for name, path in yaml_files.items()}
    answers = documents[".copier-answers.yml"]
    assert (answers["description"], answers["author_name"]) == (text, text)
    assert answers["author_email"] == email

    title, blank, paragraph, after, *_ = (root / "README.md").read_text().splitlines()
    assert (title, blank, after) == ("# shop", "", "")
    assert shown_as_text(paragraph) == shown

    passes_ruff(root)


@pytest.fixture(scope="module")
def plain_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The template outside git: Copier reads it in place (a refusal in 0.1 s, not 0.5 s)."""
    template = tmp_path_factory.mktemp("plain-template")
    shutil.copy(ROOT / "copier.yml", template)
    shutil.copytree(ROOT / "template", template / "template")
    return template


LINE_BREAK = "must be one line: remove the line break."
CONTROL = "must be printable text: remove the tab or control character."
NOT_UTF8 = "is not UTF-8 text: type it again."
EMAIL_CONTROL = "the email must be one line of printable text"
NOT_AN_EMAIL = "does not look like an email address that pyproject.toml can hold"

REFUSED = {
    "newline": ("description", "two\nlines", f"the description {LINE_BREAK}"),
    "carriage return": ("description", "two\rlines", f"the description {LINE_BREAK}"),
    "line separator": ("description", "two\u2028lines", f"the description {LINE_BREAK}"),
    "tab": ("description", "a\ttab", f"the description {CONTROL}"),
    "escape": ("description", "red \x1b[31m", f"the description {CONTROL}"),
    "DEL": ("description", "del \x7f", f"the description {CONTROL}"),
    "C1 control": ("description", "c1 \x9b", f"the description {CONTROL}"),
    "undecodable byte": ("description", "caf\udce9", f"the description {NOT_UTF8}"),
    "name newline": ("author_name", "Ada\nLovelace", f"the name {LINE_BREAK}"),
    "name NUL": ("author_name", "Ada\x00", f"the name {CONTROL}"),
    "name undecodable byte": ("author_name", "Ad\udce0", f"the name {NOT_UTF8}"),
    "email newline": ("author_email", "ada@example.org\n", EMAIL_CONTROL),
    "email tab": ("author_email", "ada\t@example.org", EMAIL_CONTROL),
    "email quoted": ("author_email", '"ada lovelace"@example.org', NOT_AN_EMAIL),
    "email non-ascii before the @": ("author_email", "adà@example.org", NOT_AN_EMAIL),
    "email double dot": ("author_email", "ada..l@example.org", NOT_AN_EMAIL),
}


@pytest.mark.parametrize(("question", "value", "message"), REFUSED.values(), ids=REFUSED.keys())
def test_what_is_not_one_line_of_text_is_refused_in_one_line(
    plain_template: Path, tmp_path: Path, question: str, value: str, message: str
) -> None:
    destination = tmp_path / "out"
    data = {"program_name": "shop", question: value}
    with pytest.raises(ValueError) as error:
        run_copy(str(plain_template), destination, data=data, defaults=True, quiet=True)
    refusal = str(error.value)
    assert refusal.startswith(f"Validation error for question '{question}': ")
    assert message in refusal
    assert len(refusal.splitlines()) == 1, refusal
    assert not destination.exists()
