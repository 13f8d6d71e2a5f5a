"""Verified question -> SQL pairs, the model's few-shot examples: stored only after they validate and run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg

from rag_server.domains import Domain


@dataclass(frozen=True)
class SqlExample:
    question: str
    sql: str
    similarity: float = 0.0


def save_example(
    conn: psycopg.Connection[Any], domain: Domain, question: str, sql: str, vector: np.ndarray
) -> None:
    """Store (or replace) the example for this question; the caller has verified the SQL."""
    conn.execute(
        "INSERT INTO sql_examples (domain_id, question, sql, embedding) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (domain_id, question) DO UPDATE SET sql = excluded.sql, embedding = excluded.embedding",
        (domain.id, question, sql, vector),
    )


def similar_examples(
    conn: psycopg.Connection[Any], domain: Domain, vector: np.ndarray, k: int
) -> list[SqlExample]:
    """The k stored examples closest to the question (few per domain: an exact scan is fine)."""
    if k <= 0:
        return []
    rows = conn.execute(
        "SELECT question, sql, 1 - (embedding <=> %s) FROM sql_examples WHERE domain_id = %s"
        " ORDER BY embedding <=> %s LIMIT %s",
        (vector, domain.id, vector, k),
    ).fetchall()
    return [SqlExample(question, sql, float(similarity)) for question, sql, similarity in rows]


def list_examples(conn: psycopg.Connection[Any], domain: Domain) -> list[SqlExample]:
    rows = conn.execute(
        "SELECT question, sql FROM sql_examples WHERE domain_id = %s ORDER BY id", (domain.id,)
    ).fetchall()
    return [SqlExample(question, sql) for question, sql in rows]


def delete_example(conn: psycopg.Connection[Any], domain: Domain, question: str) -> bool:
    return (
        conn.execute(
            "DELETE FROM sql_examples WHERE domain_id = %s AND question = %s", (domain.id, question)
        ).rowcount
        > 0
    )
