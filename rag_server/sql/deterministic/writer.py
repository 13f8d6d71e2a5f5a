"""Plans written as SQL, and the two shapes written directly: shares of rows and counts of related rows."""

from __future__ import annotations

import datetime as dt
import re

from rag_server.errors import SqlDeclined
from rag_server.sql.catalog import Catalog, CatalogTable
from rag_server.sql.deterministic.plan import _join, _Plan
from rag_server.sql.deterministic.resolve import _main_table, _segment_filters
from rag_server.sql.deterministic.words import (
    _COMPARATORS,
    _GROUPING,
    _MONEY_WORDS,
    AGGREGATES,
    _mentions,
    _naming,
    _without_values,
)


def _share(text: str, match: re.Match[str], catalog: Catalog, today: dt.date) -> str:
    """`percentage of <population> <condition>`, `ratio of <part> to | out of <whole>`: a share of one table's rows.

    Filters of the part count in the numerator only. Filters of the whole apply to both, except those on a column
    the part also filters ("ratio of rating above 4 to rating below 4"), which make the denominator."""
    rest = text[match.end() :]
    counted = re.sub(r"\b(?:total (?:number|count)|overall)\b", " ", rest)  # counts, not sums
    asked = {name for name, words in AGGREGATES for word in words if word in counted}
    of_money = re.match(
        r"\s*(?:the )?(?:total )?(?:" + "|".join(_MONEY_WORDS) + r")\b", _without_values(rest, catalog)
    )
    if asked - {"count"} or of_money or _GROUPING.search(rest):
        raise SqlDeclined("the offline generator cannot express a share of amounts or a share per group")
    table = _main_table(rest, catalog)
    others = [t.name for t in catalog.tables.values() if t.name != table.name and _mentions(rest, t.name)]
    if others:
        raise SqlDeclined(
            f"the offline generator cannot express a share across tables ({table.name}, {', '.join(others)})"
        )
    split = re.search(r" (?:out of|among|of all) " + ("| to " if match.group(1) == "ratio" else ""), rest)
    if split is not None:
        part, whole = rest[: split.start()], rest[split.end() :]
    else:
        # "share of urgent tickets were resolved": the population ends where the table is named.
        named = _naming(rest, table.name)
        end = min(named)[1] if named else 0
        part, whole = rest[end:], rest[:end]
    plan = _Plan(table)
    part_filters = _segment_filters(part, catalog, plan, today)
    if not part_filters:
        raise SqlDeclined(f"cannot tell which {table.name} the {match.group(1)} counts")
    part_columns = {condition.split(" ")[0] for condition in part_filters}
    whole_only: list[str] = []
    for condition in _segment_filters(whole, catalog, plan, today):
        contrasting = (
            split is not None and split.group(0) == " to " and condition.split(" ")[0] in part_columns
        )
        (whole_only if contrasting else plan.filters).append(condition)
    scale = "100.0" if match.group(1) in {"share", "percentage", "percent"} else "1.0"
    denominator = f"count(*) FILTER (WHERE {' AND '.join(whole_only)})" if whole_only else "count(*)"
    where = f" WHERE {' AND '.join(plan.filters)}" if plan.filters else ""
    return (
        f"SELECT {scale} * count(*) FILTER (WHERE {' AND '.join(part_filters)}) / NULLIF({denominator}, 0) "
        f"AS value FROM {_from_clause(plan)}{where}"
    )


def _having(
    text: str,
    counted: tuple[re.Match[str], CatalogTable],
    catalog: Catalog,
    entity: CatalogTable,
    today: dt.date,
) -> str:
    """Entities by how many rows of another table they have: a LEFT JOIN, so that none counts as 0."""
    match, fact = counted
    plan = _Plan(fact)
    if not _join(catalog, plan, entity):
        raise SqlDeclined(f"no declared join connects {entity.name!r} and {fact.name!r}")
    on = plan.joins[entity.name]
    join = catalog.joins_between(fact.name, entity.name)[0]  # the one _join wrote
    fact_key = join.left_column if join.left_table == fact.name else join.right_column
    rest = text[: match.start()] + " " + text[match.end() :]
    conditions = _segment_filters(rest, catalog, plan, today)
    if set(plan.joins) - {entity.name}:
        raise SqlDeclined("the question filters on a third table; the offline generator joins two here")
    # Conditions on the counted rows belong to the join; a WHERE on them would drop the entities with none.
    on_fact = [c for c in conditions if c.startswith(f"{fact.name}.")]
    where = [c for c in conditions if c not in on_fact]
    keys = ", ".join(_display_columns(entity))
    sql = (
        f"SELECT {keys}, count({fact.name}.{fact_key}) AS value FROM {entity.name} LEFT JOIN {fact.name} "
        f"ON {' AND '.join([on, *on_fact])}{' WHERE ' + ' AND '.join(where) if where else ''} GROUP BY {keys} "
        f"HAVING count({fact.name}.{fact_key}) {_COMPARATORS[match.group(1)]} {match.group(2)}"
    )
    if re.match(r"\s*(how many|number of|count)\b", text):
        return f"SELECT count(*) AS value FROM ({sql}) AS counted"
    return sql + " ORDER BY value DESC, 1"


def _display_columns(table: CatalogTable) -> list[str]:
    key = next(
        (c.name for c in table.columns if c.name in {f"{table.name.rstrip('s')}_id", "id"}),
        table.columns[0].name,
    )
    name = next(
        (c.name for c in table.columns if c.name in {"name", "title", f"{table.name.rstrip('s')}_name"}), None
    )
    return [f"{table.name}.{key}"] + ([f"{table.name}.{name}"] if name else [])


def _from_clause(plan: _Plan) -> str:
    return plan.table.name + "".join(f" JOIN {name} ON {condition}" for name, condition in plan.joins.items())


def _write(plan: _Plan) -> str:
    from_clause = _from_clause(plan)
    where = f" WHERE {' AND '.join(plan.filters)}" if plan.filters else ""
    if plan.aggregate is None:
        # Joined rows repeat the listed table's rows: list each once.
        distinct = "DISTINCT " if plan.joins else ""
        return f"SELECT {distinct}{plan.table.name}.* FROM {from_clause}{where}"
    measure = (
        "count(*)"
        if plan.aggregate == "count" or plan.measure is None
        else f"{plan.aggregate}({plan.measure[0]}.{plan.measure[1]})"
    )
    if plan.entity is not None and plan.top is not None:
        keys = ", ".join(_display_columns(plan.entity))
        direction = "DESC" if plan.order_desc else "ASC"
        if plan.entity is plan.table and plan.measure is not None:
            # "top 3 restaurants by rating": rank the rows themselves, nothing to aggregate.
            column = f"{plan.measure[0]}.{plan.measure[1]}"
            return (
                f"SELECT {keys}, {column} AS value FROM {from_clause}{where} "
                f"ORDER BY {column} {direction} NULLS LAST LIMIT {plan.top}"
            )
        return (
            f"SELECT {keys}, {measure} AS value FROM {from_clause}{where} GROUP BY {keys} "
            f"ORDER BY value {direction} NULLS LAST LIMIT {plan.top}"
        )
    if plan.groups:
        positions = ", ".join(str(i) for i in range(1, len(plan.groups) + 1))
        order = f"value {'DESC' if plan.order_desc else 'ASC'} LIMIT {plan.top}" if plan.top else positions
        return (
            f"SELECT {', '.join(plan.groups)}, {measure} AS value FROM {from_clause}{where} "
            f"GROUP BY {positions} ORDER BY {order}"
        )
    return f"SELECT {measure} AS value FROM {from_clause}{where}"
