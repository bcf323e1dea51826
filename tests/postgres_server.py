"""A throw-away PostgreSQL server for tests: Debian's ``postgresql`` binaries in a temporary directory.

The Butler's PostgreSQL registry needs the server's ``btree_gist`` extension
(in ``postgresql-contrib``), so a server without it is no server for these
tests. The pip-installable ``pgserver`` ships PostgreSQL without it.
"""

from __future__ import annotations

__all__ = ["PostgresServer", "PostgresUnavailable", "start_postgres_server"]

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid

_PREFIX = "radio_clean-postgres-"


class PostgresUnavailable(RuntimeError):  # noqa: N818 (a reason to skip, not a failure)
    """No PostgreSQL server can be started here; the message says why."""


def _binaries() -> str:
    """Directory of ``initdb``, ``pg_ctl`` and ``postgres`` of the newest PostgreSQL installed."""
    found = [os.path.dirname(path) for path in glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")]
    on_path = shutil.which("pg_ctl")
    if on_path:
        found.append(os.path.dirname(os.path.realpath(on_path)))
    found = [d for d in found if os.path.exists(os.path.join(d, "initdb"))]
    if not found:
        raise PostgresUnavailable(
            "no PostgreSQL server is installed (no initdb/pg_ctl under /usr/lib/postgresql/*/bin or on PATH; "
            "on Debian: apt-get install postgresql postgresql-contrib)"
        )
    return sorted(found, key=lambda d: [int(p) for p in d.split("/") if p.isdigit()] or [0])[-1]


def _has_btree_gist(binaries: str) -> bool:
    sharedir = subprocess.run(
        [os.path.join(binaries, "pg_config"), "--sharedir"], capture_output=True, text=True
    ).stdout.strip()
    candidates = [sharedir] if sharedir else []
    version = os.path.basename(os.path.dirname(binaries))
    candidates.append(f"/usr/share/postgresql/{version}")
    return any(os.path.exists(os.path.join(d, "extension", "btree_gist.control")) for d in candidates)


class PostgresServer:
    """A running server listening only on a Unix socket, with trust authentication.

    Parameters
    ----------
    directory : `str`
        Holds the data directory and the socket.
    binaries : `str`
        Directory of the server's programs.
    user : `str` or `None`
        System user the server runs as (the server refuses to run as root).
    """

    def __init__(self, directory: str, binaries: str, user: str | None) -> None:
        self.directory = directory
        self.binaries = binaries
        self.user = user

    @property
    def socket_dir(self) -> str:
        return self.directory

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL of ``database`` (psycopg over the server's socket)."""
        return f"postgresql://postgres@/{database}?host={self.socket_dir}"

    def _run(self, *arguments: str) -> subprocess.CompletedProcess:
        command = [os.path.join(self.binaries, arguments[0]), *arguments[1:]]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, cwd=self.directory)

    def start(self) -> None:
        data = os.path.join(self.directory, "data")
        result = self._run("initdb", "-D", data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8")
        if result.returncode:
            raise PostgresUnavailable(f"initdb failed: {result.stderr.strip() or result.stdout.strip()}")
        options = f"-k {self.socket_dir} -c listen_addresses='' -c fsync=off -c max_connections=200"
        log = os.path.join(self.directory, "server.log")
        result = self._run("pg_ctl", "-D", data, "-l", log, "-o", options, "-w", "-t", "60", "start")
        if result.returncode:
            tail = open(log).read()[-500:] if os.path.exists(log) else result.stderr
            raise PostgresUnavailable(f"the PostgreSQL server did not start: {tail.strip()}")

    def create_database(self) -> str:
        """A new database with ``btree_gist`` (which the Butler's registry needs); return its URL."""
        import sqlalchemy

        name = f"test_{uuid.uuid4().hex[:12]}"
        engine = sqlalchemy.create_engine(self.url(), isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
        engine.dispose()
        engine = sqlalchemy.create_engine(self.url(name), isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("CREATE EXTENSION btree_gist"))
        engine.dispose()
        return self.url(name)

    def stop(self) -> None:
        self._run("pg_ctl", "-D", os.path.join(self.directory, "data"), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.directory, ignore_errors=True)


def start_postgres_server() -> PostgresServer:
    """Start a server in a new temporary directory.

    Raises
    ------
    PostgresUnavailable
        If no server with ``btree_gist`` is installed, or it cannot start.
    """
    try:
        import psycopg  # noqa: F401  (SQLAlchemy 2.1's driver of postgresql:// URLs)
    except ImportError:
        raise PostgresUnavailable("psycopg is not installed (pip install 'psycopg[binary]')") from None
    binaries = _binaries()
    if not _has_btree_gist(binaries):
        raise PostgresUnavailable(
            f"the PostgreSQL server in {binaries} has no btree_gist extension, which the Butler registry "
            "needs (on Debian: apt-get install postgresql-contrib)"
        )
    user = None
    if os.geteuid() == 0:
        # initdb and postgres refuse to run as root.
        try:
            user = pwd.getpwnam("postgres").pw_name
        except KeyError:
            raise PostgresUnavailable("running as root and there is no 'postgres' user to run the server as")
        if shutil.which("runuser") is None:
            raise PostgresUnavailable("running as root without runuser to start the server as 'postgres'")
    directory = tempfile.mkdtemp(prefix=_PREFIX)
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(directory, entry.pw_uid, entry.pw_gid)
    server = PostgresServer(directory, binaries, user)
    try:
        server.start()
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return server
