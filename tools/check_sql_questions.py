"""Check the demo's analytical eval questions: every gold SQL query must run and return rows.

Loads the CSV tables of `rag_server/demo/tables/` into a throwaway embedded PostgreSQL, then runs the
gold query of each question in `evals/sets/demo/sql_questions.jsonl`, printing its id, row count and
first row. Also checks the question file's fields and that catalog.json describes every column.
Exits with status 1 on any failure.

Run from a checkout with `python tools/check_sql_questions.py [QUESTIONS_JSONL]`.
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from rag_server.db import EmbeddedServer

REPO = Path(__file__).resolve().parents[1]
TABLES_DIR = REPO / "rag_server" / "demo" / "tables"
QUESTIONS = REPO / "evals" / "sets" / "demo" / "sql_questions.jsonl"
TABLES = ("customers", "orders", "refunds", "tickets")
CATEGORIES = {"count", "sum", "avg", "min_max", "group_by", "top_n", "date_range", "join", "ratio", "other"}
EXPECTED_QUESTIONS = 30


def column_type(column: str) -> str:
    """The PostgreSQL type of a table column, from its name."""
    if column.endswith("_id") or column == "seats":
        return "bigint"
    if column == "amount":
        return "numeric(12,2)"
    if column.endswith("_date") or column in ("opened_at", "resolved_at"):
        return "date"
    if column == "first_response_hours":
        return "numeric"
    return "text"


def csv_header(path: Path) -> list[str]:
    """The column names on the first line of a CSV file."""
    with path.open(newline="", encoding="utf-8") as handle:
        return next(csv.reader(handle))


def load_table(conn: psycopg.Connection[Any], name: str, directory: Path) -> int:
    """Create table `name` from its CSV file (empty cells become NULL); returns its row count."""
    path = directory / f"{name}.csv"
    columns = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(column), sql.SQL(column_type(column)))
        for column in csv_header(path)
    )
    conn.execute(sql.SQL("CREATE TABLE {} ({})").format(sql.Identifier(name), columns))
    copy = sql.SQL("COPY {} FROM STDIN WITH (FORMAT csv, HEADER true)").format(sql.Identifier(name))
    with conn.cursor() as cursor, cursor.copy(copy) as loader, path.open("rb") as handle:
        while chunk := handle.read(1 << 16):
            loader.write(chunk)
    count = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(name))).fetchone()
    return int(count[0]) if count else 0


def check_catalog(directory: Path) -> list[str]:
    """Problems with catalog.json: undescribed or unknown tables and columns, joins on unknown columns."""
    catalog = json.loads((directory / "catalog.json").read_text(encoding="utf-8"))
    problems = []
    columns = {name: csv_header(directory / f"{name}.csv") for name in TABLES}
    if set(catalog["tables"]) != set(TABLES):
        problems.append(f"catalog tables {sorted(catalog['tables'])} are not {sorted(TABLES)}")
    for name, header in columns.items():
        described = catalog["tables"].get(name, {}).get("columns", {})
        if list(described) != header:
            problems.append(
                f"catalog columns of {name} {list(described)} do not match the CSV header {header}"
            )
    for join in catalog["joins"]:
        for side in (join["left"], join["right"]):
            table, _, column = side.partition(".")
            if column not in columns.get(table, []):
                problems.append(f"join on unknown column {side}")
    return problems


def read_questions(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The questions of a JSONL file, and the problems with their fields."""
    questions = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    problems = []
    if len(questions) != EXPECTED_QUESTIONS:
        problems.append(f"{len(questions)} questions, expected {EXPECTED_QUESTIONS}")
    ids = [question.get("_id") for question in questions]
    if len(set(ids)) != len(ids):
        problems.append("duplicate question ids")
    for question in questions:
        qid = question.get("_id")
        if set(question) != {"_id", "text", "sql", "category", "ordered"}:
            problems.append(f"{qid}: fields {sorted(question)}")
        if question.get("category") not in CATEGORIES:
            problems.append(f"{qid}: unknown category {question.get('category')!r}")
        if not isinstance(question.get("ordered"), bool):
            problems.append(f"{qid}: ordered must be true or false")
        elif question["ordered"] and "order by" not in " ".join(question.get("sql", "").lower().split()):
            problems.append(f"{qid}: ordered, but its SQL has no ORDER BY")
    return questions, problems


def run_question(conn: psycopg.Connection[Any], question: dict[str, Any]) -> str | None:
    """Run one gold query and print its result summary; returns a problem, or None."""
    qid = question["_id"]
    try:
        with conn.transaction():
            rows = conn.execute(question["sql"]).fetchall()
    except psycopg.Error as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"{qid}: ERROR {message}")
        return f"{qid}: {message}"
    first = rows[0] if rows else None
    print(f"{qid}: {len(rows)} rows, first {first}")
    if not rows or all(value is None for value in rows[0]):
        return f"{qid}: empty result"
    if len(rows) == 1 and rows[0] == (0,):
        return f"{qid}: the answer is 0, which does not tell a right query from a wrong one"
    return None


def check(questions_path: Path = QUESTIONS, directory: Path = TABLES_DIR) -> list[str]:
    """Load the tables, run every question; returns the problems found."""
    questions, problems = read_questions(questions_path)
    problems += check_catalog(directory)
    workdir = Path(tempfile.mkdtemp(prefix="demo-tables-", dir="/tmp"))
    workdir.chmod(0o755)
    server = EmbeddedServer.attach(workdir / "pgdata")
    try:
        with psycopg.connect(server.admin_url, autocommit=True) as conn:
            for name in TABLES:
                print(f"loaded {name}: {load_table(conn, name, directory)} rows")
            conn.execute("SET default_transaction_read_only = on")
            for question in questions:
                if problem := run_question(conn, question):
                    problems.append(problem)
    finally:
        server.detach()
        shutil.rmtree(workdir, ignore_errors=True)
    return problems


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    problems = check(Path(args[0]) if args else QUESTIONS)
    for problem in problems:
        print(f"FAIL {problem}", file=sys.stderr)
    print("all questions ran and returned rows" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
