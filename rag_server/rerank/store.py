"""The `rerankers` table (migration 006): every training run's decision, the promoted ones with their model."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb


@dataclass(frozen=True)
class StoredDecision:
    """One training run of a domain's reranker: promoted (with a model) or refused."""

    id: int
    domain: str
    kind: str
    promoted: bool
    decision: dict[str, Any]
    trained_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "domain": self.domain,
            "kind": self.kind,
            "promoted": self.promoted,
            "trained_at": self.trained_at.isoformat(),
            **self.decision,
        }


_COLUMNS = "r.id, d.name, r.kind, r.promoted, r.decision, r.trained_at"


def save(
    conn: psycopg.Connection[Any],
    domain_id: int,
    kind: str,
    decision: dict[str, Any],
    model: dict[str, Any] | None,
) -> int:
    """Record a training run; `model` only when promoted. Returns the row's id."""
    row = conn.execute(
        "INSERT INTO rerankers (domain_id, kind, promoted, decision, model) VALUES (%s, %s, %s, %s, %s)"
        " RETURNING id",
        (domain_id, kind, model is not None, Jsonb(decision), Jsonb(model) if model is not None else None),
    ).fetchone()
    assert row is not None
    return int(row[0])


def promoted_id(conn: psycopg.Connection[Any], domain_id: int) -> int | None:
    """The id of the domain's serving reranker (its newest promoted one), None if none was promoted."""
    row = conn.execute(
        "SELECT max(id) FROM rerankers WHERE domain_id = %s AND promoted", (domain_id,)
    ).fetchone()
    return row[0] if row else None


def load_model(conn: psycopg.Connection[Any], reranker_id: int) -> tuple[str, dict[str, Any] | None]:
    """A promoted reranker's kind and stored model."""
    row = conn.execute("SELECT kind, model FROM rerankers WHERE id = %s", (reranker_id,)).fetchone()
    return (row[0], row[1]) if row else ("", None)


def decision(conn: psycopg.Connection[Any], domain_id: int) -> StoredDecision | None:
    """The decision behind what serves the domain: its promoted reranker's, else its newest refusal's."""
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM rerankers r JOIN domains d ON d.id = r.domain_id WHERE r.domain_id = %s"
        " ORDER BY r.promoted DESC, r.id DESC LIMIT 1",
        (domain_id,),
    ).fetchone()
    return StoredDecision(*row) if row else None


def decisions(conn: psycopg.Connection[Any], domain: str | None = None) -> list[StoredDecision]:
    """Every recorded decision (of one domain, when named), by domain then oldest first."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM rerankers r JOIN domains d ON d.id = r.domain_id"
        " WHERE %(domain)s::text IS NULL OR d.name = %(domain)s ORDER BY d.name, r.id",
        {"domain": domain},
    ).fetchall()
    return [StoredDecision(*row) for row in rows]
