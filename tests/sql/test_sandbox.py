"""The sandbox alone, with the validator bypassed: a raw statement run the way `execute` runs validated SQL
can take no advisory lock, signal no backend, switch no role and read no catalog that lists the server's roles,
sessions or relations (sql/005_sandbox_hardening.sql), and the pooled connection holds nothing afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg_pool import ConnectionPool

from rag_server.config import Settings
from rag_server.db import EmbeddedServer, list_migrations, migrate, open_pool
from rag_server.domains import Domain
from rag_server.errors import SqlExecutionError
from rag_server.sql.catalog import Catalog
from rag_server.sql.sandbox import SandboxLimits, execute
from rag_server.sql.validator import ValidatedSql

LIMITS = SandboxLimits(row_cap=100, statement_timeout_ms=1500, max_cost=1e6)

# Statements the validator refuses, run raw through the sandbox: each must fail on a missing right.
RAW_HOSTILE = [
    "SELECT pg_advisory_lock(7)",
    "SELECT pg_advisory_lock(7, 8)",
    "SELECT pg_advisory_lock_shared(7)",
    "SELECT pg_try_advisory_lock(7)",
    "SELECT pg_try_advisory_lock_shared(7, 8)",
    "SELECT pg_advisory_xact_lock(7)",
    "SELECT pg_advisory_unlock_all()",
    "SELECT pg_cancel_backend(pg_backend_pid())",
    "SELECT pg_terminate_backend(pg_backend_pid())",
    "SELECT pg_cancel_backend(pid) FROM pg_stat_activity",
    "SELECT set_config('role', 'none', true), query_to_xml('SELECT token FROM public.secrets', true, true, '')",
    "SELECT set_config('statement_timeout', '0', false)",
    "SELECT usename FROM pg_user",
    "SELECT rolname FROM pg_roles",
    "SELECT datname, usename, query FROM pg_stat_activity",
    "SELECT relname FROM pg_stat_all_tables",
    "SELECT relname FROM pg_class",
    "SELECT nspname FROM pg_namespace",
    "SELECT attname FROM pg_attribute",
    "SELECT proname, prosrc FROM pg_proc",
    "SELECT tablename FROM pg_tables",
    "SELECT definition FROM pg_views",
    "SELECT name, setting FROM pg_settings",
    "SELECT datname FROM pg_database",
    "SELECT * FROM pg_locks",
    "SELECT table_name FROM information_schema.tables",
    "SELECT column_name FROM information_schema.columns",
]


def _advisory_locks(pool: ConnectionPool) -> list[tuple[object, ...]]:
    with pool.connection() as conn:
        return conn.execute(
            "SELECT pid, objid FROM pg_locks WHERE locktype = 'advisory'"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ).fetchall()


@pytest.mark.parametrize("statement", RAW_HOSTILE)
def test_raw_statement_is_refused_by_the_role(
    statement: str, module_pool: ConnectionPool, shop_catalog: Catalog
) -> None:
    with pytest.raises(SqlExecutionError, match="permission denied"):
        execute(module_pool, ValidatedSql(statement, (), 1), shop_catalog.schema_name, LIMITS)
    assert _advisory_locks(module_pool) == []


def test_sandbox_still_reads_its_tables_and_plans(module_pool: ConnectionPool, shop_catalog: Catalog) -> None:
    raw = ValidatedSql(f'SELECT count(*) FROM "{shop_catalog.schema_name}".orders', ("orders",), 10)
    result = execute(module_pool, raw, shop_catalog.schema_name, LIMITS)
    assert result.rows == [[6]] and result.cost > 0


@pytest.fixture
def one_connection(module_settings: Settings, shop: Domain) -> Iterator[ConnectionPool]:
    """A pool of exactly one connection, so that every call below runs on the same backend."""
    with open_pool(module_settings.model_copy(update={"pool_min_size": 1, "pool_max_size": 1})) as pool:
        yield pool


def test_no_session_lock_survives_the_sandbox(one_connection: ConnectionPool, shop_catalog: Catalog) -> None:
    # A session-level lock on the pooled connection, as a statement with the rights to take one would leave it
    # (the owner has them; the reader role has not, above): leaving the sandbox releases it.
    with one_connection.connection() as conn:
        conn.execute("SELECT pg_advisory_lock(4242)")
        pid = conn.info.backend_pid
    assert [row[0] for row in _advisory_locks_of(one_connection, pid)] == [pid]
    execute(one_connection, ValidatedSql("SELECT pg_backend_pid()", (), 1), shop_catalog.schema_name, LIMITS)
    assert _advisory_locks_of(one_connection, pid) == []
    # Also when the statement fails.
    with one_connection.connection() as conn:
        conn.execute("SELECT pg_advisory_lock(4242)")
    with pytest.raises(SqlExecutionError):
        execute(one_connection, ValidatedSql("SELECT 1/0", (), 1), shop_catalog.schema_name, LIMITS)
    assert _advisory_locks_of(one_connection, pid) == []


def _advisory_locks_of(pool: ConnectionPool, pid: int) -> list[tuple[object, ...]]:
    with pool.connection() as conn:
        assert conn.info.backend_pid == pid
        return conn.execute(
            "SELECT pid, objid FROM pg_locks WHERE locktype = 'advisory' AND pid = %s", (pid,)
        ).fetchall()


def test_migrations_run_as_a_plain_user_and_leave_its_rights(embedded: EmbeddedServer) -> None:
    # Not a superuser: the hardening cannot revoke the bootstrap superuser's grants, says so, and goes on.
    name = f"rag_plain_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(embedded.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'plain'").format(sql.Identifier(name)))
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(name))
        )
        # The first migration creates pgvector, which a plain user may not: the admin does it beforehand.
        with psycopg.connect(_url(embedded.admin_url, "postgres", name), autocommit=True) as db:
            db.execute("CREATE EXTENSION IF NOT EXISTS vector")
    url = _url(embedded.admin_url, name, name, "plain")
    applied = migrate(url)
    assert [m.version for m in applied] == [
        m.version for m in list_migrations()
    ]  # all of them, as the plain user
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(1), count(*) FROM pg_class")
        granted = "SELECT has_function_privilege('public', 'pg_advisory_lock(bigint)', 'EXECUTE')"
        assert conn.execute(granted).fetchone() == (True,)


def _url(admin_url: str, user: str, database: str, password: str = "") -> str:
    return admin_url.replace("postgres:@/postgres?", f"{user}:{password}@/{database}?", 1)
