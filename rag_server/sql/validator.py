"""SQL is hostile until this module says otherwise.

`validate(sql, catalog)` parses with sqlglot and accepts exactly one read-only query over the catalog's tables
and columns, calling only allow-listed functions. It rewrites table names to their qualified relations, caps
the LIMIT and returns Postgres SQL regenerated from the tree (comments dropped), so what runs is what was
checked. Every rejection names the rule it broke. The sandbox (sandbox.py) contains whatever gets through.
"""

from __future__ import annotations

import functools
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

# The Postgres functions a query may call, each with a call per documented signature. sqlglot parses many of
# them into its own expression classes (to_timestamp(double) into UnixToTime, to_timestamp(text, text) into
# StrToTime, date_part into Extract, string_agg into GroupConcat, ...), so the accepted classes are derived from
# these calls below rather than listed by hand; the calls also run as they are in the tests (tests/sql).
# Everything else is refused: pg_sleep, pg_read_file, lo_*, dblink, set_config, current_setting, nextval, ...
FUNCTION_CALLS: dict[str, tuple[str, ...]] = {
    # aggregates
    "count": ("count(*)", "count(1)", "count(DISTINCT 1)"),
    "sum": ("sum(1.5)", "sum(1) FILTER (WHERE true)"),
    "avg": ("avg(2)",),
    "min": ("min(1)",),
    "max": ("max('a')",),
    "stddev": ("stddev(1.0)",),
    "stddev_pop": ("stddev_pop(1.0)",),
    "stddev_samp": ("stddev_samp(1.0)",),
    "variance": ("variance(1.0)",),
    "var_pop": ("var_pop(1.0)",),
    "var_samp": ("var_samp(1.0)",),
    "corr": ("corr(1.0, 2.0)",),
    "covar_pop": ("covar_pop(1.0, 2.0)",),
    "covar_samp": ("covar_samp(1.0, 2.0)",),
    "percentile_cont": (
        "percentile_cont(0.5) WITHIN GROUP (ORDER BY 2.0)",
        "percentile_cont(ARRAY[0.25, 0.75]) WITHIN GROUP (ORDER BY 2.0)",
    ),
    "percentile_disc": (
        "percentile_disc(0.5) WITHIN GROUP (ORDER BY 2)",
        "percentile_disc(ARRAY[0.25, 0.75]) WITHIN GROUP (ORDER BY 2)",
    ),
    "mode": ("mode() WITHIN GROUP (ORDER BY 1)",),
    "array_agg": ("array_agg(1)", "array_agg(1 ORDER BY 1)"),
    "string_agg": ("string_agg('a', ',')", "string_agg('a', ',' ORDER BY 'a')"),
    "bool_and": ("bool_and(true)",),
    "bool_or": ("bool_or(true)",),
    "every": ("every(true)",),
    # windows
    "row_number": ("row_number() OVER ()",),
    "rank": ("rank() OVER (ORDER BY 1)",),
    "dense_rank": ("dense_rank() OVER (ORDER BY 1)",),
    "percent_rank": ("percent_rank() OVER (ORDER BY 1)",),
    "cume_dist": ("cume_dist() OVER (ORDER BY 1)",),
    "ntile": ("ntile(4) OVER ()",),
    "lag": ("lag(1) OVER ()", "lag(1, 2) OVER ()", "lag(1, 2, 0) OVER ()"),
    "lead": ("lead(1) OVER ()", "lead(1, 2) OVER ()", "lead(1, 2, 0) OVER ()"),
    "first_value": ("first_value(1) OVER ()",),
    "last_value": ("last_value(1) OVER ()",),
    "nth_value": ("nth_value(1, 1) OVER ()",),
    # conditionals
    "coalesce": ("coalesce(NULL, 1)", "coalesce(NULL, NULL, 'a')"),
    "nullif": ("nullif(1, 2)",),
    "greatest": ("greatest(1, 2)", "greatest(1, 2, 3)"),
    "least": ("least(1, 2)", "least(1, 2, 3)"),
    # math
    "abs": ("abs(-1.5)",),
    "round": ("round(1.25)", "round(1.25, 1)", "round(1.25::float8)"),
    "ceil": ("ceil(1.2)",),
    "ceiling": ("ceiling(1.2)",),
    "floor": ("floor(1.2)",),
    "trunc": ("trunc(1.25)", "trunc(1.25, 1)"),
    "sqrt": ("sqrt(2)",),
    "cbrt": ("cbrt(27)",),
    "pow": ("pow(2, 3)",),
    "power": ("power(2, 3)",),
    "exp": ("exp(1)",),
    "ln": ("ln(2)",),
    "log": ("log(100)", "log(2, 8)"),
    "log10": ("log10(100)",),
    "sign": ("sign(-2)",),
    "mod": ("mod(7, 3)",),
    "div": ("div(7, 3)",),
    "width_bucket": ("width_bucket(5, 0, 10, 5)",),
    "to_number": ("to_number('12.5', '99.9')",),
    # text
    "lower": ("lower('A')",),
    "upper": ("upper('a')",),
    "initcap": ("initcap('ab cd')",),
    "length": ("length('abc')",),
    "char_length": ("char_length('abc')",),
    "character_length": ("character_length('abc')",),
    "substring": (
        "substring('abc', 1, 2)",
        "substring('abc', 2)",
        "substring('abc' FROM 1 FOR 2)",
        "substring('abc' FROM 2)",
        "substring('abc' FROM 'b.')",
    ),
    "substr": ("substr('abc', 2)", "substr('abc', 1, 2)"),
    "position": ("position('b' IN 'abc')",),
    "strpos": ("strpos('abc', 'b')",),
    "trim": (
        "trim(' a ')",
        "trim(BOTH 'x' FROM 'xax')",
        "trim(LEADING 'x' FROM 'xa')",
        "trim(TRAILING 'x' FROM 'ax')",
    ),
    "btrim": ("btrim(' a ')", "btrim('xax', 'x')"),
    "ltrim": ("ltrim(' a')", "ltrim('xa', 'x')"),
    "rtrim": ("rtrim('a ')", "rtrim('ax', 'x')"),
    "concat": ("concat('a', 1)", "concat('a', 'b', NULL)"),
    "concat_ws": ("concat_ws(',', 'a', 'b')",),
    "left": ("left('abc', 2)",),
    "right": ("right('abc', 2)",),
    "replace": ("replace('abc', 'b', 'x')",),
    "translate": ("translate('abc', 'a', 'x')",),
    "split_part": ("split_part('a,b', ',', 2)",),
    "lpad": ("lpad('a', 3)", "lpad('a', 3, '0')"),
    "rpad": ("rpad('a', 3)", "rpad('a', 3, '0')"),
    "reverse": ("reverse('abc')",),
    "regexp_like": ("regexp_like('abc', 'b')", "regexp_like('abc', 'B', 'i')"),
    "regexp_replace": ("regexp_replace('abc', 'b', 'x')", "regexp_replace('abc', 'b', 'x', 'g')"),
    # dates and times
    "now": ("now()",),
    "date": ("date(TIMESTAMP '2024-01-31 10:00')",),
    "date_trunc": (
        "date_trunc('month', TIMESTAMP '2024-01-31 10:00')",
        "date_trunc('month', DATE '2024-01-31')",
        "date_trunc('day', TIMESTAMPTZ '2024-01-31 10:00+00', 'UTC')",
        "date_trunc('hour', INTERVAL '2 days 3 hours')",
    ),
    "extract": ("extract(year FROM TIMESTAMP '2024-01-31')", "extract(epoch FROM INTERVAL '1 day')"),
    "date_part": ("date_part('year', TIMESTAMP '2024-01-31')", "date_part('day', INTERVAL '2 days')"),
    "age": ("age(TIMESTAMP '2024-01-31')", "age(TIMESTAMP '2024-01-31', TIMESTAMP '2023-01-01')"),
    "to_char": ("to_char(TIMESTAMP '2024-01-31', 'YYYY-MM')", "to_char(1.5, '9.9')"),
    "to_date": ("to_date('2024-01-31', 'YYYY-MM-DD')",),
    "to_timestamp": ("to_timestamp(1700000000.5)", "to_timestamp('2024-01-31', 'YYYY-MM-DD')"),
    "make_date": ("make_date(2024, 1, 31)",),
    "make_interval": ("make_interval(0, 0, 0, 3)", "make_interval(days => 3)"),
    "justify_days": ("justify_days(INTERVAL '35 days')",),
    "justify_hours": ("justify_hours(INTERVAL '27 hours')",),
    "justify_interval": ("justify_interval(INTERVAL '1 month -1 hour')",),
    "isfinite": ("isfinite(DATE '2024-01-31')",),
}
ALLOWED_FUNCTIONS = frozenset(FUNCTION_CALLS)

# SQL syntax that sqlglot models as function nodes: operators, casts, keywords that need no parentheses.
SYNTAX_CALLS: tuple[str, ...] = (
    "CASE WHEN true THEN 1 ELSE 0 END",
    "CASE 1 WHEN 1 THEN 'a' END",
    "CAST('1' AS int)",
    "'1'::int",
    "DATE '2024-01-31'",
    "EXISTS (SELECT 1)",
    "true AND false OR true",
    "'abc' ~ 'b'",
    "'abc' ~* 'B'",
    "ARRAY[1, 2]",
    "current_date",
    "current_timestamp",
    "localtimestamp",
    # Not current_time: sqlglot writes it back as CURRENT_TIME(), which Postgres cannot parse.
)


@functools.cache
def allowed_classes() -> frozenset[type[exp.Func]]:
    """The function node classes accepted: whatever sqlglot parses an allow-listed call or the syntax into.

    Derived once (about 0.1 s) on first use. Anonymous is never among them: functions sqlglot does not model
    are checked by name against ALLOWED_FUNCTIONS.
    """
    found: set[type[exp.Func]] = set()
    for call in [*SYNTAX_CALLS, *(call for calls in FUNCTION_CALLS.values() for call in calls)]:
        found |= {
            type(node) for node in sqlglot.parse_one(f"SELECT {call}", read="postgres").find_all(exp.Func)
        }
    return frozenset(found - {exp.Anonymous})


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
        key = _folded(alias.this) if alias and alias.this else _folded(table.this)
        if key in tables_by_alias and not (columns and tables_by_alias[key]):
            # One alias in two scopes, one of them a CTE (columns unknown here): check against every known name.
            tables_by_alias[key] = set()
        else:
            # Or two catalog tables: the column must be one of either (Postgres tells which scope holds it).
            tables_by_alias[key] = tables_by_alias.get(key, set()) | columns
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


def _function_allowed(node: exp.Func) -> bool:
    if not isinstance(node, exp.Anonymous):
        return type(node) in allowed_classes()
    name = node.this
    # A quoted name is matched as written, as Postgres resolves it.
    text = name.this if isinstance(name, exp.Identifier) and name.quoted else str(node.name).lower()
    return text in ALLOWED_FUNCTIONS


def _check_functions(tree: exp.Expression) -> None:
    for node in tree.find_all(exp.Func):
        if isinstance(node.parent, exp.Dot) and node.parent.expression is node:
            # schema.function(...): a function of another schema, whatever its name, is not the built-in.
            raise SqlRejected(
                "other_schema", f"{node.parent.sql(dialect='postgres')} calls a schema's function"
            )
        if not _function_allowed(node):
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
