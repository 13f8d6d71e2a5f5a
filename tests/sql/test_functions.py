"""The function allow-list: every allow-listed Postgres function passes the validator and runs in the sandbox
whatever expression class sqlglot parses it into, and no other function of the server gets through."""

from __future__ import annotations

import pytest
from psycopg_pool import ConnectionPool
from sqlglot import exp

from rag_server.domains import Domain
from rag_server.errors import SqlRejected
from rag_server.sql.catalog import Catalog
from rag_server.sql.sandbox import SandboxLimits, execute
from rag_server.sql.validator import (
    ALLOWED_FUNCTIONS,
    FUNCTION_CALLS,
    SYNTAX_CALLS,
    allowed_classes,
    validate,
)

LIMITS = SandboxLimits(row_cap=10, statement_timeout_ms=3000, max_cost=1e6)
CALLS = [(name, call) for name, calls in FUNCTION_CALLS.items() for call in calls]

# Functions that read or change server state, and must stay refused whatever sqlglot makes of them.
HOSTILE_CALLS = [
    "pg_sleep(1)",
    "pg_sleep_for('1 second')",
    "pg_read_file('/etc/passwd')",
    "pg_read_file('/etc/passwd', 0, 10)",
    "pg_read_binary_file('/etc/passwd')",
    "lo_import('/etc/passwd')",
    "lo_export(1, '/tmp/x')",
    "dblink('host=evil', 'SELECT 1')",
    "set_config('role', 'postgres', false)",
    "current_setting('data_directory')",
    "current_setting('data_directory', true)",
    "pg_advisory_lock(1)",
    "pg_advisory_lock(1, 2)",
    "pg_try_advisory_lock(1)",
    "pg_advisory_lock_shared(1)",
    "pg_advisory_xact_lock(1)",
    "pg_cancel_backend(1)",
    "pg_terminate_backend(1)",
    "pg_terminate_backend(1, 100)",
    "txid_current()",
    "pg_current_xact_id()",
    "nextval('s')",
    "setval('s', 1)",
    "setval('s', 1, false)",
    "version()",
    "current_user",
    "current_database()",
    "pg_backend_pid()",
    "query_to_xml('DELETE FROM orders', true, true, '')",
    "generate_series(1, 3)",
    "unnest(ARRAY[1])",
    '"pg_sleep"(1)',
]


def test_every_call_names_its_function() -> None:
    for name, call in CALLS:
        assert call.lower().startswith(f"{name}("), call
    assert exp.Anonymous not in allowed_classes()


@pytest.mark.parametrize(("name", "call"), CALLS, ids=[call for _, call in CALLS])
def test_every_allowed_signature_passes_and_runs_in_the_sandbox(
    name: str, call: str, module_pool: ConnectionPool, shop_catalog: Catalog
) -> None:
    validated = validate(f"SELECT {call} AS value", shop_catalog, LIMITS.row_cap)
    result = execute(module_pool, validated, shop_catalog.schema_name, LIMITS)
    assert result.columns == ["value"] and len(result.rows) == 1, result


@pytest.mark.parametrize("call", SYNTAX_CALLS)
def test_syntax_modelled_as_functions_passes_and_runs(
    call: str, module_pool: ConnectionPool, shop_catalog: Catalog
) -> None:
    validated = validate(f"SELECT {call} AS value", shop_catalog, LIMITS.row_cap)
    assert len(execute(module_pool, validated, shop_catalog.schema_name, LIMITS).rows) == 1


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (
            "SELECT to_timestamp(order_id) AS t FROM orders ORDER BY order_id LIMIT 1",
            "1970-01-01T00:00:10+00:00",
        ),
        ("SELECT to_char(order_date, 'YYYY-MM') AS m FROM orders ORDER BY order_id LIMIT 1", "2024-03"),
        ("SELECT date_part('month', order_date) AS m FROM orders ORDER BY order_id LIMIT 1", 3.0),
        (
            "SELECT string_agg(status, ',' ORDER BY order_id) AS s FROM orders",
            "paid,refunded,paid,paid,paid,failed",
        ),
        (
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY amount) AS p FROM orders",
            195.25,
        ),
        ("SELECT position('a' IN status) AS p FROM orders ORDER BY order_id LIMIT 1", 2),
        ("SELECT count(*) AS n FROM orders WHERE date_trunc('month', order_date) = DATE '2024-03-01'", 2),
        ("SELECT age(DATE '2024-03-02', order_date) AS a FROM orders ORDER BY order_id LIMIT 1", 86400.0),
    ],
)
def test_functions_over_catalog_columns(
    sql: str, expected: object, module_pool: ConnectionPool, shop_catalog: Catalog
) -> None:
    result = execute(
        module_pool, validate(sql, shop_catalog, LIMITS.row_cap), shop_catalog.schema_name, LIMITS
    )
    assert result.rows[0][0] == expected, result


@pytest.mark.parametrize("call", HOSTILE_CALLS)
def test_hostile_functions_are_refused(call: str, shop_catalog: Catalog) -> None:
    with pytest.raises(SqlRejected) as rejected:
        validate(f"SELECT {call}", shop_catalog, LIMITS.row_cap)
    assert rejected.value.rule == "function_not_allowed", str(rejected.value)


def test_no_function_of_the_server_passes_unless_allow_listed(
    module_pool: ConnectionPool, shop: Domain, shop_catalog: Catalog
) -> None:
    # Every function name Postgres knows, called with several argument shapes: whatever class sqlglot parses
    # it into, the validator accepts it only when it is on the allow-list.
    with module_pool.connection() as conn:
        names = [row[0] for row in conn.execute("SELECT DISTINCT proname FROM pg_proc ORDER BY 1")]
    assert len(names) > 2000
    shapes = ["", "1", "'a'", "1, 2", "'a', 'b'", "1, 2, 3", "'a', 'b', 'c'"]
    accepted = set()
    for name in names:
        if name in ALLOWED_FUNCTIONS or not name.isidentifier():
            continue
        for shape in shapes:
            try:
                validate(f"SELECT {name}({shape})", shop_catalog, LIMITS.row_cap)
            except SqlRejected:
                continue
            accepted.add(name)
    # sqlglot reads these two as syntax, not calls: interval(1) is a type cast and like('a', 'b') the operator.
    assert accepted == {"interval", "like"}, sorted(accepted)
