"""A question resolved against the catalog: its main table, filters, comparisons, measure, groups and top-N."""

from __future__ import annotations

import datetime as dt
import re

from rag_server.errors import SqlDeclined
from rag_server.sql.catalog import Catalog, CatalogColumn, CatalogTable
from rag_server.sql.deterministic.dates import _date_column, _resolve_dates
from rag_server.sql.deterministic.plan import _join, _joinable, _Plan
from rag_server.sql.deterministic.words import (
    _COMPARATOR_WORDS,
    _COMPARATORS,
    _COUNTING,
    _GROUPING,
    _MONEY_COLUMNS,
    _MONEY_WORDS,
    _NUMBER_WORDS,
    _PERIOD,
    _SIZE,
    _UNSUPPORTED,
    _all_words_in,
    _is_key,
    _literal,
    _mentions,
    _names_value,
    _position,
    _top_n,
    _without_values,
    _words,
)


def _check_supported(text: str, catalog: Catalog) -> None:
    # A known value ("duplicate_charge", "New York") is data, not an ask: look for unsupported asks without them.
    asks = _without_values(text, catalog)
    unsupported = next((phrase.strip() for phrase in _UNSUPPORTED if phrase in asks), None)
    if unsupported:
        raise SqlDeclined(
            f"the question asks for something the offline generator cannot express ({unsupported!r})"
        )


def _counted_rows(
    text: str, catalog: Catalog, entity: CatalogTable
) -> tuple[re.Match[str], CatalogTable] | None:
    """`more than 10 support tickets`: a comparison whose number counts the rows of another table."""
    for match in re.finditer(r"(?<![\w<>=])(" + _COMPARATOR_WORDS + r")\s*(\d+)\s+", text):
        after = " ".join(text[match.end() :].split()[:3])
        named = [
            t
            for t in catalog.tables.values()
            if t.name != entity.name and _position(after, t.name) is not None
        ]
        measured = any(
            _position(after, c.name) is not None
            for t in catalog.tables.values()
            for c in t.columns
            if c.is_numeric and not _is_key(c)
        )
        if named and not measured:
            return match, named[0]
    return None


def _segment_filters(segment: str, catalog: Catalog, plan: _Plan, today: dt.date) -> list[str]:
    """The filters one part of the question states (joins stay on the plan)."""
    kept = plan.filters
    plan.filters = []
    _resolve_filters(segment, catalog, plan)
    _resolve_dates(segment, catalog, plan, today)
    _resolve_comparisons(segment, catalog, plan)
    found, plan.filters = plan.filters, kept
    return found


def _main_table(text: str, catalog: Catalog) -> CatalogTable:
    """The table the question counts or measures: the first one it names, else the one whose columns it names."""
    named = [(_position(text, table.name), table.name) for table in catalog.tables.values()]
    named = [(position, name) for position, name in named if position is not None]
    if named:
        return catalog.tables[min(named)[1]]
    by_column = [
        table
        for table in catalog.tables.values()
        if any(_mentions(text, column.name) for column in table.columns)
    ]
    measured = [
        table
        for table in by_column
        if any(
            column.is_numeric and _words(column.name) and _mentions(text, column.name)
            for column in table.columns
        )
    ]
    if len(by_column) == 1 or len(measured) == 1:
        return (measured or by_column)[0]
    valued = [table for table in catalog.tables.values() if _has_mentioned_value(text, table)]
    if any(re.search(rf"\b{word}\b", text) for word in _MONEY_WORDS):
        money = [table for table in valued or catalog.tables.values() if _money_column(table) is not None]
        if not money and valued:
            # "revenue from the US": the value names customers, the money (and its date) is in orders, joined.
            money = [
                table
                for table in catalog.tables.values()
                if _money_column(table) is not None
                and any(catalog.joins_between(table.name, named.name) for named in valued)
            ]
        if money:
            return money[0]
    if len(valued) == 1:
        return valued[0]
    if len(catalog.tables) == 1:
        return next(iter(catalog.tables.values()))
    raise SqlDeclined("the question names none of the tables " + ", ".join(sorted(catalog.tables)))


def _named_table(word: str, catalog: Catalog) -> CatalogTable | None:
    return next((table for table in catalog.tables.values() if _position(word, table.name) == 0), None)


def _has_mentioned_value(text: str, table: CatalogTable) -> bool:
    return any(_names_value(text, value) for column in table.columns for value in column.text_values)


def _money_columns(table: CatalogTable) -> list[CatalogColumn]:
    return [
        c
        for c in table.columns
        if c.is_numeric and not _is_key(c) and any(p in c.name for p in _MONEY_COLUMNS)
    ]


def _money_column(table: CatalogTable) -> CatalogColumn | None:
    return next(iter(_money_columns(table)), None)


def _resolve_filters(text: str, catalog: Catalog, plan: _Plan) -> None:
    """Equality filters on categorical values the question mentions, preferring the main table's columns."""
    taken: set[str] = set()
    for table in _joinable(catalog, plan):
        for column in table.columns:
            if column.is_date:
                continue
            for value in sorted(column.text_values, key=lambda v: -len(str(v))):
                if _names_value(text, value):
                    key = str(value).lower()
                    if key in taken:
                        continue
                    taken.add(key)
                    _join(catalog, plan, table)
                    plan.filters.append(f"{table.name}.{column.name} = {_literal(value)}")
                    break


def _resolve_comparisons(text: str, catalog: Catalog, plan: _Plan) -> None:
    """`amount over 500`, `rating higher than 4`: a numeric column named just before a comparator and a number."""
    words = _COMPARATOR_WORDS
    pattern = r"(?<![\w<>=])(" + words + r")\s*\$?(\d+(?:\.\d+)?)"
    for match in re.finditer(pattern, text):
        before = text[max(0, match.start() - 40) : match.start()]
        after = text[match.end() : match.end() + 25]
        numeric = [
            (table, column)
            for table in _joinable(catalog, plan)
            for column in table.columns
            if column.is_numeric and _words(column.name) and not _is_key(column)
        ]
        # "seats over 20" names the column before; "more than 20 seats" right after the number.
        found = [
            (0, t, c)
            for t, c in numeric
            if _position(after, c.name) is not None and _position(after, c.name) < 3
        ]
        found = found or [
            (position, t, c)
            for t, c in numeric
            for position in [_position(before, c.name)]
            if position is not None
        ]
        # "a first response within 1 hour" names first_response_hours around the number.
        found = found or [(0, t, c) for t, c in numeric if _all_words_in(before + " " + after, c.name)]
        if not found:
            raise SqlDeclined(f"cannot tell which column {match.group(0)!r} compares")
        _, table, column = max(found, key=lambda item: item[0])
        _join(catalog, plan, table)
        plan.filters.append(f"{table.name}.{column.name} {_COMPARATORS[match.group(1)]} {match.group(2)}")
    if re.search(r"(?<![\w<>=])(" + words + r")(?!\w)", re.sub(pattern, " ", text)):
        raise SqlDeclined("the question compares with something other than a number")


def _check_all_tables_used(text: str, catalog: Catalog, plan: _Plan) -> None:
    """A table the question names but the plan cannot join would be silently ignored: decline instead."""
    used = {plan.table.name, *plan.joins}
    for table in catalog.tables.values():
        if table.name not in used and _mentions(text, table.name) and not _join(catalog, plan, table):
            raise SqlDeclined(f"the question involves {table.name!r}, which no declared join connects")
        if table.name in plan.joins and table.name not in used:
            # Joined only to check it can be: a table merely named needs no join in the query.
            del plan.joins[table.name]


def _resolve_measure(text: str, catalog: Catalog, plan: _Plan) -> None:
    if plan.aggregate == "count":
        return
    numeric = [
        (t, c)
        for t in _joinable(catalog, plan)
        for c in t.columns
        if c.is_numeric and _words(c.name) and not _is_key(c)
    ]
    named = [(t, c) for t, c in numeric if _mentions(text, c.name) or _all_words_in(text, c.name)]
    dated = [
        (t, c) for t in _joinable(catalog, plan) for c in t.columns if c.is_date and _mentions(text, c.name)
    ]
    if not named and plan.aggregate in {"min", "max"} and dated:
        named = dated[:1]
    if not named and plan.aggregate in {"min", "max"} and re.match(r"\s*when\b", text):
        first_date = _date_column(text, plan.table)
        if first_date is not None:
            named = [(plan.table, first_date)]
    if not named and plan.aggregate in {"min", "max"} and _SIZE.search(text) and not _COUNTING.search(text):
        # "the biggest order", "the 3 cheapest orders": a row's size is its money, when it has one money column.
        money = _money_columns(plan.table)
        named = [(plan.table, money[0])] if len(money) == 1 else []
    if not named and any(word in text for word in _MONEY_WORDS):
        named = [(t, c) for t, c in numeric if any(part in c.name for part in _MONEY_COLUMNS)]
    # Never a guess: the question must name the measured column (or say money and have one money column).
    candidates = [(t, c) for t, c in named if t.name == plan.table.name] or named
    if not candidates:
        raise SqlDeclined(f"the question names no numeric column to {plan.aggregate}")
    table, column = candidates[0]
    _join(catalog, plan, table)
    plan.measure = (table.name, column.name)


def _resolve_group(text: str, catalog: Catalog, plan: _Plan) -> None:
    """`per plan`, `by region`, `for each category`, `by month`: the column (or period) to group by."""
    match = _GROUPING.search(text)
    if not match:
        return
    for phrase in re.split(r"\band\b", match.group(1)):
        before = len(plan.groups)
        _group_by_phrase(phrase, catalog, plan)
        if len(plan.groups) == before:
            raise SqlDeclined(f"cannot tell which column {match.group(0).strip()!r} groups by")


def _group_by_phrase(phrase: str, catalog: Catalog, plan: _Plan) -> None:
    phrase = phrase.strip()
    words = phrase.split()
    for table in _joinable(catalog, plan):
        if len(words) > 1 and _position(words[0], table.name) == 0:
            column = next((c for c in table.columns if _position(" ".join(words[1:]), c.name) == 0), None)
            if column is not None and _join(catalog, plan, table):
                plan.groups.append(f"{table.name}.{column.name}")
                return
    for table in _joinable(catalog, plan):
        for column in table.columns:
            if _starts_with_column(words, column) and _join(catalog, plan, table):
                plan.groups.append(f"{table.name}.{column.name}")
                return
    period = _PERIOD.match(phrase)
    date_column = _date_column(phrase, plan.table)
    if period and date_column is not None:
        # As a date: date_trunc gives a timestamp with a time zone, "2025-03-01T00:00:00+00:00" for March.
        plan.groups.append(f"date_trunc('{period.group(1)}', {plan.table.name}.{date_column.name})::date")


def _starts_with_column(words: list[str], column: CatalogColumn) -> bool:
    """`plan`, `plans`, `city` (for city_name), `billing cycle`: the phrase begins by naming the column."""
    names = _words(column.name)
    if not names or not words:
        return False
    if _position(" ".join(words), column.name) == 0:
        return True
    return words[0] in {names[0], names[0] + "s", names[0] + "es"} or words[0].rstrip("s") == names[0]


def _top_column(text: str, plan: _Plan) -> bool:
    """`top 3 error codes ...`: the words after the number name a column (not a table) to rank groups of."""
    match = re.search(
        r"\b(?:top|which|best|first)\s+(?:\d+|" + "|".join(_NUMBER_WORDS) + r")\s+([a-z_ ]+)", text
    )
    if not match:
        return False
    words = match.group(1).split()
    column = next((c for c in plan.table.columns if not _is_key(c) and _starts_with_column(words, c)), None)
    if column is None or _position(" ".join(words[:2]), plan.table.name) == 0:
        return False
    plan.groups.append(f"{plan.table.name}.{column.name}")
    plan.top = _top_n(text)
    return True


def _fact_table(text: str, catalog: Catalog, entity: CatalogTable) -> CatalogTable:
    """The table whose rows measure the entity: one that names a measured column, holds money, or is named."""
    related = [entity] + [
        table
        for table in catalog.tables.values()
        if table.name != entity.name and catalog.joins_between(entity.name, table.name)
    ]
    for table in related:
        if any(c.is_numeric and not _is_key(c) and _mentions(text, c.name) for c in table.columns):
            return table
    if any(re.search(rf"\b{word}\b", text) for word in _MONEY_WORDS):
        for table in related:
            if _money_column(table) is not None:
                return table
    named = [table for table in related[1:] if _mentions(text, table.name)]
    return named[0] if named else entity


def _resolve_top(text: str, catalog: Catalog, plan: _Plan) -> None:
    """Order the entity by a sum of the measure (money, a named column) or by a count of the fact rows."""
    if plan.aggregate is None:
        counting = re.search(r"\b(most|fewest|number of|how many)\b", text) and not any(
            w in text for w in _MONEY_WORDS
        )
        plan.aggregate = "count" if counting else "sum"
    if plan.aggregate != "count":
        try:
            _resolve_measure(text, catalog, plan)
        except SqlDeclined:
            plan.aggregate = "count"
    if plan.aggregate == "count" and plan.table is plan.entity:
        raise SqlDeclined(f"cannot tell what to count per {plan.entity.name!r}")
    plan.order_desc = not re.search(r"\b(lowest|least|fewest|bottom|smallest|cheapest)\b", text)
