"""Rate limits per key and budgets per project, enforced by single atomic statements in Postgres.

Every check is one conditional UPDATE (or upsert) whose WHERE holds the limit: Postgres re-evaluates it on the
locked row, so concurrent requests on any number of workers queue on that row and none can slip past a limit
that another has just reached (no check-then-act). A request first *reserves* its worst case (tokens against
the key's minute, dollars against the project's month) and *settles* to what it really spent when it ends,
however it ends.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import psycopg

from rag_server.db import NO_WAIT_FOR_DISK
from rag_server.errors import BudgetExceeded, RateLimited
from rag_server.keys import Principal

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reservation:
    """What one request holds until it settles: its minute's tokens and its month's dollars."""

    key_id: int | None
    window_start: datetime | None
    tokens: int
    project_id: int
    month: date | None
    usd: float


@dataclass(frozen=True)
class BudgetStatus:
    """A project's month: spent and reserved dollars against its budget (None = no budget)."""

    month: date
    spent_usd: float
    reserved_usd: float
    budget_usd: float | None
    alert_at: float

    @property
    def used(self) -> float | None:
        """Spent share of the budget (None without one)."""
        if self.budget_usd is None:
            return None
        return self.spent_usd / self.budget_usd if self.budget_usd else 1.0

    @property
    def alert(self) -> bool:
        return self.used is not None and self.used >= self.alert_at


def count_request(conn: psycopg.Connection[Any], principal: Principal) -> None:
    """Count a request against its key's minute; RateLimited when the requests (or tokens) are spent."""
    if principal.key_id is None or (
        principal.requests_per_minute is None and principal.tokens_per_minute is None
    ):
        return
    row = conn.execute(
        f"""INSERT INTO rate_windows AS w (key_id, window_start, requests)
           SELECT %(key)s, date_trunc('minute', clock_timestamp()), 1 FROM {NO_WAIT_FOR_DISK}
           ON CONFLICT (key_id, window_start) DO UPDATE SET requests = w.requests + 1
           WHERE (%(rpm)s::int IS NULL OR w.requests < %(rpm)s)
             AND (%(tpm)s::bigint IS NULL OR w.tokens < %(tpm)s)
           RETURNING w.window_start, w.requests""",
        {"key": principal.key_id, "rpm": principal.requests_per_minute, "tpm": principal.tokens_per_minute},
    ).fetchone()
    if row is None:
        raise _rate_limited(conn, principal)
    if row[1] == 1:
        # A new minute: the key's older windows are no longer needed.
        conn.execute(
            "DELETE FROM rate_windows WHERE key_id = %s AND window_start < %s", (principal.key_id, row[0])
        )


def reserve(conn: psycopg.Connection[Any], principal: Principal, tokens: int, usd: float) -> Reservation:
    """Reserve a counted request's worst case: tokens against the key's minute, dollars against the project's
    month; RateLimited or BudgetExceeded when that would pass a limit."""
    window = _reserve_tokens(conn, principal, tokens) if tokens > 0 else None
    try:
        month = _reserve_budget(conn, principal, usd) if usd > 0 else None
    except BudgetExceeded:
        if window is not None:
            settle(
                conn, Reservation(principal.key_id, window, tokens, principal.project_id, None, 0.0), 0, 0.0
            )
        raise
    return Reservation(principal.key_id, window, tokens if window else 0, principal.project_id, month, usd)


def settle(conn: psycopg.Connection[Any], held: Reservation, tokens: int, usd: float) -> None:
    """Replace the reservation by what the request really spent (also for a failed or cut request)."""
    if held.window_start is not None:
        conn.execute(
            """UPDATE rate_windows SET tokens = greatest(tokens - %s + %s, 0)
               WHERE key_id = %s AND window_start = %s""",
            (held.tokens, tokens, held.key_id, held.window_start),
        )
    month = held.month or _month(conn)
    if held.month is None and usd <= 0:
        return
    row = conn.execute(
        """INSERT INTO project_spend AS s (project_id, month, spent_usd) VALUES (%(p)s, %(m)s, %(usd)s)
           ON CONFLICT (project_id, month) DO UPDATE
           SET reserved_usd = greatest(s.reserved_usd - %(held)s, 0), spent_usd = s.spent_usd + %(usd)s
           RETURNING s.spent_usd - %(usd)s, s.spent_usd""",
        {"p": held.project_id, "m": month, "usd": Decimal(str(usd)), "held": Decimal(str(held.usd))},
    ).fetchone()
    assert row is not None
    _alert_on_crossing(conn, held.project_id, float(row[0]), float(row[1]))


def budget_status(conn: psycopg.Connection[Any], project_id: int) -> BudgetStatus:
    row = conn.execute(
        """SELECT date_trunc('month', now())::date, coalesce(s.spent_usd, 0), coalesce(s.reserved_usd, 0),
                  p.monthly_budget_usd, p.budget_alert
           FROM projects p LEFT JOIN project_spend s
             ON s.project_id = p.id AND s.month = date_trunc('month', now())::date
           WHERE p.id = %s""",
        (project_id,),
    ).fetchone()
    assert row is not None
    budget = float(row[3]) if row[3] is not None else None
    return BudgetStatus(row[0], float(row[1]), float(row[2]), budget, float(row[4]))


def _reserve_tokens(conn: psycopg.Connection[Any], principal: Principal, tokens: int) -> datetime | None:
    if principal.key_id is None or principal.tokens_per_minute is None:
        return None
    # A window's first reservation always lands (a request larger than the limit still runs, alone).
    row = conn.execute(
        """INSERT INTO rate_windows AS w (key_id, window_start, tokens)
           VALUES (%(key)s, date_trunc('minute', clock_timestamp()), %(tokens)s)
           ON CONFLICT (key_id, window_start) DO UPDATE SET tokens = w.tokens + EXCLUDED.tokens
           WHERE w.tokens = 0 OR w.tokens + EXCLUDED.tokens <= %(tpm)s
           RETURNING w.window_start""",
        {"key": principal.key_id, "tokens": tokens, "tpm": principal.tokens_per_minute},
    ).fetchone()
    if row is None:
        raise _rate_limited(conn, principal)
    return row[0]


def _rate_limited(conn: psycopg.Connection[Any], principal: Principal) -> RateLimited:
    row = conn.execute(
        """SELECT w.requests, w.tokens,
                  60 - extract(epoch FROM clock_timestamp() - w.window_start)
           FROM rate_windows w WHERE key_id = %s AND window_start = date_trunc('minute', clock_timestamp())""",
        (principal.key_id,),
    ).fetchone()
    requests, tokens, left = row if row else (0, 0, 1)
    retry_after = max(1, math.ceil(float(left)))
    rpm = principal.requests_per_minute
    if rpm is not None and requests >= rpm:
        spent = f"{requests} of {rpm} requests per minute"
    else:
        spent = f"{tokens} of {principal.tokens_per_minute} tokens per minute"
    return RateLimited(f"rate limit: this key has used {spent}; retry in {retry_after} s", retry_after)


def _reserve_budget(conn: psycopg.Connection[Any], principal: Principal, usd: float) -> date:
    month = _month(conn)
    conn.execute(
        "INSERT INTO project_spend (project_id, month) VALUES (%s, %s) ON CONFLICT DO NOTHING",
        (principal.project_id, month),
    )
    row = conn.execute(
        """UPDATE project_spend s SET reserved_usd = s.reserved_usd + %(usd)s
           FROM projects p
           WHERE p.id = s.project_id AND s.project_id = %(p)s AND s.month = %(m)s
             AND (p.monthly_budget_usd IS NULL OR s.spent_usd + s.reserved_usd + %(usd)s <= p.monthly_budget_usd)
           RETURNING s.month""",
        {"usd": Decimal(str(usd)), "p": principal.project_id, "m": month},
    ).fetchone()
    if row is None:
        status = budget_status(conn, principal.project_id)
        raise BudgetExceeded(
            f"project {principal.project!r} has spent ${status.spent_usd:.4f} (and holds ${status.reserved_usd:.4f} "
            f"for requests in flight) of its ${status.budget_usd:.2f} budget this month; this request may cost "
            f"up to ${usd:.4f}"
        )
    return month


def _month(conn: psycopg.Connection[Any]) -> date:
    row = conn.execute("SELECT date_trunc('month', now())::date").fetchone()
    assert row is not None
    return row[0]


def _alert_on_crossing(conn: psycopg.Connection[Any], project_id: int, before: float, after: float) -> None:
    row = conn.execute(
        "SELECT name, monthly_budget_usd, budget_alert FROM projects WHERE id = %s", (project_id,)
    ).fetchone()
    if row is None or row[1] is None:
        return
    line = float(row[1]) * float(row[2])
    if before < line <= after:
        log.warning(
            "project %s has spent $%.4f, past %.0f%% of its $%.2f monthly budget",
            row[0],
            after,
            float(row[2]) * 100,
            float(row[1]),
        )
