"""`rag-server eval sql`: no false rejections (every gold query passes the validator and runs in the sandbox with
the rows of a direct run) and execution accuracy of the configured generator, per category."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from evals.sql_data import SqlQuestion, is_dump_layout, load_database, load_questions
from ingest.tables import find_table_files, import_table_files
from rag_server.config import Settings
from rag_server.domains import Domain, HnswOptions, ensure_domain
from rag_server.embedding import Embedder
from rag_server.errors import NotFound, RagError, SqlDeclined
from rag_server.sql.catalog import Catalog, load_catalog
from rag_server.sql.sandbox import SandboxLimits, execute, json_value
from rag_server.sql.validator import validate

Rows = list[list[Any]]


@dataclass
class LoadedDatabase:
    domain: Domain
    schema: str
    catalog: Catalog


def load_databases(
    pool: ConnectionPool,
    settings: Settings,
    embedder: Embedder,
    dataset: Path,
    names: Sequence[str],
    tables: Path | None = None,
) -> dict[str, LoadedDatabase]:
    """Each database of the data set in its own scratch domain `sqleval-NAME`: a dump under databases/, or (the
    project's layout) the table files under `tables` (default DATASET/tables)."""
    loaded: dict[str, LoadedDatabase] = {}
    for name in names:
        with pool.connection() as conn:
            domain = ensure_domain(
                conn,
                f"sqleval-{name}",
                embedder.name,
                embedder.dimension,
                HnswOptions.from_settings(settings),
            )
        if is_dump_layout(dataset):
            schema = load_database(pool, domain, dataset, name)
        else:
            schema = _import_tables(pool, domain, tables or dataset / "tables")
        with pool.connection() as conn:
            loaded[name] = LoadedDatabase(domain, schema, load_catalog(conn, domain))
    return loaded


def _import_tables(pool: ConnectionPool, domain: Domain, folder: Path) -> str:
    files = find_table_files([folder], include_jsonl=True) if folder.is_dir() else []
    if not files:
        raise NotFound(f"no table files (CSV, JSON-lines, Parquet) in {folder}; pass --tables DIR")
    report = import_table_files(pool, domain, files, {})
    if report["failed"]:
        raise RagError(f"cannot import the eval tables: {report['failed']}")
    return domain.tables_schema


def _load(
    pool: ConnectionPool,
    settings: Settings,
    embedder: Embedder,
    dataset: Path,
    file_name: str | None,
    tables: Path | None,
) -> tuple[list[SqlQuestion], dict[str, LoadedDatabase]]:
    questions = load_questions(dataset, file_name)
    names = sorted({question.database for question in questions})
    return questions, load_databases(pool, settings, embedder, dataset, names, tables)


def run_gold_check(
    pool: ConnectionPool,
    settings: Settings,
    embedder: Embedder,
    dataset: Path,
    file_name: str | None = None,
    tables: Path | None = None,
) -> dict[str, Any]:
    """Every gold alternative through the validator and the sandbox, compared with running it directly."""
    questions, databases = _load(pool, settings, embedder, dataset, file_name, tables)
    limits = SandboxLimits.from_settings(settings)
    failures: list[dict[str, Any]] = []
    total = 0
    for question in questions:
        database = databases[question.database]
        for query in question.gold:
            total += 1
            failure = _check_gold(pool, database, query, limits, question.ordered)
            if failure:
                failures.append({"id": question.id, "database": question.database, "query": query, **failure})
    return {"gold_total": total, "gold_passed": total - len(failures), "failures": failures}


def _check_gold(
    pool: ConnectionPool, database: LoadedDatabase, query: str, limits: SandboxLimits, ordered: bool
) -> dict[str, Any] | None:
    try:
        expected = run_directly(pool, database.schema, query)
    except psycopg.Error as error:
        return {"stage": "direct", "error": str(error).splitlines()[0]}
    try:
        validated = validate(query, database.catalog, limits.row_cap)
    except RagError as error:
        return {"stage": "validate", "rule": getattr(error, "rule", None), "error": str(error)}
    try:
        result = execute(pool, validated, database.schema, limits)
    except RagError as error:
        return {"stage": "sandbox", "error": str(error), "sql": validated.sql}
    expected_rows = expected[1][: limits.row_cap]
    if not same_rows(expected_rows, result.rows, ordered):
        return {"stage": "compare", "error": "the sandbox returned other rows", "sql": validated.sql}
    return None


def run_directly(pool: ConnectionPool, schema: str, query: str) -> tuple[list[str], Rows]:
    """The query as the connecting user runs it, with no validation (rolled back)."""
    with pool.connection() as conn, conn.transaction(force_rollback=True):
        conn.execute(sql.SQL("SET LOCAL search_path = {}").format(sql.Identifier(schema)))
        cursor = conn.execute(query.encode())
        columns = [column.name for column in cursor.description or []]
        return columns, [[json_value(value) for value in row] for row in cursor.fetchall()]


def _normal(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6)
    return value


def _row_key(row: Sequence[Any]) -> tuple[str, ...]:
    return tuple(repr(_normal(value)) for value in row)


def same_rows(expected: Rows, got: Rows, ordered: bool) -> bool:
    """Equal as lists of rows when the order matters, as multisets otherwise (floats to 6 decimals)."""
    left = [_row_key(row) for row in expected]
    right = [_row_key(row) for row in got]
    return left == right if ordered else Counter(left) == Counter(right)


def results_match(expected: Rows, got: Rows, ordered: bool) -> bool:
    """Execution match as sql-eval counts it: every expected column appears among the returned ones (names and
    extra columns do not matter), row for row; the row order only when the question asks for one."""
    if len(expected) != len(got):
        return False
    if not expected:
        return True
    width = len(expected[0])
    got_columns = list(zip(*got, strict=True)) if got and got[0] else []
    candidates: list[list[int]] = []
    for j in range(width):
        column = [_normal(row[j]) for row in expected]
        matches = [
            i
            for i, other in enumerate(got_columns)
            if _same_column(column, [_normal(v) for v in other], ordered)
        ]
        if not matches:
            return False
        candidates.append(matches)
    for choice in _choices(candidates, limit=64):
        projected = [[row[i] for i in choice] for row in got]
        if same_rows(expected, projected, ordered):
            return True
    return False


def _same_column(left: list[Any], right: list[Any], ordered: bool) -> bool:
    if ordered:
        return [repr(v) for v in left] == [repr(v) for v in right]
    return Counter(map(repr, left)) == Counter(map(repr, right))


def _choices(candidates: list[list[int]], limit: int) -> list[list[int]]:
    found: list[list[int]] = [[]]
    for options in candidates:
        found = [[*prefix, option] for prefix in found for option in options][:limit]
    return found


Generate = Callable[[str, LoadedDatabase], str]


def run_accuracy(
    pool: ConnectionPool,
    settings: Settings,
    embedder: Embedder,
    dataset: Path,
    generate: Generate,
    generator_name: str,
    file_name: str | None = None,
    tables: Path | None = None,
) -> dict[str, Any]:
    """Execution accuracy of `generate` per category: accepted questions, matches among them and overall."""
    questions, databases = _load(pool, settings, embedder, dataset, file_name, tables)
    limits = SandboxLimits.from_settings(settings)
    per_question = [_score(pool, databases[q.database], q, generate, limits) for q in questions]
    by_category: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for result in per_question:
        by_category[result["category"]].append(result)
    return {
        "generator": generator_name,
        "questions": len(per_question),
        **_summary(per_question),
        "by_category": {category: _summary(results) for category, results in sorted(by_category.items())},
        "results": per_question,
    }


def _score(
    pool: ConnectionPool,
    database: LoadedDatabase,
    question: SqlQuestion,
    generate: Generate,
    limits: SandboxLimits,
) -> dict[str, Any]:
    result: dict[str, Any] = {"id": question.id, "category": question.category, "question": question.question}
    started = time.perf_counter()
    try:
        generated = generate(question.question, database)
        result["sql"] = generated
        got = execute(pool, validate(generated, database.catalog, limits.row_cap), database.schema, limits)
    except SqlDeclined as declined:
        result.update(accepted=False, correct=False, error=str(declined))
        return result
    except RagError as error:
        result.update(accepted=True, correct=False, error=str(error))
        return result
    finally:
        result["ms"] = round((time.perf_counter() - started) * 1000, 1)
    golds = [run_directly(pool, database.schema, gold)[1] for gold in question.gold]
    result.update(
        accepted=True, correct=any(results_match(gold, got.rows, question.ordered) for gold in golds)
    )
    return result


def _summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    accepted = [result for result in results if result["accepted"]]
    correct = sum(result["correct"] for result in results)
    return {
        "total": len(results),
        "accepted": len(accepted),
        "correct": correct,
        "coverage": round(len(accepted) / len(results), 4) if results else 0.0,
        "accuracy": round(correct / len(results), 4) if results else 0.0,
        "accuracy_on_accepted": round(correct / len(accepted), 4) if accepted else 0.0,
    }
