"""The request log: one row per metered request (ask, search, chat completions), and usage reports from it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from rag_server.db import NO_WAIT_FOR_DISK
from rag_server.keys import Principal
from rag_server.trace import Usage


@dataclass(frozen=True)
class RequestRecord:
    """What a finished request leaves in the log."""

    request_id: str
    endpoint: str
    domain: str | None
    route: str | None
    status: int
    usage: Usage
    cache_hit: bool = False
    abstained: bool = False
    question: str | None = None
    trace: dict[str, Any] | None = None


@dataclass(frozen=True)
class UsageRow:
    """Requests and spend of one day, route and key (key None = auth disabled)."""

    day: date
    route: str
    key_id: int | None
    requests: int
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    cost_usd: float
    cache_hits: int
    abstentions: int
    errors: int


def record(conn: psycopg.Connection[Any], principal: Principal, entry: RequestRecord) -> None:
    """Log a finished request; a request id seen twice (a client reusing X-Request-ID) keeps the first."""
    usage = entry.usage
    conn.execute(
        f"""INSERT INTO requests (id, project_id, key_id, endpoint, domain, route, status, prompt_tokens,
                                 cached_tokens, completion_tokens, cost_usd, cache_hit, abstained, question, trace)
           SELECT %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s FROM {NO_WAIT_FOR_DISK}
           ON CONFLICT (id) DO NOTHING""",
        (
            entry.request_id,
            principal.project_id,
            principal.key_id,
            entry.endpoint,
            entry.domain,
            entry.route,
            entry.status,
            usage.prompt_tokens,
            usage.cached_prompt_tokens,
            usage.completion_tokens,
            Decimal(str(usage.cost_usd)),
            entry.cache_hit,
            entry.abstained,
            entry.question,
            Jsonb(entry.trace or {}),
        ),
    )


def report(
    conn: psycopg.Connection[Any], project_id: int, days: int = 31, key_id: int | None = None
) -> list[UsageRow]:
    """Usage of a project (or one of its keys) over the last `days` days (UTC), by day, route and key."""
    rows = conn.execute(
        """SELECT (created_at AT TIME ZONE 'UTC')::date AS day, coalesce(route, endpoint) AS route, key_id,
                  count(*), sum(prompt_tokens), sum(cached_tokens), sum(completion_tokens), sum(cost_usd),
                  count(*) FILTER (WHERE cache_hit), count(*) FILTER (WHERE abstained),
                  count(*) FILTER (WHERE status >= 400)
           FROM requests
           WHERE project_id = %(p)s AND (%(k)s::int IS NULL OR key_id = %(k)s)
             AND created_at >= (now() AT TIME ZONE 'UTC')::date - (%(days)s - 1)
           GROUP BY 1, 2, 3 ORDER BY 1 DESC, 2, 3""",
        {"p": project_id, "k": key_id, "days": days},
    ).fetchall()
    return [
        UsageRow(r[0], r[1], r[2], r[3], int(r[4]), int(r[5]), int(r[6]), float(r[7]), r[8], r[9], r[10])
        for r in rows
    ]
