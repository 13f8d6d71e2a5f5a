"""Red team: hostile statements are rejected by the validator or contained by the sandbox, and the database is
unchanged afterwards. Prompt-injection questions through the whole route are in test_route.py."""

from __future__ import annotations

import hashlib
from typing import Any

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from rag_server.domains import Domain
from rag_server.errors import SqlExecutionError, SqlRejected
from rag_server.sql.catalog import Catalog
from rag_server.sql.sandbox import SandboxLimits, _enter_sandbox, execute
from rag_server.sql.validator import ValidatedSql, validate

LIMITS = SandboxLimits(row_cap=100, statement_timeout_ms=1500, max_cost=1e6)
S = "domain_tables_{id}"  # the shop domain's own schema, filled in per test

# (statement, the rule the validator must name)
HOSTILE: list[tuple[str, str]] = [
    # stacked statements and comments hiding a second one
    ("SELECT 1 FROM orders; DROP TABLE orders", "single_statement"),
    ("SELECT * FROM orders; DELETE FROM orders", "single_statement"),
    ("SELECT * FROM orders;;UPDATE orders SET amount = 0", "single_statement"),
    ("SELECT * FROM orders -- harmless\n; DROP TABLE customers", "single_statement"),
    ("SELECT * FROM orders /* ; */ ; TRUNCATE orders", "single_statement"),
    ("SELECT 1 FROM orders; SELECT pg_sleep(10)", "single_statement"),
    ("/* comment only */", "syntax"),
    ("", "syntax"),
    # plain writes, DDL and commands
    ("DROP TABLE orders", "select_only"),
    ("DELETE FROM orders", "select_only"),
    ("UPDATE orders SET amount = 0", "select_only"),
    ("INSERT INTO orders (order_id) VALUES (99)", "select_only"),
    ("TRUNCATE orders", "select_only"),
    ("ALTER TABLE orders DROP COLUMN amount", "select_only"),
    ("CREATE TABLE evil AS SELECT * FROM orders", "select_only"),
    ("GRANT ALL ON orders TO PUBLIC", "select_only"),
    ("COPY orders TO '/tmp/orders.csv'", "select_only"),
    ("COPY (SELECT 1) TO PROGRAM 'id'", "select_only"),
    ("DO $$ BEGIN EXECUTE 'DROP TABLE orders'; END $$", "select_only"),
    ("CALL some_procedure()", "select_only"),
    ("SET ROLE postgres", "select_only"),
    ("SET statement_timeout = 0", "select_only"),
    ("RESET ROLE", "select_only"),
    ("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE", "select_only"),
    ("LISTEN channel", "select_only"),
    ("NOTIFY channel, 'x'", "syntax"),
    ("BEGIN", "select_only"),
    ("COMMIT", "select_only"),
    ("VACUUM orders", "select_only"),
    ("EXPLAIN ANALYZE DELETE FROM orders", "select_only"),
    ("PREPARE p AS DELETE FROM orders", "select_only"),
    # writes hidden inside a read
    ("WITH gone AS (DELETE FROM orders RETURNING *) SELECT * FROM gone", "write"),
    ("WITH up AS (UPDATE orders SET amount = 0 RETURNING order_id) SELECT count(*) FROM up", "write"),
    ("WITH ins AS (INSERT INTO orders (order_id) VALUES (1) RETURNING 1) SELECT * FROM ins", "write"),
    ("SELECT * INTO stolen FROM orders", "select_into"),
    ("SELECT * FROM orders FOR UPDATE", "locking"),
    ("SELECT * FROM orders FOR SHARE", "locking"),
    # functions with side effects or secrets
    ("SELECT pg_sleep(10)", "function_not_allowed"),
    ("SELECT pg_sleep_for('10 seconds')", "function_not_allowed"),
    ("SELECT count(*) FROM orders WHERE pg_sleep(1) IS NOT NULL", "function_not_allowed"),
    ("SELECT pg_read_file('/etc/passwd')", "function_not_allowed"),
    ("SELECT pg_read_binary_file('/etc/passwd')", "function_not_allowed"),
    ("SELECT pg_ls_dir('.')", "function_not_allowed"),
    ("SELECT lo_import('/etc/passwd')", "function_not_allowed"),
    ("SELECT lo_export(1, '/tmp/x')", "function_not_allowed"),
    ("SELECT set_config('role', 'postgres', false)", "function_not_allowed"),
    ("SELECT current_setting('data_directory')", "function_not_allowed"),
    ("SELECT pg_terminate_backend(1)", "function_not_allowed"),
    ("SELECT pg_cancel_backend(1)", "function_not_allowed"),
    ("SELECT dblink('host=evil', 'SELECT 1')", "function_not_allowed"),
    ("SELECT nextval('some_seq')", "function_not_allowed"),
    ("SELECT query_to_xml('DELETE FROM orders', true, true, '')", "function_not_allowed"),
    ("SELECT amount FROM orders WHERE order_id = (SELECT pg_backend_pid())", "function_not_allowed"),
    ("SELECT version()", "function_not_allowed"),
    ("SELECT txid_current()", "function_not_allowed"),
    ("SELECT pg_advisory_lock(1)", "function_not_allowed"),
    ("SELECT * FROM generate_series(1, 100000000)", "table_function"),
    ("SELECT setval('some_seq', 1)", "function_not_allowed"),
    ("SELECT pg_advisory_lock_shared(1)", "function_not_allowed"),
    ('SELECT "pg_sleep"(1)', "function_not_allowed"),
    # a schema's function of an allow-listed name is not the built-in one
    ("SELECT public.abs(1)", "other_schema"),
    ("SELECT pg_catalog.pg_sleep(1)", "other_schema"),
    ("SELECT max(amount) FROM orders WHERE order_id = public.round(10)", "other_schema"),
    # system catalogs and other schemas
    ("SELECT * FROM pg_catalog.pg_authid", "other_schema"),
    ("SELECT * FROM pg_authid", "unknown_table"),
    ("SELECT usename, passwd FROM pg_shadow", "unknown_table"),
    ("SELECT * FROM information_schema.tables", "other_schema"),
    ("SELECT * FROM public.secrets", "other_schema"),
    ("SELECT * FROM secrets", "unknown_table"),
    ("SELECT * FROM chunks", "unknown_table"),
    ("SELECT * FROM postgres.public.secrets", "other_schema"),
    ("SELECT o.amount FROM orders o JOIN public.secrets s ON true", "other_schema"),
    ("SELECT * FROM orders WHERE order_id IN (SELECT 1 FROM pg_stat_activity)", "unknown_table"),
    # columns that are not the catalog's
    ("SELECT ctid, xmin FROM orders", "unknown_column"),
    ("SELECT password FROM customers", "unknown_column"),
    ("SELECT o.secret FROM orders o", "unknown_column"),
    # quoted identifier and Unicode tricks
    ('SELECT * FROM "pg_catalog"."pg_authid"', "other_schema"),
    ('SELECT * FROM "Orders"', "unknown_table"),
    ('SELECT * FROM "orders; DROP TABLE orders"', "unknown_table"),
    ('SELECT * FROM U&"\\0070g_authid"', "syntax"),
    ("SELECT * FROM ｏｒｄｅｒｓ", "unknown_table"),
    ("SELECT * FROM orders\u037e DROP TABLE orders", "syntax"),
    ("SELECT * FROM ord\u200bers", "identifier"),
    ("SELECT 1 FROM orders\x00; DROP TABLE orders", "syntax"),
    ("SELECT $1 FROM orders", "parameter"),
]

# Valid statements whose cost must be contained by the sandbox (cost cap or timeout), not by the validator.
EXPENSIVE = [
    "SELECT count(*) FROM " + ", ".join(f"orders o{i}" for i in range(12)),
    "SELECT sum(a.amount) FROM orders a " + " ".join(f"CROSS JOIN customers c{i}" for i in range(14)),
    "SELECT o1.order_id FROM orders o1, orders o2, orders o3, orders o4, orders o5, orders o6, orders o7, "
    "orders o8, orders o9, orders o10 ORDER BY o1.amount * o10.amount DESC",
]

# Statements that bypass the validator on purpose: the sandbox alone must contain them.
SANDBOX_ONLY = [
    "DELETE FROM {s}.orders",
    "UPDATE {s}.orders SET amount = 0",
    "INSERT INTO {s}.orders (order_id) VALUES (99)",
    "CREATE TABLE {s}.evil (x int)",
    "DROP TABLE {s}.orders",
    "SELECT token FROM public.secrets",
    "SELECT pg_read_file('/etc/passwd')",
    "SELECT pg_sleep(30)",
    "SELECT * FROM pg_catalog.pg_authid",
    "SELECT lo_import('/etc/passwd')",
    "COPY (SELECT 1) TO '/tmp/rag-redteam.csv'",
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity",
]


def fingerprint(pool: ConnectionPool) -> str:
    """Everything a hostile statement could change: table contents, relations, roles, settings."""
    digest = hashlib.sha256()
    with pool.connection() as conn:
        relations = conn.execute(
            "SELECT n.nspname, c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') ORDER BY 1, 2"
        ).fetchall()
        digest.update(repr(relations).encode())
        for schema, name, kind in relations:
            if kind == "r":
                rows = conn.execute(f'SELECT * FROM "{schema}"."{name}"').fetchall()
                digest.update(repr(sorted(map(repr, rows))).encode())
        digest.update(
            repr(conn.execute("SELECT rolname, rolsuper FROM pg_roles ORDER BY 1").fetchall()).encode()
        )
    return digest.hexdigest()


@pytest.fixture(scope="module")
def before(module_pool: ConnectionPool, shop: Domain) -> str:
    return fingerprint(module_pool)


def test_suite_is_large_enough() -> None:
    assert len(HOSTILE) + len(EXPENSIVE) + len(SANDBOX_ONLY) >= 60


@pytest.mark.parametrize(("statement", "rule"), HOSTILE, ids=[f"h{i:02d}" for i in range(len(HOSTILE))])
def test_hostile_statement_is_rejected_with_its_rule(
    statement: str, rule: str, shop_catalog: Catalog, before: str
) -> None:
    with pytest.raises(SqlRejected) as rejected:
        validate(statement, shop_catalog, LIMITS.row_cap)
    assert rejected.value.rule == rule, str(rejected.value)


@pytest.mark.parametrize("statement", EXPENSIVE)
def test_expensive_queries_pass_validation_and_are_stopped_by_the_sandbox(
    statement: str, module_pool: ConnectionPool, shop_catalog: Catalog, before: str
) -> None:
    validated = validate(statement, shop_catalog, LIMITS.row_cap)
    with pytest.raises(SqlExecutionError, match="planned cost"):
        execute(module_pool, validated, shop_catalog.schema_name, LIMITS)


@pytest.mark.parametrize("statement", SANDBOX_ONLY)
def test_sandbox_contains_what_the_validator_would_have_stopped(
    statement: str, module_pool: ConnectionPool, shop_catalog: Catalog, before: str
) -> None:
    # Straight into the sandbox's session (role, read-only transaction, timeout), skipping validator and EXPLAIN.
    with (
        module_pool.connection() as conn,
        pytest.raises(psycopg.Error) as stopped,
        conn.transaction(force_rollback=True),
    ):
        _enter_sandbox(conn, shop_catalog.schema_name, LIMITS)
        conn.execute(statement.format(s=shop_catalog.schema_name))
    message = str(stopped.value)
    assert any(
        reason in message for reason in ("read-only transaction", "permission denied", "statement timeout")
    ), message


def test_sleep_is_cut_by_the_statement_timeout(module_pool: ConnectionPool, shop_catalog: Catalog) -> None:
    raw = ValidatedSql("SELECT pg_sleep(30)", (), 1)
    with pytest.raises(SqlExecutionError, match="statement timeout"):
        execute(module_pool, raw, shop_catalog.schema_name, LIMITS)


def test_sandbox_session_is_clean_afterwards(module_pool: ConnectionPool, shop_catalog: Catalog) -> None:
    validated = validate("SELECT count(*) FROM orders", shop_catalog, 10)
    execute(module_pool, validated, shop_catalog.schema_name, LIMITS)
    with module_pool.connection() as conn:
        role, read_only = conn.execute(
            "SELECT current_user, current_setting('transaction_read_only')"
        ).fetchone()
        assert role != "rag_sql_reader"
        assert read_only == "off"
        conn.execute("SELECT token FROM public.secrets")  # the pool's own connections keep their rights


def test_database_unchanged_after_the_whole_suite(module_pool: ConnectionPool, before: str) -> None:
    # Runs last in this module: every hostile statement above has been tried by now.
    for statement, _ in HOSTILE:
        try:
            validate(statement, _catalog(module_pool), LIMITS.row_cap)
        except SqlRejected:
            continue
    assert fingerprint(module_pool) == before


def _catalog(pool: ConnectionPool) -> Any:
    from rag_server.domains import get_domain
    from rag_server.sql.catalog import load_catalog

    with pool.connection() as conn:
        return load_catalog(conn, get_domain(conn, "shop"))
