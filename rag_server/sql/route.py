"""The sql route end to end: question -> SQL (model or deterministic) -> validator -> sandbox -> evidence.

A validation or execution error goes back to the model for at most `sql_max_retries` more attempts; the
deterministic generator gets no retries (it would write the same SQL again). When every model attempt failed,
the deterministic generator is tried before giving up: a weak model (a small local one) still gets the
questions the offline generator maps, and the model's failed attempts and calls are kept in the evidence.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from psycopg_pool import ConnectionPool

from rag_server.config import Settings
from rag_server.domains import Domain, get_domain
from rag_server.embedding import Embedder
from rag_server.errors import RetrievalError, SqlDeclined, SqlExecutionError, SqlRejected
from rag_server.llm import ChatModel, ModelCall, OpenAIChatModel, model_configured
from rag_server.sql import deterministic
from rag_server.sql.catalog import Catalog, load_catalog
from rag_server.sql.examples import save_example, similar_examples
from rag_server.sql.prompt import TableSelector, build_messages, extract_sql
from rag_server.sql.sandbox import QueryResult, SandboxLimits, execute
from rag_server.sql.validator import validate


@dataclass
class SqlEvidence:
    """What the sql route found: the SQL that ran, its columns and (capped) rows, and how it got there.

    It is cited like a chunk: `citation()` has the same keys as a chunk's, pointing at the tables and query.
    """

    question: str
    sql: str
    columns: list[str]
    rows: list[list[Any]]
    truncated: bool
    tables: list[str]
    generator: str
    attempts: list[dict[str, str]] = field(default_factory=list)
    model_calls: list[ModelCall] = field(default_factory=list)

    @classmethod
    def of(
        cls,
        question: str,
        result: QueryResult,
        tables: list[str],
        generator: str,
        attempts: list[dict[str, str]] | None = None,
        calls: list[ModelCall] | None = None,
    ) -> SqlEvidence:
        return cls(
            question,
            result.sql,
            result.columns,
            result.rows,
            result.truncated,
            tables,
            generator,
            attempts or [],
            calls or [],
        )

    def citation(self) -> dict[str, Any]:
        return {
            "kind": "table",
            "ref": "sql:" + ",".join(self.tables),
            "title": "Query over " + ", ".join(self.tables),
            "text": self.sql,
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "sql": self.sql,
            "columns": self.columns,
            "rows": self.rows,
            "row_count": len(self.rows),
            "truncated": self.truncated,
            "tables": self.tables,
            "generator": self.generator,
            "attempts": self.attempts,
            "model_calls": [call.as_dict() for call in self.model_calls],
            "citation": self.citation(),
        }


class SqlRoute:
    """Answers questions with SQL over a domain's tables; one per process, like the Searcher."""

    def __init__(
        self, pool: ConnectionPool, embedder: Embedder, settings: Settings, model: ChatModel | None = None
    ) -> None:
        self.pool = pool
        self.embedder = embedder
        self.settings = settings
        self.limits = SandboxLimits.from_settings(settings)
        self.tables = TableSelector(embedder)
        # The model writes SQL unless RAG_SQL_GENERATOR says otherwise (or none is configured).
        self.model = (model or OpenAIChatModel(settings)) if _uses_model(settings) else None

    @property
    def generator_name(self) -> str:
        return "llm" if self.model is not None else "deterministic"

    def catalog(self, domain_name: str) -> tuple[Domain, Catalog]:
        with self.pool.connection() as conn:
            domain = get_domain(conn, domain_name)
            return domain, load_catalog(conn, domain)

    def answer(
        self,
        question: str,
        domain_name: str,
        timings: dict[str, float] | None = None,
        draft: deterministic.Draft | None = None,
    ) -> SqlEvidence:
        """Generate, validate and run SQL for the question; SqlDeclined/SqlRejected/SqlExecutionError if not.

        `draft`: the offline generator's SQL the router already wrote for this question (with its catalog);
        without a model it is run as is, neither the SQL nor the catalog written or loaded again."""
        timings = timings if timings is not None else {}
        if draft is not None and draft.question == question and self.model is None:
            result, used = self._run(draft.sql, draft.catalog, timings)
            return SqlEvidence.of(question, result, used, "deterministic")
        domain, catalog = self.catalog(domain_name)
        if not catalog.tables:
            raise SqlDeclined(f"domain {domain_name!r} has no tables; import some with `rag-server ingest`")
        if self.model is None:
            return self._deterministic(question, catalog, timings)
        return self._with_model(question, domain, catalog, timings)

    def run_sql(self, sql: str, catalog: Catalog) -> QueryResult:
        """Validate and run SQL someone wrote (an example, an eval's gold query)."""
        return execute(
            self.pool, validate(sql, catalog, self.limits.row_cap), catalog.schema_name, self.limits
        )

    def add_example(self, domain_name: str, question: str, sql: str) -> QueryResult:
        """Verify a question -> SQL pair (it must validate and run) and store it as a few-shot example."""
        domain, catalog = self.catalog(domain_name)
        result = self.run_sql(sql, catalog)
        vector = self.embedder.embed([question])[0]
        with self.pool.connection() as conn:
            save_example(conn, domain, question, result.sql, vector)
        return result

    def _deterministic(self, question: str, catalog: Catalog, timings: dict[str, float]) -> SqlEvidence:
        started = time.perf_counter()
        sql = deterministic.generate(question, catalog)
        timings["generate"] = _ms(started)
        result, used = self._run(sql, catalog, timings)
        return SqlEvidence.of(question, result, used, "deterministic")

    def _with_model(
        self, question: str, domain: Domain, catalog: Catalog, timings: dict[str, float]
    ) -> SqlEvidence:
        assert self.model is not None
        started = time.perf_counter()
        vector: np.ndarray = self.embedder.embed([question])[0]
        tables = self.tables.select(question, catalog, self.settings.sql_prompt_tables, vector)
        with self.pool.connection() as conn:
            examples = similar_examples(conn, domain, vector, self.settings.sql_prompt_examples)
        timings["prompt"] = _ms(started)
        failures: list[tuple[str, str]] = []
        calls: list[ModelCall] = []
        for _ in range(self.settings.sql_max_retries + 1):
            started = time.perf_counter()
            reply = self.model.complete("sql", build_messages(question, catalog, tables, examples, failures))
            timings["generate"] = timings.get("generate", 0.0) + _ms(started)
            calls.append(reply.call)
            sql = extract_sql(reply.text)
            if sql is None:
                raise SqlDeclined("the model says the tables cannot answer this question")
            try:
                result, used = self._run(sql, catalog, timings)
            except (SqlRejected, SqlExecutionError) as error:
                failures.append((sql, str(error)))
                continue
            return SqlEvidence.of(question, result, used, "llm", _attempts(failures), calls)
        try:
            fallback = self._deterministic(question, catalog, timings)
        except (SqlDeclined, SqlRejected, SqlExecutionError):
            raise SqlExecutionError(
                f"no valid SQL after {len(failures)} attempts; last error: {failures[-1][1]}"
            ) from None
        return replace(fallback, attempts=_attempts(failures), model_calls=calls)

    def _run(self, sql: str, catalog: Catalog, timings: dict[str, float]) -> tuple[QueryResult, list[str]]:
        started = time.perf_counter()
        validated = validate(sql, catalog, self.limits.row_cap)
        timings["validate"] = timings.get("validate", 0.0) + _ms(started)
        started = time.perf_counter()
        result = execute(self.pool, validated, catalog.schema_name, self.limits)
        timings["execute"] = timings.get("execute", 0.0) + _ms(started)
        return result, list(validated.tables)


def _attempts(failures: list[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"sql": sql, "error": error} for sql, error in failures]


def _uses_model(settings: Settings) -> bool:
    if settings.sql_generator == "deterministic":
        return False
    if settings.sql_generator == "llm" and not model_configured(settings):
        raise RetrievalError("RAG_SQL_GENERATOR=llm needs OPENAI_API_KEY or OPENAI_BASE_URL")
    return model_configured(settings)


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
