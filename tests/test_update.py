"""`copier update` pulls template fixes into existing services without losing their work.

Each test owns a copy of the template in its own git repository and releases
versions there with annotated tags (``v1.0.0``, ``v1.1.0``), as the real
template does.  The session-wide ``copier_template`` of pytest-copier is only
copied, never tagged: a tag there would leak into every other test.

Projects are rendered and updated with the real Copier (its Python API; its
command line where its messages are the subject), in a git repository, by a
user with an empty home folder; migrations run through Alembic's command API
on the project's alembic.ini, on a SQLite file.

The last tests update a service rendered from the first release (0.1.0,
commit 34e5ff9 of this repository) to the template as it is now.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from copier import run_copy, run_update
from harness import ROOT
from harness.project import Project as Service
from harness.project import clean_environ, revision_id

ANSWERS = ".copier-answers.yml"
ENV_PY_TEMPLATE = "<< program_name >>/migrations/env.py.jinja"
CONFLICT_START = "<<<<<<< before updating"
CONFLICT_END = ">>>>>>> after updating"

# The template fix released as v1.1.0: env.py gets a reworded comment and a new
# option line, right where `transaction_per_migration` is configured (found by
# the option, so rewording the comment in the template does not break the test).
TRANSACTION_OPTION = re.compile(r"^( +)# .*\n\1transaction_per_migration=True,\n", re.MULTILINE)
FIX_COMMENT = "# Each revision commits alone: a failing one leaves the earlier ones applied."
FIX_OPTION = "include_schemas=False,  # only the default schema belongs to this service"

NEW_MODEL = '''
class Warehouse(Base):
    """Added by the service's developers after the first copy."""

    __tablename__ = "warehouse"

    id: Mapped[int] = mapped_column(primary_key=True)
    city: Mapped[str] = mapped_column(String(80), index=True)
'''

RUNBOOK = "\n## Runbook\n\nPage the on-call DBA before any `alembic downgrade` in production.\n"


def fix_transaction_comment(text: str) -> str:
    """The template's v1.1.0 change to env.py."""
    assert TRANSACTION_OPTION.search(text), "no `# comment` + transaction_per_migration in env.py"
    return TRANSACTION_OPTION.sub(
        lambda m: (
            f"{m[1]}{FIX_COMMENT}\n{m[1]}transaction_per_migration=True,\n{m[1]}{FIX_OPTION}\n"
        ),
        text,
        count=1,
    )


def edit(path: Path, change: Callable[[str], str]) -> None:
    text = path.read_text()
    changed = change(text)
    assert changed != text, f"the edit did not change {path}"
    path.write_text(changed)


def append(text: str) -> Callable[[str], str]:
    return lambda old: old + text


def replace(old: str, new: str) -> Callable[[str], str]:
    def _replace(text: str) -> str:
        assert old in text, f"{old!r} not found"
        return text.replace(old, new, 1)

    return _replace


def git(cwd: Path, *args: str) -> str:
    # pytest-copier's autouse `default_gitconfig` points GIT_CONFIG_GLOBAL at an
    # isolated config with a user name and email, inherited by subprocesses.
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"git {' '.join(args)}: {result.stderr}"
    return result.stdout


@dataclass
class TemplateRepo:
    """This test's own copy of the template, released with git tags."""

    path: Path

    def template_file(self, relpath: str) -> Path:
        return self.path / "template" / relpath

    def commit(self, message: str) -> str:
        """Commit everything; return the commit's hash."""
        git(self.path, "add", "-A")
        git(self.path, "commit", "-q", "--allow-empty", "-m", message)
        return git(self.path, "rev-parse", "HEAD").strip()

    def release(self, tag: str) -> None:
        self.commit(f"Release {tag}")
        git(self.path, "tag", "-a", tag, "-m", f"Release {tag}")


@dataclass
class Project(Service):
    """A rendered service in its own git repository, and its user's commands."""

    def git(self, *args: str) -> str:
        return self.run("git", *args).stdout

    def commit(self, message: str) -> None:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)

    def copier(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return self.run(sys.executable, "-m", "copier", *args, cwd=cwd)

    def update(self, conflict: str = "inline", **data: str) -> None:
        """``copier update --defaults [--conflict=...] [--data KEY=VALUE ...]``."""
        run_update(
            self.path, data=data, defaults=True, overwrite=True, conflict=conflict, quiet=True
        )

    def answers(self) -> dict[str, object]:
        return yaml.safe_load((self.path / ANSWERS).read_text())

    def changed(self) -> dict[str, str]:
        """``git status``: path -> two-letter status, untracked files included."""
        lines = self.git("status", "--porcelain", "--untracked-files=all").splitlines()
        return {line[3:]: line[:2] for line in lines}

    def files(self) -> dict[str, bytes]:
        return tree(self.path)

    def conflicts(self) -> dict[str, list[str]]:
        """Leftovers of a conflict: `.rej` files and files holding conflict markers."""
        found: dict[str, list[str]] = {}
        for relpath, content in self.files().items():
            if relpath.endswith(".rej"):
                found.setdefault(relpath, []).append(".rej file")
            for line in content.decode(errors="replace").splitlines():
                if line.startswith(("<<<<<<< ", ">>>>>>> ")) or line == "=======":
                    found.setdefault(relpath, []).append(line)
        return found


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by relative path, without git's and Python's caches."""
    files: dict[str, bytes] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in {".git", "__pycache__"}]
        for name in filenames:
            path = Path(dirpath, name)
            files[path.relative_to(root).as_posix()] = path.read_bytes()
    return files


@pytest.fixture
def template_repo(copier_template: Path, tmp_path: Path) -> TemplateRepo:
    """A private copy of the template (today's files) released as v1.0.0."""
    repo = TemplateRepo(tmp_path / "template-repo")
    shutil.copytree(copier_template, repo.path, ignore=shutil.ignore_patterns(".git"))
    git(repo.path, "init", "-q")
    repo.release("v1.0.0")
    return repo


NewProject = Callable[..., Project]


def copy_template(
    template: TemplateRepo,
    root: Path,
    program_name: str,
    vcs_ref: str | None = None,
    git_init: bool = True,
    **answers: str,
) -> Project:
    """``copier copy`` ``template`` (latest tag, or ``vcs_ref``) and commit the result."""
    folder = root / f"{program_name}-{uuid.uuid4().hex[:8]}"
    env = clean_environ(folder / "home")
    env[f"{program_name.upper()}_DATABASE_URL"] = f"sqlite:///{folder / 'db.sqlite'}"
    project = Project(path=folder / program_name, program_name=program_name, env=env)
    data = {"program_name": program_name, "author_name": "Ada Lovelace", **answers}
    folder.mkdir()
    run_copy(
        str(template.path), project.path, data=data, vcs_ref=vcs_ref, defaults=True, quiet=True
    )
    if git_init:
        project.git("init", "-q")
        project.commit("Render the copier-alembic template")
    return project


@pytest.fixture
def new_project(template_repo: TemplateRepo, tmp_path: Path) -> NewProject:
    """``new_project(program_name, vcs_ref=None, git_init=True, **answers)``: see copy_template."""

    def _new(program_name: str, **kwargs: Any) -> Project:
        return copy_template(template_repo, tmp_path, program_name, **kwargs)

    return _new


def user_adds_a_model_and_its_revision(project: Project) -> Path:
    """What a user does after the first copy: a model, its revision, applied."""
    project.add_to_models(NEW_MODEL)
    revision = project.autogenerate("add warehouse")
    project.command("upgrade", "head")
    assert "warehouse" in project.tables()
    return revision


def assert_migrations_still_work(project: Project, fresh_database: bool = False) -> None:
    """The user's database (and a fresh one) reach head, and the models match."""
    databases = [project]
    if fresh_database:
        databases.append(project.with_database(f"sqlite:///{project.path.parent / 'fresh.db'}"))
    for database in databases:
        database.command("upgrade", "head")
        assert "No new upgrade operations detected" in database.command("check").stdout
        assert database.tables() >= {"item", "warehouse", "alembic_version"}


def test_update_brings_the_env_py_fix_and_keeps_the_users_work(
    template_repo: TemplateRepo, new_project: NewProject
) -> None:
    project = new_project("inventory")
    revision = user_adds_a_model_and_its_revision(project)
    edit(project.path / "README.md", append(RUNBOOK))
    project.commit("Warehouses")
    before = project.files()
    users_files = {p: c for p, c in before.items() if not p.endswith(("env.py", ANSWERS))}

    edit(template_repo.template_file(ENV_PY_TEMPLATE), fix_transaction_comment)
    template_repo.release("v1.1.0")

    check = project.copier("check-update")
    assert "Current version is 1.0.0, latest version is 1.1.0." in check.stdout
    update = project.copier("update", "--defaults")
    assert "Updating to template version 1.1.0" in update.stderr

    env_py = project.env_py.read_text()
    assert env_py == fix_transaction_comment(before["inventory/migrations/env.py"].decode())
    assert project.answers()["_commit"] == "v1.1.0"
    assert project.changed() == {ANSWERS: " M", "inventory/migrations/env.py": " M"}
    after = project.files()
    assert {p: c for p, c in after.items() if p in users_files} == users_files
    assert RUNBOOK in (project.path / "README.md").read_text()
    assert project.versions() == [revision]
    assert project.conflicts() == {}
    assert_migrations_still_work(project, fresh_database=True)
    project.commit("Update to copier-alembic v1.1.0")
    assert "Project is up-to-date!" in project.copier("check-update").stdout


USERS_COMMENT = "# Ops: one transaction per revision, see runbook RB-17."


def user_rewords_the_transaction_comment(text: str) -> str:
    """The user's edit of the very line the template's fix rewords."""
    assert TRANSACTION_OPTION.search(text), "no `# comment` + transaction_per_migration in env.py"
    return TRANSACTION_OPTION.sub(
        lambda m: f"{m[1]}{USERS_COMMENT}\n{m[1]}transaction_per_migration=True,\n", text, count=1
    )


@pytest.fixture
def conflicting_update(template_repo: TemplateRepo, new_project: NewProject) -> Project:
    """A user's project at v1.0.0 whose env.py edit collides with the fix released as v1.1.0."""
    project = new_project("billing")
    user_adds_a_model_and_its_revision(project)
    edit(project.env_py, user_rewords_the_transaction_comment)
    project.commit("Warehouses; our note in env.py")
    edit(template_repo.template_file(ENV_PY_TEMPLATE), fix_transaction_comment)
    template_repo.release("v1.1.0")
    return project


def test_conflict_shows_inline_markers_with_both_sides(conflicting_update: Project) -> None:
    project = conflicting_update
    revisions = {path: path.read_bytes() for path in project.versions()}

    project.update()

    env_py = project.env_py.read_text()
    # Both sides, in git's layout: the user's lines first, then the template's.
    (ours, theirs) = re.findall(
        rf"^{CONFLICT_START}\n(.*?)^=======\n(.*?)^{CONFLICT_END}\n", env_py, re.M | re.S
    )[0]
    assert USERS_COMMENT in ours and FIX_COMMENT not in ours
    assert FIX_COMMENT in theirs and USERS_COMMENT not in theirs
    assert env_py.count(CONFLICT_START) == 1
    # Git lists the file as unmerged, so a plain `git commit` refuses it until resolved.
    assert project.changed() == {ANSWERS: " M", "billing/migrations/env.py": "UU"}
    assert "both modified:   billing/migrations/env.py" in project.git("status")
    # ... as the rendered README tells the user.
    readme = (project.path / "README.md").read_text()
    assert f"  {CONFLICT_START}\n" in readme and f"  {CONFLICT_END}\n" in readme
    assert 'lists it as unmerged ("both modified")' in readme
    refused = project.run("git", "commit", "-m", "update", check=False)
    assert refused.returncode != 0
    assert "unmerged" in refused.stderr + refused.stdout
    assert not list(project.path.rglob("*.rej"))
    assert {path: path.read_bytes() for path in project.versions()} == revisions
    assert project.answers()["_commit"] == "v1.1.0"

    # Resolving as the rendered README says: keep the lines you want, drop the
    # markers, `git add` the file, commit.
    conflict = re.compile(rf"{CONFLICT_START}\n(.*?)=======\n.*?{CONFLICT_END}\n", re.DOTALL)
    project.env_py.write_text(conflict.sub(lambda m: m[1], env_py))
    project.git("add", "billing/migrations/env.py")
    project.commit("Update to copier-alembic v1.1.0")
    assert USERS_COMMENT in project.env_py.read_text()
    assert FIX_OPTION in project.env_py.read_text()
    assert_migrations_still_work(project)


def test_conflict_rej_keeps_the_users_change_in_a_rej_file(conflicting_update: Project) -> None:
    project = conflicting_update
    before = project.env_py.read_text()

    project.update(conflict="rej")

    # The file gets the template's new version; the user's change that did not
    # apply is written beside it, as a diff hunk to re-apply by hand.
    env_py = project.env_py.read_text()
    assert FIX_COMMENT in env_py
    assert USERS_COMMENT not in env_py
    assert CONFLICT_START not in env_py
    rej = project.env_py.with_name("env.py.rej")
    hunk = rej.read_text()
    assert hunk.startswith("diff a/billing/migrations/env.py b/billing/migrations/env.py")
    users_line = next(line for line in before.splitlines() if USERS_COMMENT in line)
    assert f"\n+{users_line}\n" in hunk
    assert project.changed() == {
        ANSWERS: " M",
        "billing/migrations/env.py": " M",
        "billing/migrations/env.py.rej": "??",
    }


COVERAGE_CONFIG = "\n[tool.coverage.run]\nbranch = true\n"


def dependencies(project: Project) -> str:
    """The `dependencies = [...]` list of the project's pyproject.toml."""
    pyproject = (project.path / "pyproject.toml").read_text()
    match = re.search(r"^dependencies = \[\n(.*?)^\]", pyproject, re.MULTILINE | re.DOTALL)
    assert match, "no dependencies list in pyproject.toml"
    return match[1]


def test_changing_an_answer_rerenders_dependent_files_and_keeps_user_edits(
    new_project: NewProject,
) -> None:
    project = new_project("ledger")
    revision = user_adds_a_model_and_its_revision(project)
    models = project.models.read_bytes()
    edit(project.path / "README.md", append(RUNBOOK))
    edit(project.path / "pyproject.toml", append(COVERAGE_CONFIG))
    project.commit("Warehouses, runbook, coverage")
    assert "psycopg" not in dependencies(project)

    project.update(database="postgresql")

    answers = project.answers()
    assert answers["database"] == "postgresql"
    assert answers["_commit"] == "v1.0.0"
    assert '"psycopg[binary]>=3.2",' in dependencies(project)
    assert (project.path / "pyproject.toml").read_text().endswith(COVERAGE_CONFIG)
    readme = (project.path / "README.md").read_text()
    assert "PostgreSQL (psycopg 3 is a dependency of this project)" in readme
    assert "export LEDGER_DATABASE_URL='postgresql+psycopg://" in readme
    assert RUNBOOK in readme
    assert project.conflicts() == {}

    # Every file is what a fresh PostgreSQL copy renders, plus the user's work.
    fresh = new_project("ledger", git_init=False, database="postgresql").files()
    fresh["README.md"] += RUNBOOK.encode()
    fresh["pyproject.toml"] += COVERAGE_CONFIG.encode()
    fresh["ledger/models.py"] = models
    fresh[revision.relative_to(project.path).as_posix()] = revision.read_bytes()
    fresh["ledger/migrations/versions/HEAD"] = revision_id(revision).encode() + b"\n"
    assert project.files() == fresh
    assert_migrations_still_work(project)


def test_changing_use_async_and_back_rerenders_the_template_files_and_keeps_the_users_work(
    new_project: NewProject,
) -> None:
    """A sync service becomes asyncio and back: each time the template's files are those
    of a fresh copy of the variant, the service's own files are kept, and it migrates."""
    project = new_project("ledger")
    revision = user_adds_a_model_and_its_revision(project)
    models = project.models.read_bytes()
    # The tests of the service's models are the service's: ported by its team, as its code.
    model_tests = (project.path / "tests" / "test_models.py").read_bytes()
    edit(project.path / "README.md", append(RUNBOOK))
    project.commit("Warehouses, runbook")

    for to_async in (True, False):
        project.update(use_async=to_async)  # type: ignore[arg-type]

        assert project.answers()["use_async"] is to_async
        assert project.conflicts() == {}
        db_py = (project.path / "ledger" / "db.py").read_text()
        assert ("create_async_engine" in db_py) is to_async
        env_py = (project.path / "ledger" / "migrations" / "env.py").read_text()
        assert ("asyncio.run(run_async_migrations(" in env_py) is to_async
        assert ('"aiosqlite>=' in dependencies(project)) is to_async
        fresh = new_project("ledger", git_init=False, use_async=to_async).files()
        fresh["README.md"] += RUNBOOK.encode()
        fresh["ledger/models.py"] = models
        fresh["tests/test_models.py"] = model_tests
        fresh[revision.relative_to(project.path).as_posix()] = revision.read_bytes()
        fresh["ledger/migrations/versions/HEAD"] = revision_id(revision).encode() + b"\n"
        assert project.files() == fresh
        # The same revisions and database go on working under the other variant.
        assert_migrations_still_work(project, fresh_database=to_async)
        project.commit(f"use_async: {to_async}")


def release_v1_1_0(template_repo: TemplateRepo) -> None:
    """A release touching every kind of file: fix, new file, deleted file, docs."""
    package = "<< program_name >>"
    edit(template_repo.template_file(ENV_PY_TEMPLATE), fix_transaction_comment)
    notes = template_repo.template_file(f"{package}/migrations/UPGRADING.md.jinja")
    notes.write_text("# Upgrading << project_name >>\n\nRun `alembic upgrade head`.\n")
    template_repo.template_file(f"{package}/migrations/README").unlink()
    edit(template_repo.template_file("README.md.jinja"), append("\nTemplate notes: v1.1.0.\n"))
    template_repo.release("v1.1.0")


@pytest.mark.parametrize(
    "answers",
    [
        {"program_name": "shop"},
        {"program_name": "billing_core", "project_name": "Billing.Core", "database": "postgresql"},
    ],
    ids=["sqlite", "postgresql"],
)
def test_update_equals_a_fresh_copy(
    template_repo: TemplateRepo, new_project: NewProject, answers: dict[str, str]
) -> None:
    project = new_project(**answers)
    release_v1_1_0(template_repo)

    project.update()

    fresh = new_project(git_init=False, vcs_ref="v1.1.0", **answers)
    updated = project.files()
    assert updated == fresh.files()
    package = answers["program_name"]
    assert f"{package}/migrations/UPGRADING.md" in updated
    assert f"{package}/migrations/README" not in updated
    assert project.answers()["_commit"] == "v1.1.0"


def test_update_never_drops_a_users_edit_to_a_template_owned_file(
    template_repo: TemplateRepo, new_project: NewProject
) -> None:
    project = new_project("orders")
    revision = user_adds_a_model_and_its_revision(project)
    models = project.models.read_bytes()
    # Edits the template's next release does not touch: a changed option, a
    # deleted line, a deleted file, a paragraph at the top of the README.
    # (A deleted file is what made copier 9.19.1 merge models.py despite
    # _skip_if_exists "<< program_name >>/models.py": see copier.yml.)
    ini, db_py, readme = (
        project.path / "alembic.ini",
        project.package / "db.py",
        project.path / "README.md",
    )
    edit(ini, replace("# truncate_slug_length = 40\n", "truncate_slug_length = 24\n"))
    edit(db_py, replace('    "pymysql": "pip install pymysql",\n', ""))
    (project.path / "tests" / "test_db.py").unlink()
    intro = "\nOrders are immutable once paid; see ADR-7.\n"
    edit(readme, lambda text: text.replace("\n", "\n" + intro, 1))
    project.commit("Our changes")
    ours = {
        path: project.path.joinpath(path).read_bytes() for path in ("alembic.ini", "orders/db.py")
    }

    # The release changes env.py, the README's end, the example model and the
    # tests the user deleted.
    release_v1_1_0(template_repo)
    edit(template_repo.template_file("<< program_name >>/models.py.jinja"), append("# v1.2\n"))
    edit(template_repo.template_file("tests/test_db.py.jinja"), append("# v1.2\n"))
    template_repo.release("v1.2.0")

    project.update()

    assert {path: project.path.joinpath(path).read_bytes() for path in ours} == ours
    assert not (project.path / "tests" / "test_db.py").exists()
    readme_text = readme.read_text()
    assert intro in readme_text
    assert readme_text.endswith("\nTemplate notes: v1.1.0.\n")
    assert FIX_COMMENT in project.env_py.read_text()
    # models.py is the user's (skip_if_exists): the template's change never reaches it.
    assert project.models.read_bytes() == models
    assert project.versions() == [revision]
    assert project.conflicts() == {}
    assert project.answers()["_commit"] == "v1.2.0"
    assert_migrations_still_work(project)


def test_update_recreates_a_deleted_models_py(
    template_repo: TemplateRepo, new_project: NewProject
) -> None:
    """Copier recreates a deleted `_skip_if_exists` file; a models/ package still wins.

    (The example model's test, written by the first copy only, stays deleted.)

    A user who turns models.py into a package sees the recreated file in the
    update's `git status` and deletes it again; until then Python imports the
    package, so migrations keep working.
    """
    project = new_project("catalog")
    package_init = project.package / "models" / "__init__.py"
    package_init.parent.mkdir()
    project.models.rename(package_init)
    edit(package_init, replace('__tablename__ = "item"', '__tablename__ = "product"'))
    (project.path / "tests" / "test_models.py").unlink()  # it tested the example model
    project.commit("models.py becomes a package")
    release_v1_1_0(template_repo)

    project.update()

    assert project.changed()["catalog/models.py"] == "??"
    assert not (project.path / "tests" / "test_models.py").exists()  # a first copy's only
    assert (
        project.models.read_bytes()
        == new_project("catalog", git_init=False, vcs_ref="v1.1.0").models.read_bytes()
    )
    # Alembic imports the package (it wins over a module of the same name),
    # not the recreated example.
    revision = project.autogenerate("create product")
    assert "'product'" in revision.read_text()
    assert "'item'" not in revision.read_text()


# -- from earlier releases to this one -----------------------------------------------------

FIRST_RELEASE = "34e5ff9"  # 0.1.0 in CHANGELOG.md: migrate.py still held the guards
BEFORE_THE_LAYOUT = "f20624f"  # the machinery beside models.py, before migration_machinery/

#: Where the modules of the package's top level went (CHANGELOG.md, "Layout").
MOVED = {
    "migration_guards.py": "migration_machinery/guards.py",
    "autogenerate_fixes.py": "migration_machinery/autogenerate.py",
    "migration_lint.py": "migration_machinery/lint.py",
}


@pytest.fixture
def released_repo(copier_template: Path, tmp_path: Path) -> Callable[[str], TemplateRepo]:
    """``released_repo(commit)``: this repository with ``commit`` tagged v0.1.0, and the
    template as it is now released after it as v0.2.0."""

    def _released(commit: str) -> TemplateRepo:
        known = subprocess.run(
            ["git", "-C", str(ROOT), "cat-file", "-e", f"{commit}^{{commit}}"],
            capture_output=True,
        )
        if known.returncode != 0:
            pytest.skip(f"needs this repository's git history (commit {commit})")
        repo = TemplateRepo(tmp_path / f"released-{commit}")
        git(tmp_path, "clone", "-q", "--no-checkout", str(ROOT), str(repo.path))
        git(repo.path, "tag", "v0.1.0", commit)
        git(repo.path, "checkout", "-q", commit)
        for name in ("copier.yml", "template"):
            target = repo.path / name
            shutil.rmtree(target) if target.is_dir() else target.unlink()
            copy = shutil.copytree if (copier_template / name).is_dir() else shutil.copy
            copy(copier_template / name, target)
        repo.release("v0.2.0")
        return repo

    return _released


def users_files(project: Project) -> dict[str, bytes]:
    """The files of a service that an update never touches: its models, revisions, own tests."""
    return {
        path: content
        for path, content in project.files().items()
        if path
        in (
            f"{project.program_name}/models.py",
            f"{project.program_name}/column_types.py",
            "tests/test_models.py",
        )
        or "/migrations/versions/" in path
    }


def expected_after_update(
    repo: TemplateRepo, project: Project, tmp_path: Path, users: dict[str, bytes]
) -> dict[str, bytes]:
    """What a fresh copy of v0.2.0 has, with the user's own files and runbook."""
    fresh = copy_template(repo, tmp_path, project.program_name, vcs_ref="v0.2.0", git_init=False)
    expected = fresh.files()
    expected["README.md"] += RUNBOOK.encode()
    # The example model's test is a first copy's only: the service keeps its own, if any.
    del expected["tests/test_models.py"]
    return {**expected, **users}


def test_a_service_from_the_first_release_updates_without_conflicts(
    released_repo: Callable[[str], TemplateRepo], tmp_path: Path
) -> None:
    """Files the user did not edit take the new layout; the user's work stays."""
    repo = released_repo(FIRST_RELEASE)
    project = copy_template(repo, tmp_path, "inventory", vcs_ref="v0.1.0")
    assert not (project.package / "migration_guards.py").exists()
    revision = user_adds_a_model_and_its_revision(project)
    edit(project.path / "README.md", append(RUNBOOK))
    project.commit("Warehouses, runbook")
    users = users_files(project)
    assert revision.relative_to(project.path).as_posix() in users

    project.update()

    assert project.answers()["_commit"] == "v0.2.0"
    assert project.conflicts() == {}
    # Every file the user did not edit is exactly what a fresh copy of the new release has.
    assert project.files() == expected_after_update(repo, project, tmp_path, users)
    assert (project.package / "migration_machinery" / "guards.py").exists()
    assert_migrations_still_work(project, fresh_database=True)


USERS_GUARD_EDIT = "LOCK_FILE_POLL_SECONDS = 0.02  # ops: NFS-mounted data folder, see RB-9\n"


def test_a_service_from_before_the_layout_moves_to_it_and_says_what_to_re_apply(
    released_repo: Callable[[str], TemplateRepo], tmp_path: Path
) -> None:
    """The machinery moves into migration_machinery/: no conflict, no old module left
    importable, and the user's edit of a moved module is named, with where to find it."""
    repo = released_repo(BEFORE_THE_LAYOUT)
    project = copy_template(repo, tmp_path, "inventory", vcs_ref="v0.1.0")
    old_guards = project.package / "migration_guards.py"
    edit(old_guards, replace("LOCK_FILE_POLL_SECONDS = 0.005\n", USERS_GUARD_EDIT))
    user_adds_a_model_and_its_revision(project)
    edit(project.path / "README.md", append(RUNBOOK))
    project.commit("Warehouses, runbook, a slower lock poll")
    users = users_files(project)
    assert "tests/test_models.py" in users
    # Bytecode of the old modules, as running the service leaves it (ignored by git).
    project.run(project.python, "-m", "compileall", "-q", project.program_name)

    update = project.copier("update", "--defaults")

    assert project.conflicts() == {}
    assert project.answers()["_commit"] == "v0.2.0"
    message = " ".join((update.stdout + update.stderr).split())
    for old, new in MOVED.items():
        assert f"inventory/{old} -> inventory/{new}" in message
        assert project.changed()[f"inventory/{old}"] == " D"
    assert "`git diff HEAD -- <file>` shows your edit" in message
    # The edit is not in the new module (Copier dropped it), and git shows it to re-apply.
    assert "RB-9" not in (project.package / "migration_machinery" / "guards.py").read_text()
    assert f"-{USERS_GUARD_EDIT}" in project.git(
        "diff", "HEAD", "--", "inventory/migration_guards.py"
    )
    # Nothing of the old layout is left to import, its stale bytecode notwithstanding.
    assert list((project.package / "__pycache__").glob("migration_guards.*.pyc"))
    code = "import importlib.util as u; print(u.find_spec('inventory.migration_guards'))"
    assert project.run(project.python, "-c", code).stdout.strip() == "None"
    assert project.files() == expected_after_update(repo, project, tmp_path, users)
    assert_migrations_still_work(project, fresh_database=True)


def test_without_tags_a_service_pins_a_commit_and_updates_to_the_newest(
    copier_template: Path, tmp_path: Path
) -> None:
    """How the published template works (README, "Versions"): main only, no tags."""
    repo = TemplateRepo(tmp_path / "untagged")
    shutil.copytree(copier_template, repo.path, ignore=shutil.ignore_patterns(".git"))
    git(repo.path, "init", "-q")
    first = repo.commit("0.2.0")
    edit(repo.template_file(ENV_PY_TEMPLATE), fix_transaction_comment)
    second = repo.commit("0.3.0")
    project = copy_template(repo, tmp_path, "inventory", vcs_ref=first)
    assert FIX_COMMENT not in project.env_py.read_text()
    user_adds_a_model_and_its_revision(project)
    project.commit("Warehouses")

    project.update()

    recorded = str(project.answers()["_commit"])
    assert len(recorded) >= 7 and second.startswith(recorded)  # the newest commit
    assert FIX_COMMENT in project.env_py.read_text()
    assert project.conflicts() == {}
    assert_migrations_still_work(project)
