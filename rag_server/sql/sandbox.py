"""Run validated SQL where it can do no harm: as a role that may only SELECT the catalog's tables, inside a
READ ONLY transaction that is always rolled back, with a statement timeout and an EXPLAIN cost cap checked
before anything executes."""

from __future__ import annotations

import datetime as dt
import decimal
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from rag_server.config import Settings
from rag_server.errors import SqlExecutionError
from rag_server.sql.catalog import READER_ROLE
from rag_server.sql.validator import ValidatedSql


@dataclass(frozen=True)
class SandboxLimits:
    row_cap: int = 1000
    statement_timeout_ms: int = 5000
    max_cost: float = 1e7

    @classmethod
    def from_settings(cls, settings: Settings) -> SandboxLimits:
        return cls(settings.sql_row_cap, settings.sql_statement_timeout_ms, settings.sql_max_cost)


@dataclass(frozen=True)
class QueryResult:
    """What a query returned: column names, rows as JSON-ready values, and whether the row cap cut it."""

    sql: str
    columns: list[str]
    rows: list[list[Any]]
    truncated: bool
    cost: float
    timings_ms: dict[str, float] = field(default_factory=dict)


def execute(
    pool: ConnectionPool, statement: ValidatedSql, schema_name: str, limits: SandboxLimits
) -> QueryResult:
    """Execute a validated statement in the sandbox; SqlExecutionError says what stopped it."""
    timings: dict[str, float] = {}
    with pool.connection() as conn:
        try:
            with conn.transaction(force_rollback=True):
                _enter_sandbox(conn, schema_name, limits)
                started = time.perf_counter()
                cost = _planned_cost(conn, statement.sql)
                timings["explain"] = (time.perf_counter() - started) * 1000
                if cost > limits.max_cost:
                    raise SqlExecutionError(
                        f"the query's planned cost {cost:,.0f} exceeds the cap {limits.max_cost:,.0f} "
                        "(RAG_SQL_MAX_COST): narrow it with filters or aggregates"
                    )
                started = time.perf_counter()
                cursor = conn.execute(statement.sql)
                columns = [column.name for column in cursor.description or []]
                fetched = cursor.fetchmany(limits.row_cap + 1)
                timings["execute"] = (time.perf_counter() - started) * 1000
        except psycopg.errors.QueryCanceled:
            raise SqlExecutionError(
                f"the query ran past the statement timeout of {limits.statement_timeout_ms} ms"
            ) from None
        except psycopg.Error as error:
            raise SqlExecutionError(_postgres_message(error)) from None
        finally:
            _leave_sandbox(conn)
    rows = [[json_value(value) for value in row] for row in fetched[: limits.row_cap]]
    return QueryResult(statement.sql, columns, rows, len(fetched) > limits.row_cap, cost, timings)


def _enter_sandbox(conn: psycopg.Connection[Any], schema_name: str, limits: SandboxLimits) -> None:
    # READ ONLY must be the transaction's first statement; the role is switched for this transaction only.
    conn.execute("SET TRANSACTION READ ONLY")
    # Name the work in pg_stat_activity, so an operator can tell sandbox queries apart. Before the role switch:
    # the reader role may not call set_config (sql/005_sandbox_hardening.sql), which could switch it back.
    conn.execute("SELECT set_config('application_name', %s, true)", (f"rag-sql-{uuid.uuid4().hex[:8]}",))
    conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(READER_ROLE)))
    conn.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(limits.statement_timeout_ms)))
    conn.execute(sql.SQL("SET LOCAL search_path = {}").format(sql.Identifier(schema_name)))


def _leave_sandbox(conn: psycopg.Connection[Any]) -> None:
    """Release what could outlive the rolled-back transaction before the connection goes back to the pool.

    Settings, the role and temporary objects roll back with the transaction; a session-level advisory lock
    does not (the reader role may not take one where the migrations could revoke it, but the pooled
    connection's own are released too). A connection that cannot be cleaned is closed, so the pool drops it.
    """
    if conn.closed:
        return
    try:
        if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            conn.execute("SELECT pg_advisory_unlock_all()")
            return
    except psycopg.Error:
        pass
    conn.close()


def _planned_cost(conn: psycopg.Connection[Any], statement: str) -> float:
    plan = conn.execute(sql.SQL("EXPLAIN (FORMAT JSON) ") + sql.SQL(statement)).fetchone()[0]
    return float(plan[0]["Plan"]["Total Cost"])


def _postgres_message(error: psycopg.Error) -> str:
    diag = error.diag
    message = diag.message_primary or str(error).splitlines()[0]
    if diag.message_hint:
        message += f" (hint: {diag.message_hint})"
    return message


def json_value(value: Any) -> Any:
    """A result value as JSON can carry it: decimals as floats, dates as ISO strings."""
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    return value
