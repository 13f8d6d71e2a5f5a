"""Domains: named knowledge bases, each bound to the embedding model that embedded its chunks."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args

import psycopg
from psycopg import sql

from rag_server.config import Settings
from rag_server.errors import EmbeddingModelMismatch, NotFound, RagError

DOMAIN_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


# How the HNSW index holds vectors: `vector` (float32) or `halfvec` (float16, half the index size). The table
# keeps float32 either way; the index is over the expression `embedding::<precision>(dim)`.
Precision = Literal["vector", "halfvec"]


@dataclass(frozen=True)
class HnswOptions:
    """The HNSW index build parameters and precision."""

    m: int = 16
    ef_construction: int = 64
    precision: Precision = "vector"

    @classmethod
    def from_settings(cls, settings: Settings) -> HnswOptions:
        return cls(settings.hnsw_m, settings.hnsw_ef_construction, settings.vector_precision)


@dataclass(frozen=True)
class EmbeddingModel:
    """A model that embedded chunks; its vectors have `dimension` components."""

    id: int
    name: str
    dimension: int


@dataclass(frozen=True)
class Domain:
    """One knowledge base."""

    id: int
    name: str
    model: EmbeddingModel
    generation: int
    created_at: datetime
    # The project that owns it (rag_server/projects.py); 'default' for domains made by the CLI.
    project_id: int | None = None

    def index_name(self, precision: Precision = "vector") -> str:
        """The partial HNSW index over this domain's chunks at `precision`."""
        suffix = "" if precision == "vector" else f"_{precision}"
        return f"chunks_domain_{self.id}_hnsw{suffix}"

    @property
    def tables_schema(self) -> str:
        """The schema of the domain's imported tables (by id: a domain name need not be a valid identifier)."""
        return f"domain_tables_{self.id}"


def check_domain_name(name: str) -> str:
    """`name` if it is a valid domain name, else a RagError saying what is allowed."""
    if not DOMAIN_NAME.match(name):
        raise RagError(
            f"invalid domain name {name!r}: use 1-63 lower-case letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return name


_SELECT = """
    SELECT d.id, d.name, d.generation, d.created_at, m.id, m.name, m.dimension, d.project_id
    FROM domains d JOIN embedding_models m ON m.id = d.embedding_model_id
"""


def _domain(row: tuple[Any, ...]) -> Domain:
    return Domain(row[0], row[1], EmbeddingModel(row[4], row[5], row[6]), row[2], row[3], row[7])


def get_domain(conn: psycopg.Connection[Any], name: str) -> Domain:
    """The domain called `name`; NotFound if there is none."""
    row = conn.execute(_SELECT + " WHERE d.name = %s", (name,)).fetchone()
    if row is None:
        raise NotFound(
            f"no domain {name!r}; ingest documents into it first (rag-server ingest PATH --domain {name})"
        )
    return _domain(row)


def list_domains(conn: psycopg.Connection[Any]) -> list[Domain]:
    """Every domain, by name."""
    return [_domain(row) for row in conn.execute(_SELECT + " ORDER BY d.name")]


def ensure_domain(
    conn: psycopg.Connection[Any],
    name: str,
    model_name: str,
    dimension: int,
    hnsw: HnswOptions,
    project_id: int | None = None,
) -> Domain:
    """The domain `name` and its HNSW index, created bound to the model (and to `project_id`, else project
    'default') if new; refuses a domain bound to another model."""
    check_domain_name(name)
    with conn.transaction():
        model = ensure_embedding_model(conn, model_name, dimension)
        conn.execute(
            """INSERT INTO domains (name, embedding_model_id, project_id)
               VALUES (%s, %s, coalesce(%s, default_project_id())) ON CONFLICT (name) DO NOTHING""",
            (name, model.id, project_id),
        )
        domain = get_domain(conn, name)
    if domain.model.id != model.id:
        raise EmbeddingModelMismatch(
            f"domain {name!r} was embedded with {domain.model.name!r} ({domain.model.dimension} dimensions), "
            f"but the configured model is {model_name!r} ({dimension} dimensions): set RAG_EMBEDDING_MODEL="
            f"{domain.model.name} or use another domain"
        )
    ensure_domain_index(conn, domain, hnsw)
    return domain


def ensure_domain_index(conn: psycopg.Connection[Any], domain: Domain, hnsw: HnswOptions) -> None:
    """The domain's partial HNSW index at the configured precision, created if missing.

    One index per domain, not per model: with one per model, a domain's search walked (and filtered out) the
    neighbours of every other domain of that model: up to 6x slower with four other sets beside it."""
    with conn.transaction():
        # Two first ingests at once would race on creating the same index: serialize them.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('rag_server.domain_index'), %s)", (domain.id,))
        conn.execute(
            sql.SQL(
                "CREATE INDEX IF NOT EXISTS {index} ON chunks USING hnsw ((embedding::{type}({dim})) {ops})"
                " WITH (m = {m}, ef_construction = {ef}) WHERE domain_id = {domain}"
            ).format(
                index=sql.Identifier(domain.index_name(hnsw.precision)),
                type=sql.SQL(hnsw.precision),
                ops=sql.SQL(f"{hnsw.precision}_cosine_ops"),
                dim=sql.Literal(domain.model.dimension),
                m=sql.Literal(hnsw.m),
                ef=sql.Literal(hnsw.ef_construction),
                domain=sql.Literal(domain.id),
            )
        )


def ensure_embedding_model(conn: psycopg.Connection[Any], name: str, dimension: int) -> EmbeddingModel:
    """The model's row, created on first use."""
    with conn.transaction():
        return _ensure_embedding_model(conn, name, dimension)


def _ensure_embedding_model(conn: psycopg.Connection[Any], name: str, dimension: int) -> EmbeddingModel:
    # Two first ingests of a new model at once: the second waits here, then reads the first one's row.
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('rag_server.embedding_models'))")
    conn.execute(
        "INSERT INTO embedding_models (name, dimension) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING",
        (name, dimension),
    )
    row = conn.execute("SELECT id, name, dimension FROM embedding_models WHERE name = %s", (name,)).fetchone()
    assert row is not None
    model = EmbeddingModel(*row)
    if model.dimension != dimension:
        raise EmbeddingModelMismatch(
            f"embedding model {name!r} was recorded with {model.dimension} dimensions but now has {dimension}"
        )
    return model


def bump_generation(conn: psycopg.Connection[Any], domain_id: int) -> None:
    """Mark the domain's chunks as changed (in the caller's transaction)."""
    conn.execute("UPDATE domains SET generation = generation + 1 WHERE id = %s", (domain_id,))


def delete_domain(conn: psycopg.Connection[Any], name: str, missing_ok: bool = False) -> None:
    """Delete a domain with all its documents, chunks and imported tables; NotFound if absent, unless `missing_ok`."""
    with conn.transaction():
        try:
            domain = get_domain(conn, name)
        except NotFound:
            if missing_ok:
                return
            raise
        # Its imported tables go too; registered tables belong to someone else and stay.
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(domain.tables_schema)))
        conn.execute("DELETE FROM domains WHERE id = %s", (domain.id,))
        for precision in get_args(Precision):
            conn.execute(
                sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(domain.index_name(precision)))
            )
