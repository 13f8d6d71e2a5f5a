"""What the sql route may query in a domain: tables, their columns (types, descriptions, values) and joins.

Imported tables live in the domain's own schema; registered ones stay where they are. Either way the sandbox
role `rag_sql_reader` gets SELECT on exactly the catalog's relations and nothing else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from rag_server.domains import Domain
from rag_server.errors import NotFound, RetrievalError

READER_ROLE = "rag_sql_reader"
# A column with at most this many distinct values keeps them all: the generator filters on them by equality.
CATEGORICAL_MAX = 60
SAMPLE_COUNT = 5
_SYSTEM_SCHEMAS = {"pg_catalog", "information_schema", "pg_toast"}
_SERVER_TABLES = {"chunks", "documents", "domains", "embedding_models", "ingestion_runs", "schema_migrations"}
TABLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_NUMERIC_TYPES = ("int", "numeric", "double", "real", "decimal", "money")
_DATE_TYPES = ("date", "timestamp")


@dataclass(frozen=True)
class CatalogColumn:
    name: str
    data_type: str
    description: str = ""
    sample_values: tuple[Any, ...] = ()
    distinct_count: int = 0

    @property
    def categorical(self) -> bool:
        """All of the column's values are known (few distinct ones)."""
        return 0 < self.distinct_count <= CATEGORICAL_MAX and len(self.sample_values) == self.distinct_count

    @property
    def is_numeric(self) -> bool:
        return any(kind in self.data_type for kind in _NUMERIC_TYPES) and "interval" not in self.data_type

    @property
    def is_date(self) -> bool:
        return self.data_type.startswith(_DATE_TYPES)

    @property
    def text_values(self) -> tuple[Any, ...]:
        """Every value of a categorical, non-numeric column (what a question names: "urgent", "eu"); else ()."""
        return self.sample_values if self.categorical and not self.is_numeric else ()


@dataclass(frozen=True)
class CatalogTable:
    name: str
    schema_name: str
    relation: str
    origin: str
    description: str
    row_count: int
    columns: tuple[CatalogColumn, ...]
    source: str | None = None

    def column(self, name: str) -> CatalogColumn | None:
        return next((column for column in self.columns if column.name == name), None)

    @property
    def column_names(self) -> set[str]:
        return {column.name for column in self.columns}


@dataclass(frozen=True)
class Join:
    left_table: str
    left_column: str
    right_table: str
    right_column: str

    def __str__(self) -> str:
        return f"{self.left_table}.{self.left_column} = {self.right_table}.{self.right_column}"


@dataclass(frozen=True)
class Catalog:
    """A domain's queryable tables and declared joins, read from the database in one go."""

    domain: str
    schema_name: str
    tables: dict[str, CatalogTable] = field(default_factory=dict)
    joins: tuple[Join, ...] = ()

    def table(self, name: str) -> CatalogTable:
        try:
            return self.tables[name]
        except KeyError:
            raise NotFound(f"domain {self.domain!r} has no table {name!r}") from None

    def joins_between(self, left: str, right: str) -> list[Join]:
        """Declared joins between two tables, oriented left -> right."""
        found = []
        for join in self.joins:
            if (join.left_table, join.right_table) == (left, right):
                found.append(join)
            elif (join.left_table, join.right_table) == (right, left):
                found.append(Join(left, join.right_column, right, join.left_column))
        return found


def check_table_name(name: str) -> str:
    if not TABLE_NAME.match(name):
        raise RetrievalError(
            f"invalid table name {name!r}: use lower-case letters, digits and underscores, "
            "starting with a letter or underscore (at most 63 characters)"
        )
    return name


def load_catalog(conn: psycopg.Connection[Any], domain: Domain) -> Catalog:
    """The domain's catalog as it is now."""
    tables: dict[str, CatalogTable] = {}
    rows = conn.execute(
        "SELECT id, name, schema_name, relation, origin, description, row_count, source"
        " FROM sql_tables WHERE domain_id = %s ORDER BY name",
        (domain.id,),
    ).fetchall()
    columns = _columns_by_table(conn, [row[0] for row in rows])
    for table_id, name, schema_name, relation, origin, description, row_count, source in rows:
        tables[name] = CatalogTable(
            name, schema_name, relation, origin, description, row_count, columns.get(table_id, ()), source
        )
    joins = tuple(
        Join(*row)
        for row in conn.execute(
            "SELECT left_table, left_column, right_table, right_column FROM sql_joins"
            " WHERE domain_id = %s ORDER BY id",
            (domain.id,),
        )
    )
    return Catalog(domain.name, domain.tables_schema, tables, joins)


def _columns_by_table(conn: psycopg.Connection[Any], ids: list[int]) -> dict[int, tuple[CatalogColumn, ...]]:
    found: dict[int, list[CatalogColumn]] = {}
    for table_id, name, data_type, description, samples, distinct in conn.execute(
        "SELECT table_id, name, data_type, description, sample_values, distinct_count FROM sql_columns"
        " WHERE table_id = ANY(%s) ORDER BY table_id, ordinal",
        (ids,),
    ):
        found.setdefault(table_id, []).append(
            CatalogColumn(name, data_type, description, tuple(samples), distinct)
        )
    return {table_id: tuple(columns) for table_id, columns in found.items()}


def ensure_reader_role(conn: psycopg.Connection[Any]) -> None:
    """Create the sandbox role if missing (cluster-wide) and let the connecting user switch to it."""
    # Several databases of one cluster may create it at once: the lock serializes them.
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('rag_server.reader_role'))")
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (READER_ROLE,)).fetchone()
    try:
        if not exists:
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(READER_ROLE)))
        conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(sql.Identifier(READER_ROLE)))
    except psycopg.errors.InsufficientPrivilege as error:
        raise RetrievalError(
            f"the database user cannot create or join the sandbox role {READER_ROLE!r} ({error}); "
            f"create it once as an admin: CREATE ROLE {READER_ROLE} NOLOGIN; GRANT {READER_ROLE} TO <user>"
        ) from None


def ensure_schema(conn: psycopg.Connection[Any], domain: Domain) -> str:
    """The domain's table schema, created if missing; the sandbox role may look up names in it."""
    schema = domain.tables_schema
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    conn.execute(
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(*map(sql.Identifier, (schema, READER_ROLE)))
    )
    return schema


def record_table(
    conn: psycopg.Connection[Any],
    domain: Domain,
    name: str,
    schema_name: str,
    relation: str,
    origin: str,
    source: str | None,
    description: str | None = None,
) -> None:
    """Grant the sandbox role SELECT on a relation and (re)write its catalog entry from what it holds now.

    Descriptions the user edited survive a re-import for the columns that still exist.
    """
    target = sql.Identifier(schema_name, relation)
    conn.execute(
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(*map(sql.Identifier, (schema_name, READER_ROLE)))
    )
    conn.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(target, sql.Identifier(READER_ROLE)))
    old = conn.execute(
        "SELECT id, description FROM sql_tables WHERE domain_id = %s AND name = %s", (domain.id, name)
    ).fetchone()
    old_columns: dict[str, str] = {}
    if old is not None:
        old_columns = dict(
            conn.execute(
                "SELECT name, description FROM sql_columns WHERE table_id = %s", (old[0],)
            ).fetchall()
        )
    row_count = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(target)).fetchone()[0]
    kept_description = description if description is not None else (old[1] if old else "")
    table_id = conn.execute(
        "INSERT INTO sql_tables (domain_id, name, schema_name, relation, origin, source, description, row_count)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (domain_id, name) DO UPDATE SET schema_name = excluded.schema_name,"
        " relation = excluded.relation, origin = excluded.origin, source = excluded.source,"
        " description = excluded.description, row_count = excluded.row_count, updated_at = now()"
        " RETURNING id",
        (domain.id, name, schema_name, relation, origin, source, kept_description, row_count),
    ).fetchone()[0]
    conn.execute("DELETE FROM sql_columns WHERE table_id = %s", (table_id,))
    for ordinal, (column, data_type) in enumerate(_relation_columns(conn, schema_name, relation)):
        samples, distinct = _column_values(conn, target, column)
        conn.execute(
            "INSERT INTO sql_columns (table_id, ordinal, name, data_type, description, sample_values,"
            " distinct_count) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (table_id, ordinal, column, data_type, old_columns.get(column, ""), Jsonb(samples), distinct),
        )


def _relation_columns(
    conn: psycopg.Connection[Any], schema_name: str, relation: str
) -> list[tuple[str, str]]:
    rows = conn.execute(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
        " WHERE attrelid = (quote_ident(%s) || '.' || quote_ident(%s))::regclass"
        " AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        (schema_name, relation),
    ).fetchall()
    return [(name, data_type) for name, data_type in rows]


def _column_values(
    conn: psycopg.Connection[Any], target: sql.Composable, column: str
) -> tuple[list[Any], int]:
    name = sql.Identifier(column)
    distinct = conn.execute(sql.SQL("SELECT count(DISTINCT {}) FROM {}").format(name, target)).fetchone()[0]
    limit = CATEGORICAL_MAX if distinct <= CATEGORICAL_MAX else SAMPLE_COUNT
    rows = conn.execute(
        sql.SQL(
            "SELECT {c}::text FROM {t} WHERE {c} IS NOT NULL GROUP BY {c} ORDER BY count(*) DESC, {c}::text LIMIT {n}"
        ).format(c=name, t=target, n=sql.Literal(limit))
    ).fetchall()
    return [row[0] for row in rows], distinct


def register_table(
    conn: psycopg.Connection[Any], domain: Domain, relation: str, name: str | None, description: str | None
) -> str:
    """Expose an existing table or view (`schema.relation`, default schema public) to the domain's questions."""
    schema_name, _, bare = relation.rpartition(".")
    schema_name = schema_name or "public"
    name = check_table_name(name or bare.lower())
    exists = conn.execute(
        "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'v', 'm', 'p', 'f')",
        (schema_name, bare),
    ).fetchone()
    if not exists:
        raise NotFound(f"no table or view {schema_name}.{bare} in the database")
    if schema_name in _SYSTEM_SCHEMAS or (
        schema_name == "public" and (bare in _SERVER_TABLES or bare.startswith("sql_"))
    ):
        raise RetrievalError(
            f"{schema_name}.{bare} belongs to the server or the system and cannot be exposed"
        )
    with conn.transaction():
        ensure_reader_role(conn)
        record_table(conn, domain, name, schema_name, bare, "registered", relation, description)
    return name


def add_join(conn: psycopg.Connection[Any], domain: Domain, left: str, right: str) -> Join:
    """Declare `table.column = table.column` as a join the generators may use; both sides must exist."""
    catalog = load_catalog(conn, domain)
    sides = []
    for side in (left, right):
        table, _, column = side.partition(".")
        if not column or catalog.table(table).column(column) is None:
            raise RetrievalError(f"{side!r} is not a table.column of domain {domain.name!r}")
        sides.append((table, column))
    join = Join(sides[0][0], sides[0][1], sides[1][0], sides[1][1])
    conn.execute(
        "INSERT INTO sql_joins (domain_id, left_table, left_column, right_table, right_column)"
        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
        (domain.id, *sides[0], *sides[1]),
    )
    return join


def describe(conn: psycopg.Connection[Any], domain: Domain, target: str, description: str) -> None:
    """Set the description of `table` or `table.column`."""
    table, _, column = target.partition(".")
    if column:
        updated = conn.execute(
            "UPDATE sql_columns c SET description = %s FROM sql_tables t"
            " WHERE c.table_id = t.id AND t.domain_id = %s AND t.name = %s AND c.name = %s",
            (description, domain.id, table, column),
        ).rowcount
    else:
        updated = conn.execute(
            "UPDATE sql_tables SET description = %s WHERE domain_id = %s AND name = %s",
            (description, domain.id, table),
        ).rowcount
    if not updated:
        raise NotFound(f"domain {domain.name!r} has no {'column' if column else 'table'} {target!r}")


def drop_table(conn: psycopg.Connection[Any], domain: Domain, name: str) -> None:
    """Remove a table from the catalog; an imported one is dropped from the database too."""
    catalog = load_catalog(conn, domain)
    table = catalog.table(name)
    with conn.transaction():
        if table.origin == "imported":
            conn.execute(
                sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table.schema_name, table.relation))
            )
        conn.execute("DELETE FROM sql_tables WHERE domain_id = %s AND name = %s", (domain.id, name))
        conn.execute(
            "DELETE FROM sql_joins WHERE domain_id = %s AND (left_table = %s OR right_table = %s)",
            (domain.id, name, name),
        )
