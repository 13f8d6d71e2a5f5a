"""SQL is hostile until this module says otherwise.

`validate(sql, catalog)` parses with sqlglot and accepts exactly one read-only query over the catalog's tables
and columns, calling only allow-listed functions. It rewrites table names to their qualified relations, caps
the LIMIT and returns Postgres SQL regenerated from the tree (comments dropped), so what runs is what was
checked. Every rejection names the rule it broke. The sandbox (sandbox.py) contains whatever gets through.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from rag_server.errors import SqlRejected
from rag_server.sql.catalog import Catalog, CatalogTable

# Top-level shapes of a read-only query.
_QUERY_ROOTS = (exp.Select, exp.Union, exp.Intersect, exp.Except)
# Nodes that write, define, lock, run commands or change the session, wherever they appear (CTEs included).
_FORBIDDEN_NODES: tuple[tuple[type[exp.Expression], str], ...] = (
    (exp.Insert, "write"),
    (exp.Update, "write"),
    (exp.Delete, "write"),
    (exp.Merge, "write"),
    (exp.Create, "ddl"),
    (exp.Drop, "ddl"),
    (exp.Alter, "ddl"),
    (exp.TruncateTable, "ddl"),
    (exp.Copy, "copy"),
    (exp.Command, "command"),
    (exp.Set, "set"),
    (exp.Transaction, "transaction"),
    (exp.Commit, "transaction"),
    (exp.Rollback, "transaction"),
    (exp.Into, "select_into"),
    (exp.Lock, "locking"),
    (exp.Placeholder, "parameter"),
    (exp.Parameter, "parameter"),
)

# Functions by sqlglot's expression key (typed functions) or, for functions sqlglot does not model, by name.
# Everything else is refused: pg_sleep, pg_read_file, lo_*, dblink, set_config, current_setting, nextval, ...
ALLOWED_FUNCTIONS = frozenset(
    {
        # aggregates
        "count",
        "countif",
        "sum",
        "avg",
        "min",
        "max",
        "stddev",
        "stddevpop",
        "stddevsamp",
        "variance",
        "variancepop",
        "percentilecont",
        "percentiledisc",
        "median",
        "mode",
        "arrayagg",
        "groupconcat",
        "logicaland",
        "logicalor",
        "corr",
        "covarpop",
        "covarsamp",
        # windows
        "rownumber",
        "rank",
        "denserank",
        "percentrank",
        "cumedist",
        "ntile",
        "lag",
        "lead",
        "firstvalue",
        "lastvalue",
        "nthvalue",
        # conditionals and logic
        "case",
        "exists",
        "if",
        "coalesce",
        "nullif",
        "greatest",
        "least",
        "and",
        "or",
        "xor",
        # casts
        "cast",
        "trycast",
        # math
        "abs",
        "round",
        "ceil",
        "floor",
        "sqrt",
        "pow",
        "ln",
        "log",
        "exp",
        "sign",
        "mod",
        "div",
        "trunc",
        # text
        "lower",
        "upper",
        "initcap",
        "length",
        "substring",
        "trim",
        "concat",
        "concatws",
        "left",
        "right",
        "replace",
        "strposition",
        "splitpart",
        "lpad",
        "rpad",
        "reverse",
        "regexplike",
        "regexpreplace",
        "regexpextract",
        # dates
        "currentdate",
        "currenttimestamp",
        "currenttime",
        "timestamptrunc",
        "datetrunc",
        "extract",
        "date",
        "timetostr",
        "strtodate",
        "strtotime",
        "timestrtotime",
        "tsordstodate",
        "dateadd",
        "datesub",
        "datediff",
        "timestampadd",
        "timestampsub",
        "unixtodate",
        "datefromparts",
        "anonymous:age",
        "anonymous:date_part",
        "anonymous:to_char",
        "anonymous:to_date",
        "anonymous:to_timestamp",
        "anonymous:make_date",
        "anonymous:make_interval",
        "anonymous:justify_days",
        "anonymous:justify_interval",
        "anonymous:date_trunc",
        "anonymous:now",
        "anonymous:to_number",
        "anonymous:width_bucket",
        "anonymous:bool_and",
        "anonymous:bool_or",
        "anonymous:every",
        "anonymous:char_length",
        "anonymous:btrim",
        "anonymous:ltrim",
        "anonymous:rtrim",
        "anonymous:strpos",
        "anonymous:substr",
        "anonymous:translate",
        "anonymous:string_agg",
        "anonymous:array_agg",
        "anonymous:ceiling",
        "anonymous:power",
        "anonymous:log10",
        "anonymous:cbrt",
        "anonymous:isfinite",
        "anonymous:round",
        "anonymous:abs",
        "anonymous:position",
        "anonymous:split_part",
        "anonymous:regexp_replace",
        "anonymous:concat_ws",
    }
)

# A statement this large is not a question's answer; refusing it bounds the validator's own work.
_TOO_MANY_NODES = 20_000


@dataclass(frozen=True)
class ValidatedSql:
    """A statement that passed: the SQL to run, the catalog tables it reads and the row cap applied."""

    sql: str
    tables: tuple[str, ...]
    limit: int


def validate(text: str, catalog: Catalog, row_cap: int, dialect: str = "postgres") -> ValidatedSql:
    """The statement rewritten for the sandbox, or SqlRejected naming the broken rule."""
    tree = _parse_one(text, dialect)
    _check_shape(tree)
    tables = _check_tables(tree, catalog)
    _check_columns(tree, catalog)
    _check_functions(tree)
    limit = _cap_limit(tree, row_cap)
    rendered = tree.sql(dialect="postgres", comments=False)
    # What runs is regenerated text: parse it once more, so a generator quirk cannot smuggle a second statement.
    if len(_statements(rendered, "postgres")) != 1:
        raise SqlRejected("single_statement", "the rewritten SQL did not parse back as one statement")
    return ValidatedSql(rendered, tuple(sorted(tables)), limit)


def _statements(text: str, dialect: str) -> list[exp.Expression]:
    try:
        return [tree for tree in sqlglot.parse(text, read=dialect) if tree is not None]
    except SqlglotError as error:
        raise SqlRejected("syntax", _first_line(str(error))) from None


def _parse_one(text: str, dialect: str) -> exp.Expression:
    if not text or not text.strip():
        raise SqlRejected("syntax", "the statement is empty")
    if "\x00" in text:
        raise SqlRejected("syntax", "NUL characters are not allowed")
    trees = _statements(text, dialect)
    if not trees:
        raise SqlRejected("syntax", "no statement found (only comments?)")
    if len(trees) != 1:
        raise SqlRejected("single_statement", f"exactly one statement is allowed, found {len(trees)}")
    return trees[0]


def _check_shape(tree: exp.Expression) -> None:
    root = tree.this if isinstance(tree, exp.Subquery) else tree
    if not isinstance(root, _QUERY_ROOTS):
        raise SqlRejected("select_only", f"only SELECT queries are allowed, not {_kind(root)}")
    for count, node in enumerate(tree.walk(), start=1):
        if count > _TOO_MANY_NODES:
            raise SqlRejected("too_complex", f"the statement has more than {_TOO_MANY_NODES} parts")
        for kind, rule in _FORBIDDEN_NODES:
            if isinstance(node, kind):
                raise SqlRejected(rule, f"{_kind(node)} is not allowed in a read-only query")
        if isinstance(node, exp.Select) and node.args.get("locks"):
            raise SqlRejected("locking", "FOR UPDATE / FOR SHARE is not allowed")
        if isinstance(node, exp.Identifier) and not node.this.isprintable():
            raise SqlRejected("identifier", f"identifier {node.this!r} has control characters")


def _kind(node: exp.Expression) -> str:
    if isinstance(node, exp.Command):
        return str(node.this).upper()
    return node.key.upper()


def _folded(identifier: exp.Expression | None) -> str:
    """A name as Postgres resolves it: unquoted identifiers fold to lower case."""
    if not isinstance(identifier, exp.Identifier):
        return identifier.name.lower() if identifier is not None else ""
    return identifier.this if identifier.quoted else identifier.this.lower()


def _cte_names(tree: exp.Expression) -> set[str]:
    return {_folded(cte.args["alias"].this) for cte in tree.find_all(exp.CTE)}


def _check_tables(tree: exp.Expression, catalog: Catalog) -> set[str]:
    """Every table must be a CTE or a catalog table, unqualified or in the domain's own schema; rewrites them."""
    ctes = _cte_names(tree)
    used: set[str] = set()
    for table in list(tree.find_all(exp.Table)):
        if not isinstance(table.this, exp.Identifier):
            # FROM some_function(...): a table function; only allow-listed functions pass _check_functions,
            # and none of those returns a set.
            raise SqlRejected("table_function", f"{table.sql(dialect='postgres')} is not a catalog table")
        name = _folded(table.this)
        schema = _folded(table.args.get("db"))
        if table.catalog:
            raise SqlRejected("other_schema", f"{table.sql(dialect='postgres')} names a database")
        if not schema and name in ctes:
            continue
        found = _lookup(catalog, schema, name)
        if found is None:
            if schema:
                raise SqlRejected(
                    "other_schema", f"{table.sql(dialect='postgres')} is outside the domain's tables"
                )
            raise SqlRejected("unknown_table", f"{table.name!r} is not a table of domain {catalog.domain!r}")
        used.add(found.name)
        # Qualified and quoted, so that what runs cannot resolve to anything but the catalog's relation.
        if not table.alias:
            table.set("alias", exp.TableAlias(this=exp.to_identifier(found.name)))
        table.set("this", exp.to_identifier(found.relation, quoted=True))
        table.set("db", exp.to_identifier(found.schema_name, quoted=True))
    return used


def _lookup(catalog: Catalog, schema: str, name: str) -> CatalogTable | None:
    """A table by its catalog name, or by its real `schema.relation` when qualified."""
    if not schema:
        return catalog.tables.get(name)
    return next(
        (
            table
            for table in catalog.tables.values()
            if table.relation == name and schema in {table.schema_name, catalog.schema_name}
        ),
        None,
    )


def _check_columns(tree: exp.Expression, catalog: Catalog) -> None:
    """Columns must belong to a table of the query, or be an alias or CTE column the query itself defines."""
    tables_by_alias: dict[str, set[str]] = {}
    known: set[str] = set()
    for table in tree.find_all(exp.Table):
        relation = next(
            (t for t in catalog.tables.values() if t.relation == table.name and t.schema_name == table.db),
            None,
        )
        columns = relation.column_names if relation else set()
        known |= columns
        alias = table.args.get("alias")
        tables_by_alias[_folded(alias.this) if alias and alias.this else _folded(table.this)] = columns
    for node in tree.find_all(exp.Alias, exp.TableAlias):
        known.add(_folded(node.args.get("alias") if isinstance(node, exp.Alias) else node.this))
        if isinstance(node, exp.TableAlias):
            known |= {_folded(column) for column in node.args.get("columns") or []}
    for column in tree.find_all(exp.Column):
        if isinstance(column.this, exp.Star):
            continue
        name = _folded(column.this)
        qualifier = _folded(column.args.get("table"))
        if column.args.get("db") or column.args.get("catalog"):
            raise SqlRejected("other_schema", f"column {column.sql(dialect='postgres')} names a schema")
        if qualifier and tables_by_alias.get(qualifier):
            if name not in tables_by_alias[qualifier]:
                raise SqlRejected("unknown_column", f"table {qualifier!r} has no column {column.name!r}")
        elif name not in known:
            raise SqlRejected(
                "unknown_column", f"{column.sql(dialect='postgres')} is not a column of the query's tables"
            )


def _function_name(node: exp.Func) -> str:
    if isinstance(node, exp.Anonymous):
        return f"anonymous:{node.name.lower()}"
    return node.key


def _check_functions(tree: exp.Expression) -> None:
    for node in tree.find_all(exp.Func):
        name = _function_name(node)
        if name not in ALLOWED_FUNCTIONS:
            shown = node.name if isinstance(node, exp.Anonymous) else node.sql_name()
            raise SqlRejected("function_not_allowed", f"function {shown.lower()}() is not on the allow-list")


def _cap_limit(tree: exp.Expression, row_cap: int) -> int:
    """Add a LIMIT, or lower the one given, to the row cap; FETCH FIRST is turned into LIMIT."""
    query = tree.this if isinstance(tree, exp.Subquery) else tree
    requested = row_cap
    fetch = query.args.get("limit")
    if isinstance(fetch, exp.Fetch):
        requested = _literal_count(fetch.args.get("count"), row_cap)
    elif isinstance(fetch, exp.Limit):
        requested = _literal_count(fetch.expression, row_cap)
    limit = min(requested, row_cap)
    query.set("limit", exp.Limit(expression=exp.Literal.number(limit)))
    return limit


def _literal_count(node: exp.Expression | None, default: int) -> int:
    if isinstance(node, exp.Literal) and node.is_int:
        return max(int(node.this), 0)
    return default


def _first_line(message: str) -> str:
    return message.strip().splitlines()[0][:300] if message.strip() else "cannot parse"
