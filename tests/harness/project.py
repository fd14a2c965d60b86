"""A rendered project, and the ways a user works in it.

:class:`Renderer` renders the template with the real Copier once per answer
set and hands each test its own copy of the tree (a copy takes milliseconds, a
render a fraction of a second, a subprocess half a second).

:class:`Project` is one such copy: its files, its database, and its commands,
run two ways:

- as a user types them (``project.alembic(...)``, ``project.db(...)``,
  ``project.run(...)``): real subprocesses in the project folder, for the
  tests whose subject is the command line, its output or its exit status
  (this interpreter's ``python -m`` ones forked from a warm one that has
  imported SQLAlchemy and Alembic: ``warm_python.py``);
- in this process (``project.command("upgrade", "head")``): Alembic's command
  API on the project's own ``alembic.ini``, so the same ``env.py``, models and
  guards run, without half a second of Python start-up per command.
"""

from __future__ import annotations

import argparse
import compileall
import dataclasses
import hashlib
import importlib
import io
import logging
import os
import py_compile
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import alembic.command
import sqlalchemy as sa
from alembic.config import Config
from filelock import FileLock

from harness.warm_python import forkable, warm

DEFAULT_ANSWERS = {"program_name": "shop", "author_name": "Ada Lovelace"}

#: The table in which the migrations record each revision applied (history.py).
HISTORY_TABLE = "alembic_version_history"


def clean_environ(home: Path) -> dict[str, str]:
    """The environment of a user with an empty home and no database URL set."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.endswith("_DATABASE_URL") and not key.startswith(("XDG_", "VIRTUAL_ENV"))
    }
    env.update(HOME=str(home), XDG_DATA_HOME=str(home / ".local" / "share"))
    # Edits of models.py within one second keep their size ("String(100)" ->
    # "String(250)"): a cached .pyc would then hide the edit.
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def revision_id(path: Path) -> str:
    """The revision identifier written in a revision file."""
    match = re.search(r"^revision: str = '([0-9a-f]+)'", path.read_text(), re.MULTILINE)
    assert match, f"no revision id in {path}"
    return match.group(1)


class Output(NamedTuple):
    """What an in-process Alembic command printed, and what it logged."""

    stdout: str
    log: str


@dataclass
class Project:
    """A rendered project, its database, and its user's commands."""

    path: Path
    program_name: str
    env: dict[str, str]
    python: str = sys.executable

    # -- where things are --------------------------------------------------------------

    @property
    def url_env(self) -> str:
        return f"{self.program_name.upper()}_DATABASE_URL"

    @property
    def database_url(self) -> str:
        return self.env[self.url_env]

    @property
    def package(self) -> Path:
        return self.path / self.program_name

    @property
    def models(self) -> Path:
        return self.package / "models.py"

    @property
    def env_py(self) -> Path:
        return self.package / "migrations" / "env.py"

    def versions(self) -> list[Path]:
        return sorted((self.package / "migrations" / "versions").glob("*.py"))

    def with_database(self, url: str) -> Project:
        """The same project, pointed at another database."""
        return dataclasses.replace(self, env={**self.env, self.url_env: url})

    # -- a user's edits ------------------------------------------------------------------

    def add_to_models(self, code: str) -> None:
        """Append model code to models.py, as a user editing it would."""
        self.models.write_text(self.models.read_text() + "\n\n" + code.strip() + "\n")

    def replace_in_models(self, old: str, new: str) -> None:
        text = self.models.read_text()
        assert old in text, f"{old!r} not in models.py"
        self.models.write_text(text.replace(old, new))

    def write_revision(
        self,
        revision: str,
        down_revision: str | None,
        upgrade: str,
        downgrade: str = "pass",
        *,
        imports: str = "",
    ) -> Path:
        """Write a revision file by hand, as a user does for a data migration."""

        def block(code: str) -> str:
            return textwrap.indent(textwrap.dedent(code).strip(), "    ")

        text = "\n".join(
            [
                f'"""Hand-written revision {revision}."""',
                "import sqlalchemy as sa",
                "from alembic import op",
                textwrap.dedent(imports).strip(),
                "",
                f"revision = {revision!r}",
                f"down_revision = {down_revision!r}",
                "branch_labels = None",
                "depends_on = None",
                "",
                "",
                "def upgrade() -> None:",
                block(upgrade),
                "",
                "",
                "def downgrade() -> None:",
                block(downgrade),
                "",
            ]
        )
        path = self.package / "migrations" / "versions" / f"{revision}_handwritten.py"
        path.write_text(text)
        # As after `alembic revision -m ...` and an edit: the head file names the new head.
        with self.imported():
            heads = importlib.import_module(f"{self.program_name}.migration_machinery.heads")
            heads.write_head_file(path.parent)
        return path

    # -- commands as a user types them ------------------------------------------------

    def run(
        self, *args: str, check: bool = True, cwd: Path | None = None, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in the project (``cwd`` elsewhere to test that)."""
        if len(args) > 2 and args[1] == "-m" and forkable({**self.env, **env}):
            # `python -m ...`: forked from a warm interpreter of that Python (warm_python.py).
            result = warm(args[0]).run(
                args[2], list(args[3:]), cwd=cwd or self.path, env={**self.env, **env}, timeout=300
            )
        else:
            result = subprocess.run(
                args,
                cwd=cwd or self.path,
                env={**self.env, **env},
                capture_output=True,
                text=True,
                timeout=300,
            )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    def alembic(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """``alembic ARGS``, from the project root unless ``cwd`` says otherwise."""
        return self.run(self.python, "-m", "alembic", *args, **kwargs)

    def db(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """``python -m <package> db ARGS``."""
        return self.run(self.python, "-m", self.program_name, "db", *args, **kwargs)

    def own_tests(
        self,
        *args: str,
        python: str | None = None,
        with_our_plugins: bool = False,
        **env: str,
    ) -> subprocess.CompletedProcess[str]:
        """The project's own test suite, as its README says (``pytest``); not checked.

        ``python`` other than the project's own (an environment where the
        project is not installed, such as this repository's) gets the project
        on PYTHONPATH, and without this repository's pytest plugins, which
        cost a second a run (pytest-copier), unless ``with_our_plugins``.
        """
        if python is not None:
            env = {"PYTHONPATH": str(self.path), **env}
            if not with_our_plugins:
                args = ("-p", "no:copier", "-p", "no:gitconfig", "-p", "no:dir-equal", *args)
        return self.run(
            python or self.python, "-m", "pytest", "-p", "no:cacheprovider", *args,
            check=False, **env,
        )  # fmt: skip

    def git(self, *args: str) -> str:
        return self.run("git", *args).stdout

    # -- the same commands in this process ------------------------------------------

    @contextmanager
    def imported(self) -> Iterator[None]:
        """This process as a command run in the project sees it: its environment, its package.

        The package is imported afresh each time (models.py may have changed),
        and forgotten afterwards, with the environment and ``sys.path``
        (``prepend_sys_path``) restored.
        """
        saved_environ, saved_path = dict(os.environ), list(sys.path)
        saved_dont_write_bytecode = sys.dont_write_bytecode
        os.environ.clear()
        os.environ.update(self.env)
        sys.path.insert(0, str(self.path))  # as `pip install -e .` or `python -m` in the project
        sys.dont_write_bytecode = True  # see clean_environ(): no stale models.py bytecode
        self._forget_package()
        importlib.invalidate_caches()
        try:
            yield
        finally:
            self._forget_package()
            sys.dont_write_bytecode = saved_dont_write_bytecode
            sys.path[:] = saved_path
            os.environ.clear()
            os.environ.update(saved_environ)

    def _forget_package(self) -> None:
        name = self.program_name
        for module in [m for m in sys.modules if m == name or m.startswith(f"{name}.")]:
            del sys.modules[module]

    def command(
        self,
        name: str,
        *args: Any,
        attributes: dict[str, Any] | None = None,
        x: list[str] | None = None,
        **kwargs: Any,
    ) -> Output:
        """Run ``alembic.command.<name>`` on the project's alembic.ini, as ``alembic`` would.

        ``attributes`` go to ``config.attributes`` (a Connection handed over);
        ``x`` are ``-x`` arguments, as ``alembic -x key=value`` passes them.
        Returns what the command printed, and what Alembic logged (INFO and up).
        """
        stdout, log = io.StringIO(), io.StringIO()
        config = Config(str(self.path / "alembic.ini"), output_buffer=stdout, stdout=stdout)
        if x is not None:
            config.cmd_opts = argparse.Namespace(x=x)
        config.attributes["configure_logger"] = False  # pytest owns this process's logging
        config.attributes.update(attributes or {})
        handler = logging.StreamHandler(log)
        handler.setFormatter(logging.Formatter("%(levelname)-5.5s [%(name)s] %(message)s"))
        logger = logging.getLogger("alembic")
        saved_level = logger.level
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        try:
            with self.imported():
                getattr(alembic.command, name)(config, *args, **kwargs)
        finally:
            logger.removeHandler(handler)
            logger.setLevel(saved_level)
        return Output(stdout.getvalue(), log.getvalue())

    def autogenerate(self, message: str) -> Path:
        """``alembic revision --autogenerate -m MESSAGE``; return the file it wrote."""
        before = set(self.versions())
        self.command("revision", message=message, autogenerate=True)
        (written,) = set(self.versions()) - before
        return written

    @contextmanager
    def migration_lock_held(self) -> Iterator[Callable[[], bool]]:
        """Hold the service's migration lock, as a replica busy migrating would.

        Yields a function telling whether an upgrade started meanwhile is waiting
        for the lock after opening its database connection.
        """
        if self.database_url.startswith("sqlite"):
            database = Path(self.database_url.removeprefix("sqlite:///").split("?")[0])
            with FileLock(f"{database}.lock"):  # "a lock file beside the database"
                # SQLite creates the file on connect; the lock comes right after.
                yield database.exists
            return
        with self.imported():
            guards = importlib.import_module(f"{self.program_name}.migration_machinery.guards")
        engine = sa.create_engine(self.database_url, poolclass=sa.NullPool)
        waiting = "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        with engine.connect() as holder, engine.connect() as observer:
            holder.execute(
                sa.text("SELECT pg_advisory_lock(:key)"), {"key": guards.ADVISORY_LOCK_KEY}
            )
            holder.commit()  # a session-level lock outlives the transaction
            yield lambda: bool(observer.execute(sa.text(waiting)).scalar())
        engine.dispose()

    # -- what is in its database -------------------------------------------------------

    def engine(self) -> sa.Engine:
        return sa.create_engine(self.database_url, poolclass=sa.NullPool)

    def tables(self) -> set[str]:
        """The tables of the models and Alembic's version table.

        Not the migrations' record, alembic_version_history (tests/test_production.py).
        """
        engine = self.engine()
        try:
            return set(sa.inspect(engine).get_table_names()) - {HISTORY_TABLE}
        finally:
            engine.dispose()

    def columns(self, table: str) -> set[str]:
        engine = self.engine()
        try:
            return {column["name"] for column in sa.inspect(engine).get_columns(table)}
        finally:
            engine.dispose()

    def version_rows(self) -> list[str]:
        engine = self.engine()
        try:
            with engine.connect() as connection:
                if not sa.inspect(connection).has_table("alembic_version"):
                    return []
                query = sa.text("SELECT version_num FROM alembic_version")
                return sorted(connection.execute(query).scalars())
        finally:
            engine.dispose()

    def schema(self, url: str | None = None) -> dict[str, str]:
        """The database described object by object by the project's own comparison
        (``migration_machinery/schema.py``: what its create_schema test and db squash use)."""
        with self.imported():
            module = importlib.import_module(f"{self.program_name}.migration_machinery.schema")
            engine = sa.create_engine(url or self.database_url, poolclass=sa.NullPool)
            try:
                with engine.connect() as connection:
                    described: dict[str, str] = module.schema_of(connection)
                    return described
            finally:
                engine.dispose()


def rendered_files(root: Path) -> set[str]:
    """The files Copier wrote under ``root``: not git's, not the bytecode the suite
    compiles beside them (:func:`precompile`; the template holds no Python file)."""
    return {
        path.relative_to(root).as_posix()
        for path in root.rglob("*")
        if path.is_file() and not {".git", "__pycache__"} & set(path.relative_to(root).parts)
    }


def precompile(tree: Path) -> None:
    """Bytecode for the rendered modules, copied with them into every test's project.

    Each test's copy is a new path, so without it every test (and each command
    it runs) compiles the package, env.py and the revisions from source: a
    tenth of a second a test.  Checked-hash pycs: a test's edit to a module is
    seen whatever its mtime (a timestamp pyc would miss an edit of the same
    size within the second of the render).
    """
    compileall.compile_dir(
        tree, quiet=1, workers=1, invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH
    )


class Renderer:
    """Renders the template with the real Copier once per answer set; copies per test.

    ``cache`` may be shared by the session's xdist workers: each answer set is
    then rendered once per session, not once per worker (a render takes a
    second; a copy, milliseconds).
    """

    def __init__(self, template: Path, cache: Path) -> None:
        self.template = template
        self.cache = cache
        self._rendered: dict[tuple[tuple[str, str], ...], Path] = {}

    def rendered(self, **answers: Any) -> Path:
        """The project rendered with ``answers`` (over DEFAULT_ANSWERS): do not edit it."""
        from copier import run_copy

        data = {**DEFAULT_ANSWERS, **answers}
        key = tuple(sorted((name, repr(value)) for name, value in data.items()))
        if key not in self._rendered:
            digest = hashlib.sha256(repr(key).encode()).hexdigest()[:16]
            destination = self.cache / f"answers-{digest}" / data["program_name"]
            with FileLock(self.cache / f"answers-{digest}.lock"):
                if not destination.exists():  # another worker's render, complete, or none
                    partial = self.cache / f"answers-{digest}.partial-{os.getpid()}"
                    shutil.rmtree(partial, ignore_errors=True)
                    run_copy(str(self.template), partial, data=data, defaults=True, quiet=True)
                    precompile(partial)
                    destination.parent.mkdir(exist_ok=True)
                    partial.rename(destination)
            self._rendered[key] = destination
        return self._rendered[key]

    def new(self, root: Path, database_url: str | None = None, **answers: Any) -> Project:
        """A fresh copy of the rendered project in ``root``, with its own SQLite file and home.

        ``database_url`` points it at another database.
        """
        source = self.rendered(**answers)
        path = root / source.name
        shutil.copytree(source, path)
        env = clean_environ(root / "home")
        env[f"{source.name.upper()}_DATABASE_URL"] = (
            database_url or f"sqlite:///{root / 'db.sqlite'}"
        )
        return Project(path=path, program_name=source.name, env=env)
