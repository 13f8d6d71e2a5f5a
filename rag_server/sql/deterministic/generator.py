"""`generate`: a question to SQL over a catalog, or SqlDeclined; `draft` keeps it with the catalog for reuse."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from rag_server.errors import SqlDeclined
from rag_server.sql.catalog import Catalog
from rag_server.sql.deterministic.dates import _resolve_dates
from rag_server.sql.deterministic.plan import _join, _Plan
from rag_server.sql.deterministic.resolve import (
    _check_all_tables_used,
    _check_supported,
    _counted_rows,
    _fact_table,
    _group_by_phrase,
    _main_table,
    _named_table,
    _resolve_comparisons,
    _resolve_filters,
    _resolve_group,
    _resolve_measure,
    _resolve_top,
    _top_column,
)
from rag_server.sql.deterministic.words import (
    _ASCENDING,
    _MONEY_WORDS,
    _PRICE_ASK,
    _SHARE,
    _WHICH_MOST,
    _aggregate,
    _is_listing,
    _normalize,
    _top_n,
)
from rag_server.sql.deterministic.writer import _having, _share, _write


@dataclass(frozen=True)
class Draft:
    """The generator's SQL for a question and the catalog it was written against: the router writes it to
    decide (is the question expressible?) and the sql route runs it instead of writing it again."""

    question: str
    sql: str
    catalog: Catalog


def draft(question: str, catalog: Catalog | None) -> Draft | None:
    """The question's SQL over the catalog, or None when the generator declines (or there are no tables)."""
    if catalog is None or not catalog.tables:
        return None
    try:
        return Draft(question, generate(question, catalog), catalog)
    except SqlDeclined:
        return None


def generate(question: str, catalog: Catalog, today: dt.date | None = None) -> str:
    """SQL for the question over the catalog, or SqlDeclined saying what was missing."""
    if not catalog.tables:
        raise SqlDeclined(f"domain {catalog.domain!r} has no tables")
    text = _normalize(question)
    today = today or dt.date.today()
    share = _SHARE.search(text)
    _check_supported(text[: share.start()] + " " + text[share.end() :] if share else text, catalog)
    if share is not None:
        return _share(text, share, catalog, today)
    if _PRICE_ASK.search(text):
        raise SqlDeclined("the question asks what something costs (a price), not for a sum of records")
    aggregate = _aggregate(text)
    top = _top_n(text)
    which = _WHICH_MOST.search(text)
    listing = _is_listing(text)
    if aggregate is None and top is None and not listing:
        raise SqlDeclined("no count, sum, average, minimum, maximum, top-N or list request found")
    table = _main_table(text, catalog)
    counted = _counted_rows(text, catalog, table)
    if counted is not None:
        return _having(text, counted, catalog, table, today)
    ranked = _named_table(which.group(1), catalog) if which is not None and top is None else None
    if ranked is not None:
        # "which customer has the most orders": the top entity, not a group of its own key column. "Spent the
        # least" orders the entities by a sum, it is no minimum ("the biggest order" is a maximum).
        if which.group(2) in {"most", "fewest", "least"}:
            aggregate = _aggregate(text.replace(which.group(0), " "))
        table, top, which = ranked, 1, None
    plan = _Plan(table, aggregate=aggregate, top=top)
    if which is not None and top is None:
        # "which street has the most restaurants": the group with the largest measure.
        _group_by_phrase(which.group(1), catalog, plan)
        if not plan.groups:
            raise SqlDeclined(f"{which.group(1)!r} is not a column the question's tables can group by")
        plan.top, plan.order_desc = 1, which.group(2) not in _ASCENDING
        plan.aggregate = _aggregate(text.replace(which.group(0), " ")) or (
            "max" if "-rated" in text else "count"
        )
        top = None
    if top is not None and _top_column(text, plan):
        # "top 3 error codes by number of tickets": the largest groups of a column.
        plan.order_desc = not re.search(r"\b(lowest|least|fewest|bottom|smallest|cheapest)\b", text)
        plan.aggregate = aggregate or ("sum" if any(w in text for w in _MONEY_WORDS) else "count")
        top = None
    if top is not None:
        # "top 5 customers by revenue": rank the named entity by a measure of the table that holds it.
        plan.entity = table
        plan.table = _fact_table(text, catalog, table)
        _join(catalog, plan, table)
    measured = bool(plan.groups) or (top is None and aggregate is not None)
    if measured:
        # Before the dates: "revenue from EU customers in March" dates the orders measured, not the customers.
        _resolve_measure(text, catalog, plan)
    _resolve_filters(text, catalog, plan)
    _resolve_dates(text, catalog, plan, today)
    _resolve_comparisons(text, catalog, plan)
    _check_all_tables_used(text, catalog, plan)
    if top is not None:  # never with groups: those paths set top to None
        _resolve_top(text, catalog, plan)
    elif measured and not plan.groups:
        _resolve_group(text, catalog, plan)
    elif not measured and not plan.filters:
        raise SqlDeclined(
            "found nothing the offline generator can express: no count, sum, average, minimum or maximum, "
            "and no filter from the catalog's values or dates to list rows by"
        )
    return _write(plan)
