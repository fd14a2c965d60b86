"""A throwaway PostgreSQL server for the test suite.

Started from the system's server binaries (``initdb``/``pg_ctl``), tuned for speed
instead of durability, listening on 127.0.0.1 only, and thrown away on ``stop()``.

``initdb`` refuses to run as root, and CI runs as root: in that case every server
command runs as the unprivileged ``postgres`` system user (or ``nobody``), in a
directory under /tmp that this user can reach.

    with PostgresCluster.start(tmp_path) as pg:
        pg.create_role("app", "s3cret")
        pg.create_database("app", owner="app")
        url = pg.url_for("app", user="app", password="s3cret")
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg import sql

SUPERUSER = "postgres"

# The superuser may connect without a password (it is our admin connection);
# every other role must present its password over TCP, so a wrong one fails.
PG_HBA = f"""\
local all all                  trust
host  all {SUPERUSER} 127.0.0.1/32 trust
host  all all         127.0.0.1/32 scram-sha-256
"""

# Durability is worthless for a throwaway test server; speed is not.
SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "100",
    "password_encryption": "scram-sha-256",
}


#: What SETTINGS gives up for speed: a server's durability, off in tests.
DURABILITY = ("fsync", "synchronous_commit", "full_page_writes")


def find_pg_bindir() -> Path | None:
    """Return the directory holding ``initdb`` and ``pg_ctl``, or None if not installed.

    Debian/Ubuntu keep the server binaries off PATH, in /usr/lib/postgresql/<v>/bin.
    """

    def has_server(d: Path) -> bool:
        return (d / "pg_ctl").is_file() and (d / "initdb").is_file()

    if shutil.which("pg_config"):
        # libpq-dev alone ships pg_config without the server, hence has_server().
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        if out.returncode == 0 and has_server(Path(out.stdout.strip())):
            return Path(out.stdout.strip())

    def version(d: Path) -> tuple[int, ...]:
        return tuple(int(p) for p in d.parent.name.split(".") if p.isdigit())

    debian = [d for d in Path("/usr/lib/postgresql").glob("*/bin") if has_server(d)]
    if debian:
        return max(debian, key=version)

    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl and has_server(Path(pg_ctl).resolve().parent):
        return Path(pg_ctl).resolve().parent
    return None


def free_port() -> int:
    """A local TCP port nobody listens on (yet).

    The OS picks an unused port; the tiny race until the server binds it is
    covered by retrying in PostgresCluster.start().
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_user() -> str | None:
    """The unprivileged user to run the server as, or None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root, but there is no 'postgres' or 'nobody' user")


@dataclass
class PostgresCluster:
    bindir: Path
    root_dir: Path  # holds data/, the server log and the Unix socket
    port: int
    run_as: str | None = None  # the system user running the server (when we are root)
    durable: bool = False  # fsync and synchronous commits on (see start())
    _remove_on_stop: Path | None = field(default=None, repr=False)

    @property
    def data_dir(self) -> Path:
        return self.root_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.root_dir / "server.log"

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/postgres"

    # -- lifecycle ---------------------------------------------------------------

    @classmethod
    def start(
        cls, base_dir: Path, bindir: Path | None = None, *, durable: bool = False
    ) -> PostgresCluster:
        """initdb a new cluster and start it on a free port of 127.0.0.1.

        Tests want speed (no fsync); ``durable=True`` keeps PostgreSQL's own
        settings, as a deployed server has them (benchmarks).
        """
        bindir = bindir or find_pg_bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) not found")
        run_as = _server_user()
        if run_as is None:
            root_dir, remove_on_stop = Path(base_dir), None
            root_dir.mkdir(parents=True, exist_ok=True)
        else:
            # base_dir is usually a 0700 root-owned pytest dir the server user
            # cannot enter: use a fresh directory under /tmp (world-traversable).
            root_dir = Path(tempfile.mkdtemp(prefix="pg-cluster-", dir="/tmp"))
            remove_on_stop = root_dir
            root_dir.chmod(0o755)
            user = pwd.getpwnam(run_as)
            os.chown(root_dir, user.pw_uid, user.pw_gid)

        cluster = cls(bindir, root_dir, 0, run_as, durable, _remove_on_stop=remove_on_stop)
        try:
            cluster._initdb()
            for attempt in range(3):
                cluster.port = free_port()
                try:
                    log, port = str(cluster.log_file), f"-p {cluster.port}"
                    cluster._pg_ctl("start", "-l", log, "-o", port, "-t", "30")
                    break
                except RuntimeError:
                    # Someone grabbed the port between free_port() and the bind.
                    if attempt == 2 or "already in use" not in cluster._log_tail():
                        raise
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def stop(self) -> None:
        """Stop the server at once (no clean shutdown needed) and remove temp files."""
        # postmaster.pid exists exactly while the server runs: stop() is idempotent
        # and also cleans up after a start() that failed half-way.
        if (self.data_dir / "postmaster.pid").exists():
            self._pg_ctl("stop", "-m", "immediate")
        if self._remove_on_stop is not None:
            shutil.rmtree(self._remove_on_stop, ignore_errors=True)
            self._remove_on_stop = None

    def __enter__(self) -> PostgresCluster:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _initdb(self) -> None:
        help_text = subprocess.run(
            [str(self.bindir / "initdb"), "--help"], capture_output=True, text=True
        ).stdout
        options = ["-U", SUPERUSER, "-E", "UTF8"]
        options += ["--locale=C"]  # independent of the machine's locale settings
        options += ["--auth=trust"]  # replaced by PG_HBA below
        if "--no-sync" in help_text:  # PostgreSQL 10+
            options += ["--no-sync"]
        self._run("initdb", "-D", str(self.data_dir), *options)
        # Writing to the existing files keeps their owner (the server user).
        (self.data_dir / "pg_hba.conf").write_text(PG_HBA)
        settings = dict(SETTINGS)
        if self.durable:
            for key in DURABILITY:
                del settings[key]
        # Unix socket paths are limited to ~107 bytes; TCP is all we need anyway.
        settings["unix_socket_directories"] = (
            str(self.root_dir) if len(str(self.root_dir)) < 80 else ""
        )
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# Added by tests/postgres_cluster.py\n")
            for key, value in settings.items():
                quoted = value.replace("'", "''")
                conf.write(f"{key} = '{quoted}'\n")

    def _pg_ctl(self, action: str, *args: str) -> None:
        self._run("pg_ctl", action, "-D", str(self.data_dir), "-w", *args)

    def _run(self, program: str, *args: str) -> None:
        cmd = [str(self.bindir / program), *args]
        if self.run_as is not None:
            if shutil.which("runuser"):
                cmd = ["runuser", "-u", self.run_as, "--", *cmd]
            else:
                cmd = ["su", "-s", "/bin/sh", self.run_as, "-c", shlex.join(cmd)]
        # cwd: the server user may not be allowed into our current directory.
        done = subprocess.run(cmd, cwd=self.root_dir, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(
                f"{program} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
                f"\n--- server log ---\n{self._log_tail()}"
            )

    def _log_tail(self) -> str:
        try:
            lines = self.log_file.read_text(errors="replace").splitlines()
            return "\n".join(lines[-20:])
        except OSError:
            return "(no server log)"

    # -- roles and databases -----------------------------------------------------

    def _admin(self) -> psycopg.Connection[tuple[Any, ...]]:
        # autocommit: CREATE/DROP DATABASE cannot run inside a transaction.
        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user=SUPERUSER,
            dbname="postgres",
            autocommit=True,
        )

    def create_role(self, name: str, password: str, *, createdb: bool = False) -> None:
        """Create a login role (allowed to create databases if ``createdb``); the
        password is sent to the server, never printed."""
        with self._admin() as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}{}").format(
                    sql.Identifier(name),
                    sql.Literal(password),
                    sql.SQL(" CREATEDB" if createdb else ""),
                )
            )

    def create_database(self, name: str, owner: str, template: str | None = None) -> None:
        """Create a database, a copy of ``template`` if given (else of template1)."""
        copied = sql.SQL(" TEMPLATE {}").format(sql.Identifier(template or "template1"))
        with self._admin() as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}{}").format(
                    sql.Identifier(name), sql.Identifier(owner), copied
                )
            )

    def drop_database(self, name: str) -> None:
        """Drop a database if it exists, disconnecting its sessions (PostgreSQL 13+)."""
        with self._admin() as conn:
            force = sql.SQL(" WITH (FORCE)" if conn.info.server_version >= 130000 else "")
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {}{}").format(sql.Identifier(name), force)
            )

    def url_for(self, database: str, user: str, password: str) -> str:
        """A SQLAlchemy URL; user and password are %-quoted so any character works."""
        return (
            f"postgresql+psycopg://{quote(user, safe='')}:{quote(password, safe='')}"
            f"@127.0.0.1:{self.port}/{quote(database, safe='')}"
        )
