"""Text-to-SQL eval data laid out like defog's sql-eval: `databases/NAME/NAME.sql` dumps (+ `NAME.json`) and
question CSVs with gold queries whose `{a, b}` braces and `;`-separated statements are alternatives."""

from __future__ import annotations

import contextlib
import csv
import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psycopg import sql
from psycopg_pool import ConnectionPool

from rag_server.domains import Domain
from rag_server.errors import NotFound
from rag_server.sql.catalog import describe, ensure_reader_role, record_table

QUESTION_FILE = "questions_gen_postgres.csv"
# The project's own layout: one JSON object per question ({"_id", "text", "sql", "category", "ordered"}), over
# tables imported from CSV/Parquet files (with a catalog.json) rather than SQL dumps.
JSONL_QUESTION_FILE = "sql_questions.jsonl"
_BRACES = re.compile(r"\{([^{}]*)\}")
_QUALIFIED_DDL = re.compile(r"\b(CREATE TABLE|INSERT INTO)\s+(\w+)\.(\w+)", re.IGNORECASE)
_CREATE_SCHEMA = re.compile(r"CREATE SCHEMA[^;]*;", re.IGNORECASE)
_SCHEMA_NAME = re.compile(r"CREATE SCHEMA\s+(?:IF NOT EXISTS\s+)?(\w+)", re.IGNORECASE)


@dataclass(frozen=True)
class SqlQuestion:
    id: str
    question: str
    database: str
    category: str
    gold: tuple[str, ...]
    instructions: str = ""
    asks_order: bool | None = None

    @property
    def ordered(self) -> bool:
        """Whether row order counts: as labeled, else when every gold alternative ends with an ORDER BY."""
        if self.asks_order is not None:
            return self.asks_order
        return all(_top_level_order_by(query) for query in self.gold)


def is_dump_layout(dataset: Path) -> bool:
    """defog's layout (SQL dumps under databases/) rather than the project's (tables from files)."""
    return (dataset / "databases").is_dir()


def load_questions(dataset: Path, file_name: str | None = None) -> list[SqlQuestion]:
    """The questions of a data set in either layout."""
    if file_name is None and (dataset / JSONL_QUESTION_FILE).is_file():
        return _jsonl_questions(dataset / JSONL_QUESTION_FILE, dataset.name)
    file_name = file_name or QUESTION_FILE
    path = dataset / file_name
    if not path.is_file():
        raise NotFound(f"no {file_name} or {JSONL_QUESTION_FILE} in {dataset}")
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [
        SqlQuestion(
            f"{row['db_name']}-{number:03d}",
            row["question"],
            row["db_name"],
            row.get("query_category") or "",
            tuple(expand_gold(row["query"])),
            row.get("instructions") or "",
        )
        for number, row in enumerate(rows, start=1)
    ]


def _jsonl_questions(path: Path, database: str) -> list[SqlQuestion]:
    questions = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            questions.append(
                SqlQuestion(
                    row["_id"],
                    row["text"],
                    database,
                    row.get("category", ""),
                    (row["sql"],),
                    "",
                    row.get("ordered"),
                )
            )
    return questions


def expand_gold(query: str) -> list[str]:
    """Every alternative a gold query stands for.

    `;` separates alternative statements. A non-empty `{a, b}` offers each non-empty subset of its columns,
    and a later empty `{}` repeats the choice made for the brace group before it.
    """
    expanded: list[str] = []
    for statement in (part.strip() for part in query.split(";")):
        if not statement:
            continue
        groups = [
            [option.strip() for option in group.split(",")]
            for group in _BRACES.findall(statement)
            if group.strip()
        ]
        choices = [
            [
                ", ".join(subset)
                for size in range(1, len(group) + 1)
                for subset in itertools.combinations(group, size)
            ]
            for group in groups
        ]
        for combination in itertools.product(*choices):
            expanded.append(_fill(statement, list(combination)))
    return list(dict.fromkeys(expanded))


def _fill(statement: str, combination: list[str]) -> str:
    remaining = iter(combination)
    last = ""

    def substitute(match: re.Match[str]) -> str:
        nonlocal last
        if match.group(1).strip():
            last = next(remaining)
        return last

    return _BRACES.sub(substitute, statement)


def _top_level_order_by(query: str) -> bool:
    depth = 0
    for token in re.findall(r"\(|\)|\border\s+by\b", query, flags=re.IGNORECASE):
        if token == "(":
            depth += 1
        elif token == ")":
            depth -= 1
        elif depth == 0:
            return True
    return False


def database_names(dataset: Path) -> list[str]:
    folder = dataset / "databases"
    if not folder.is_dir():
        raise NotFound(f"no databases/ folder in {dataset}")
    return sorted(path.name for path in folder.iterdir() if (path / f"{path.name}.sql").is_file())


def dump_schema(dump: str, database: str) -> str:
    """The schema a dump's tables go into: the one it creates itself, else one named after the database."""
    declared = _SCHEMA_NAME.search(dump)
    return declared.group(1).lower() if declared else f"defog_{database}"


def load_database(pool: ConnectionPool, domain: Domain, dataset: Path, database: str) -> str:
    """Load a dump into its own schema and register its tables (and the column descriptions of NAME.json)
    in the domain's catalog; returns the schema. A schema left by an earlier load is replaced."""
    folder = dataset / "databases" / database
    dump = (folder / f"{database}.sql").read_text(encoding="utf-8")
    schema = dump_schema(dump, database)
    script = _QUALIFIED_DDL.sub(
        lambda match: f"{match.group(1)} {match.group(3)}", _CREATE_SCHEMA.sub("", dump)
    )
    with pool.connection() as conn, conn.transaction():
        ensure_reader_role(conn)
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("SET LOCAL search_path = {}").format(sql.Identifier(schema)))
        conn.execute(script.encode())
        conn.execute("SET LOCAL search_path = public")
        relations = [
            row[0]
            for row in conn.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = %s AND c.relkind = 'r' ORDER BY c.relname",
                (schema,),
            )
        ]
        for relation in relations:
            conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(schema, relation)))
            record_table(conn, domain, relation, schema, relation, "registered", f"{database}.sql")
        for target, text in _descriptions(folder / f"{database}.json"):
            # NAME.json may describe a column under a spelling the dump does not use.
            with contextlib.suppress(NotFound):
                describe(conn, domain, target, text)
    return schema


def _descriptions(path: Path) -> list[tuple[str, str]]:
    if not path.is_file():
        return []
    metadata: dict[str, Any] = json.loads(path.read_text(encoding="utf-8")).get("table_metadata", {})
    found = []
    for table, columns in metadata.items():
        for column in columns:
            if column.get("column_description"):
                found.append(
                    (
                        f"{table.split('.')[-1].lower()}.{column['column_name'].lower()}",
                        column["column_description"],
                    )
                )
    return found
