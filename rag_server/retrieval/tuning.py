"""Per-domain retrieval settings: a domain's newest promoted tuning overrides the global settings it names.

`rag-server tune` (evals/tune.py) grid-searches the settings in `TUNABLE` on a domain's labels and records
every run in the `tunings` table (migration 008); only a run that beat the domain's current configuration on
held-out questions is promoted. Searches of that domain then use `Tuning.apply(settings)`; every other
setting, and every domain never promoted, keeps the global value. `tune --chunk-sizes` (evals/tune_chunks.py)
promotes the settings in `CHUNKING` the same way; ingestion reads them for the domain (`tuned_chunking`).

`TuningRegistry.for_domain` caches a domain's serving tuning for `ttl_s` seconds, so a busy domain costs one
indexed lookup per second, not one per request; a promotion serves in every worker within that time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Protocol

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool
from pydantic import TypeAdapter, ValidationError

from rag_server.config import Settings
from rag_server.domains import Domain
from rag_server.errors import ConfigError

# The settings a tuning may set for a domain (the retrieval settings that measurably matter per corpus).
TUNABLE = ("keyword_expansion", "fusion", "convex_weight", "candidate_depth")
# And how its documents are chunked (`rag-server tune --chunk-sizes`): ingestion reads these for the domain
# (ingest/pipeline.py), searches ignore them.
CHUNKING = ("chunk_size", "chunk_overlap")

DEFAULT_TTL_S = 1.0


@dataclass(frozen=True)
class Tuning:
    """The settings a domain's searches override, and the stored run they come from (None: the defaults)."""

    id: int | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """How responses and traces name it: `tuning#ID` (`rag-server tunings list`) or `defaults`."""
        return f"tuning#{self.id}" if self.id is not None else "defaults"

    def apply(self, settings: Settings) -> Settings:
        """`settings` with this tuning's values (the same object when it overrides nothing)."""
        return settings.model_copy(update=dict(self.overrides)) if self.overrides else settings


DEFAULTS = Tuning()


class TuningSource(Protocol):
    def for_domain(self, domain: Domain) -> Tuning:
        """The tuning a domain's searches use."""
        ...


class FixedTuning:
    """One tuning for every domain (the tuner's grid, tests)."""

    def __init__(self, tuning: Tuning = DEFAULTS) -> None:
        self.tuning = tuning

    def for_domain(self, domain: Domain) -> Tuning:
        return self.tuning


def checked(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The overrides validated against the `Settings` fields they name (type and bounds).

    >>> checked({"fusion": "rrf", "candidate_depth": "50"})
    {'fusion': 'rrf', 'candidate_depth': 50}

    Raises:
        ConfigError: a name that is not tunable, a value its setting refuses, or a chunk overlap not smaller
            than the chunk size.
    """
    out: dict[str, Any] = {}
    for name, value in overrides.items():
        if name not in TUNABLE + CHUNKING:
            raise ConfigError(f"{name!r} is not a tunable setting; tunable: {', '.join(TUNABLE + CHUNKING)}")
        info = Settings.model_fields[name]
        kind: Any = Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation
        try:
            out[name] = TypeAdapter(kind).validate_python(value)
        except ValidationError as error:
            raise ConfigError(f"tuned {name}={value!r}: {error.errors()[0]['msg']}") from None
    if "chunk_size" in out and out.get("chunk_overlap", 0) >= out["chunk_size"]:
        raise ConfigError(f"tuned chunk_overlap ({out['chunk_overlap']}) must be smaller than chunk_size")
    return out


class TuningRegistry:
    """Each domain's serving tuning (its newest promoted one), cached per domain for `ttl_s` seconds."""

    def __init__(self, pool: ConnectionPool, ttl_s: float = DEFAULT_TTL_S) -> None:
        self.pool = pool
        self.ttl_s = ttl_s
        self._cached: dict[int, tuple[float, Tuning]] = {}  # domain id -> (checked at, tuning)
        self._lock = threading.Lock()

    def for_domain(self, domain: Domain) -> Tuning:
        """The domain's promoted tuning, else `DEFAULTS` (also when a stored one no longer validates)."""
        now = time.monotonic()
        with self._lock:
            cached = self._cached.get(domain.id)
        if cached is not None and now - cached[0] < self.ttl_s:
            return cached[1]
        with self.pool.connection() as conn:
            row = promoted(conn, domain.id)
        tuning = DEFAULTS
        if row is not None:
            if cached is not None and cached[1].id == row[0]:
                tuning = cached[1]
            else:
                try:
                    tuning = Tuning(row[0], checked(row[1]))
                except ConfigError:
                    tuning = DEFAULTS
        with self._lock:
            self._cached[domain.id] = (now, tuning)
        return tuning

    def forget(self, domain: Domain | None = None) -> None:
        """Drop the cached tuning of a domain (of every domain when None): the next search looks it up."""
        with self._lock:
            if domain is None:
                self._cached.clear()
            else:
                self._cached.pop(domain.id, None)


# --- the `tunings` table --------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredTuning:
    """One tuning run of a domain: promoted (with its settings) or refused."""

    id: int
    domain: str
    promoted: bool
    settings: dict[str, Any]
    decision: dict[str, Any]
    tuned_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "domain": self.domain,
            "promoted": self.promoted,
            "settings": self.settings,
            "tuned_at": self.tuned_at.isoformat(),
            **self.decision,
        }


_COLUMNS = "t.id, d.name, t.promoted, t.settings, t.decision, t.tuned_at"


def save(
    conn: psycopg.Connection[Any],
    domain_id: int,
    settings: Mapping[str, Any] | None,
    decision: dict[str, Any],
) -> int:
    """Record a tuning run; `settings` only when promoted. Returns the row's id."""
    row = conn.execute(
        "INSERT INTO tunings (domain_id, promoted, settings, decision) VALUES (%s, %s, %s, %s) RETURNING id",
        (domain_id, settings is not None, Jsonb(dict(settings or {})), Jsonb(decision)),
    ).fetchone()
    assert row is not None
    return int(row[0])


def promoted(conn: psycopg.Connection[Any], domain_id: int) -> tuple[int, dict[str, Any]] | None:
    """(id, settings) of the domain's serving tuning, its newest promoted one; None if none was promoted."""
    row = conn.execute(
        "SELECT id, settings FROM tunings WHERE domain_id = %s AND promoted ORDER BY id DESC LIMIT 1",
        (domain_id,),
    ).fetchone()
    return (int(row[0]), dict(row[1])) if row else None


def decisions(conn: psycopg.Connection[Any], domain: str | None = None) -> list[StoredTuning]:
    """Every recorded tuning run (of one domain, when named), by domain then oldest first."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM tunings t JOIN domains d ON d.id = t.domain_id"
        " WHERE %(domain)s::text IS NULL OR d.name = %(domain)s ORDER BY d.name, t.id",
        {"domain": domain},
    ).fetchall()
    return [StoredTuning(*row) for row in rows]


def tuned_chunking(conn: psycopg.Connection[Any], domain_id: int) -> dict[str, int]:
    """The chunk options of the domain's serving tuning: {} when it sets none (or no longer validates)."""
    row = promoted(conn, domain_id)
    if row is None:
        return {}
    try:
        stored = checked(row[1])
    except ConfigError:
        return {}
    return {name: stored[name] for name in CHUNKING if name in stored}
