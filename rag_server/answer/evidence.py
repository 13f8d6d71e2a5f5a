"""What an answer may cite: retrieved chunks and SQL results as one numbered `Evidence` type."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from rag_server.retrieval.types import ScoredChunk, SearchResult
from rag_server.sql.route import SqlEvidence

# Rows of a SQL result shown to the answerer (and in the evidence text); the full result stays in `rows`.
ROWS_SHOWN = 20


@dataclass(frozen=True)
class Evidence:
    """One citable piece of evidence, numbered from 1 in the order the answerer sees it."""

    number: int
    kind: Literal["chunk", "table"]
    # `doc#ordinal` for a chunk, `sql:table,...` for a query result.
    ref: str
    document_id: str | None
    title: str | None
    text: str
    score: float | None
    route: str
    sql: str | None = None
    columns: tuple[str, ...] = ()
    rows: tuple[tuple[Any, ...], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        shown: dict[str, Any] = {
            "number": self.number,
            "kind": self.kind,
            "ref": self.ref,
            "document_id": self.document_id,
            "title": self.title,
            "text": self.text,
            "score": None if self.score is None else round(self.score, 6),
            "route": self.route,
        }
        if self.kind == "table":
            shown |= {"sql": self.sql, "columns": list(self.columns), "rows": [list(r) for r in self.rows]}
        return shown


def collect(result: SearchResult, limit: int) -> list[Evidence]:
    """The search's SQL result (when it has one) first, then its best chunks, `limit` in all."""
    found: list[Evidence] = []
    if result.sql is not None:
        found.append(_table(1, result.sql))
    for chunk in result.chunks[: max(limit - len(found), 0)]:
        found.append(_chunk(len(found) + 1, chunk))
    return found


def _chunk(number: int, chunk: ScoredChunk) -> Evidence:
    return Evidence(
        number,
        "chunk",
        f"{chunk.external_id}#{chunk.ordinal}",
        chunk.external_id,
        chunk.title,
        chunk.text,
        chunk.score,
        chunk.route,
    )


def _table(number: int, sql: SqlEvidence) -> Evidence:
    rows = tuple(tuple(_plain(value) for value in row) for row in sql.rows)
    return Evidence(
        number,
        "table",
        "sql:" + ",".join(sql.tables),
        None,
        "Query over " + ", ".join(sql.tables),
        render_rows(list(sql.columns), rows),
        None,
        "sql",
        sql.sql,
        tuple(sql.columns),
        rows,
    )


def render_rows(columns: list[str], rows: tuple[tuple[Any, ...], ...]) -> str:
    """A query result as text: one `column: value` line per row (the first ROWS_SHOWN rows)."""
    if not rows:
        return "The query returned no rows."
    lines = [
        "; ".join(f"{column}: {value}" for column, value in zip(columns, row, strict=False)) for row in rows
    ]
    more = f"\n... and {len(rows) - ROWS_SHOWN} more rows" if len(rows) > ROWS_SHOWN else ""
    return "\n".join(lines[:ROWS_SHOWN]) + more


def _plain(value: Any) -> Any:
    """JSON-safe values (dates and decimals as text)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return round(value, 6)
    return str(value)
