"""Import CSV, JSON-lines and Parquet files as typed tables of a domain, for the sql route.

Types are inferred by pyarrow and can be overridden per column. A re-import replaces the table atomically: the
drop, the create, the copy and the catalog update are one transaction, so a query sees the old table or the new.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv
import pyarrow.json
import pyarrow.parquet
from psycopg import sql
from psycopg_pool import ConnectionPool
from tqdm import tqdm

from rag_server.domains import Domain
from rag_server.errors import IngestError, RagError
from rag_server.sql.catalog import check_table_name, ensure_reader_role, ensure_schema, record_table

TABLE_SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
# The types a user may ask for (they are written into DDL, so only these shapes are accepted).
_OVERRIDABLE = re.compile(
    r"^(bigint|integer|smallint|real|double precision|boolean|date|text|jsonb|timestamptz?|"
    r"numeric(\(\d{1,3}(,\s*\d{1,3})?\))?|varchar\(\d{1,5}\))$"
)
_COPY_BATCH_ROWS = 10_000


@dataclass(frozen=True)
class TableImport:
    """What one file became."""

    name: str
    source: str
    rows: int
    columns: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        return {"table": self.name, "source": self.source, "rows": self.rows, "columns": self.columns}


def is_table_file(path: Path) -> bool:
    return path.suffix.lower() in TABLE_SUFFIXES


def table_name_for(path: Path) -> str:
    """`Orders 2024.csv` -> `orders_2024`."""
    return check_table_name(_identifier(path.stem, "table", "t_"))


def parse_type_overrides(values: list[str]) -> dict[str, str]:
    """`column=type` pairs from the command line, checked against the types we allow."""
    overrides = {}
    for value in values:
        column, sep, type_name = value.partition("=")
        type_name = " ".join(type_name.lower().split())
        if not sep or not column or not _OVERRIDABLE.match(type_name):
            raise IngestError(
                f"bad type override {value!r}: use COLUMN=TYPE with TYPE one of bigint, integer, numeric(p,s), "
                "double precision, boolean, date, timestamp, timestamptz, text, jsonb"
            )
        overrides[column] = type_name
    return overrides


def read_table(path: Path) -> pa.Table:
    """The file as an Arrow table; a file that cannot be read raises IngestError with the reason."""
    kind = TABLE_SUFFIXES.get(path.suffix.lower())
    try:
        if kind == "csv":
            return pyarrow.csv.read_csv(path)
        if kind == "jsonl":
            return pyarrow.json.read_json(path)
        if kind == "parquet":
            return pyarrow.parquet.read_table(path)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as error:
        raise IngestError(f"cannot read {path} as {kind}: {error}") from None
    raise IngestError(f"{path}: not a table file (use .csv, .jsonl, .ndjson or .parquet)")


def postgres_type(arrow_type: pa.DataType) -> str:
    """The Postgres column type for an inferred Arrow type."""
    if pa.types.is_boolean(arrow_type):
        return "boolean"
    if pa.types.is_integer(arrow_type):
        return "bigint"
    if pa.types.is_floating(arrow_type):
        return "double precision"
    if pa.types.is_decimal(arrow_type):
        return "numeric"
    if pa.types.is_date(arrow_type):
        return "date"
    if pa.types.is_timestamp(arrow_type):
        return "timestamptz" if arrow_type.tz else "timestamp"
    if pa.types.is_nested(arrow_type):
        return "jsonb"
    return "text"


def column_name_for(name: str) -> str:
    """Header cells become lower-case identifiers: `Order Date` -> `order_date`."""
    return _identifier(name, "column", "c_")


def _identifier(text: str, fallback: str, digit_prefix: str) -> str:
    """Lower case, runs of other characters to `_`, never empty, never starting with a digit."""
    cleaned = re.sub(r"[^a-z0-9_]+", "_", text.strip().lower()).strip("_") or fallback
    return cleaned if not cleaned[0].isdigit() else f"{digit_prefix}{cleaned}"


def import_table(
    pool: ConnectionPool,
    domain: Domain,
    path: Path,
    name: str | None = None,
    type_overrides: dict[str, str] | None = None,
    progress: Callable[[int], None] | None = None,
) -> TableImport:
    """Load one file as table `name` (default: from the file name) of the domain, replacing an older one."""
    table = read_table(path)
    name = check_table_name(name or table_name_for(path))
    columns = _column_types(table, type_overrides or {})
    with pool.connection() as conn, conn.transaction():
        ensure_reader_role(conn)
        schema = ensure_schema(conn, domain)
        target = sql.Identifier(schema, name)
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(target))
        conn.execute(
            sql.SQL("CREATE TABLE {} ({})").format(
                target,
                sql.SQL(", ").join(
                    sql.SQL("{} {}").format(sql.Identifier(column), sql.SQL(type_name))
                    for column, type_name in columns.items()
                ),
            )
        )
        try:
            rows = _copy_rows(conn, target, list(columns), table, progress)
        except Exception as error:  # a value the column type refuses: the whole file is reported and skipped
            raise IngestError(f"cannot load {path} into table {name!r}: {error}") from None
        conn.execute(sql.SQL("ANALYZE {}").format(target))
        record_table(conn, domain, name, schema, name, "imported", str(path))
    return TableImport(name, str(path), rows, columns)


def _column_types(table: pa.Table, overrides: dict[str, str]) -> dict[str, str]:
    columns: dict[str, str] = {}
    for field in table.schema:
        column = column_name_for(field.name)
        if column in columns:
            raise IngestError(f"two columns are both called {column!r} once cleaned up; rename one")
        columns[column] = overrides.get(column, overrides.get(field.name, postgres_type(field.type)))
    unknown = set(overrides) - set(columns) - set(table.schema.names)
    if unknown:
        raise IngestError(f"type override for unknown column(s) {', '.join(sorted(unknown))}")
    return columns


def _copy_rows(
    conn: Any,
    target: sql.Composable,
    columns: list[str],
    table: pa.Table,
    progress: Callable[[int], None] | None,
) -> int:
    copy_sql = sql.SQL("COPY {} ({}) FROM STDIN").format(
        target, sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    written = 0
    with conn.cursor() as cursor, cursor.copy(copy_sql) as copy:
        for batch in table.to_batches(_COPY_BATCH_ROWS):
            for row in _rows(batch):
                copy.write_row(row)
            written += batch.num_rows
            if progress is not None:
                progress(batch.num_rows)
    return written


def _rows(batch: pa.RecordBatch) -> Iterator[tuple[Any, ...]]:
    values = [column.to_pylist() for column in batch.columns]
    nested = [pa.types.is_nested(field.type) for field in batch.schema]
    for row in zip(*values, strict=True):
        yield tuple(
            json.dumps(value) if is_nested and value is not None else value
            for value, is_nested in zip(row, nested, strict=True)
        )


CATALOG_FILE = "catalog.json"


def find_table_files(paths: list[Path], include_jsonl: bool) -> list[Path]:
    """Table files under the paths, in name order: CSV and Parquet always, JSON-lines when asked (`--tables`),
    since a JSON-lines file is otherwise a batch of documents."""
    suffixes = {suffix for suffix, kind in TABLE_SUFFIXES.items() if include_jsonl or kind != "jsonl"}
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(
                sorted(
                    p
                    for p in path.rglob("*")
                    if p.is_file()
                    and p.suffix.lower() in suffixes
                    and not any(part.startswith(".") for part in p.parts)
                )
            )
        elif path.is_file() and path.suffix.lower() in suffixes:
            found.append(path)
    return found


def import_table_files(
    pool: ConnectionPool,
    domain: Domain,
    files: list[Path],
    overrides: dict[str, str] | dict[str, dict[str, str]],
) -> dict[str, Any]:
    """Import each table file, then the `catalog.json` files beside them; a file that fails is reported and the
    others still land. `overrides` is COLUMN -> TYPE for every table, or TABLE -> {COLUMN: TYPE}."""
    imported, failed = [], []
    for path in tqdm(files, desc="tables", unit=" file", disable=not sys.stderr.isatty()):
        name = table_name_for(path)
        per_table = overrides.get(name) if isinstance(overrides.get(name), dict) else None
        types = (
            per_table if per_table is not None else {k: v for k, v in overrides.items() if isinstance(v, str)}
        )
        try:
            imported.append(import_table(pool, domain, path, type_overrides=types).as_dict())  # type: ignore[arg-type]
        except RagError as error:
            failed.append({"path": str(path), "reason": str(error)})
    applied = 0
    for catalog_file in sorted({path.parent / CATALOG_FILE for path in files}):
        if catalog_file.is_file():
            try:
                applied += apply_catalog_file(pool, domain, catalog_file)
            except RagError as error:
                failed.append({"path": str(catalog_file), "reason": str(error)})
    return {"imported": imported, "failed": failed, "catalog_entries": applied}


def apply_catalog_file(pool: ConnectionPool, domain: Domain, path: Path) -> int:
    """Descriptions and joins from a `catalog.json` beside the table files; returns how many it applied.

    Format: {"tables": {"orders": {"description": "...", "columns": {"amount": "..."}}},
             "joins": [{"left": "orders.customer_id", "right": "customers.customer_id"}]}
    """
    from rag_server.sql.catalog import add_join, describe, load_catalog

    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise IngestError(f"cannot read {path}: {error}") from None
    applied = 0
    with pool.connection() as conn, conn.transaction():
        known = load_catalog(conn, domain).tables
        for table, entry in (spec.get("tables") or {}).items():
            if table not in known:
                continue
            if entry.get("description"):
                describe(conn, domain, table, entry["description"])
                applied += 1
            for column, text in (entry.get("columns") or {}).items():
                if known[table].column(column) is not None:
                    describe(conn, domain, f"{table}.{column}", text)
                    applied += 1
        for join in spec.get("joins") or []:
            if {join["left"].partition(".")[0], join["right"].partition(".")[0]} <= set(known):
                add_join(conn, domain, join["left"], join["right"])
                applied += 1
    return applied
