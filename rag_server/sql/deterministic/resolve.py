"""The offline SQL generator: common analytical questions to SQL by matching them against the catalog.

It handles count / sum / avg / min / max, optionally grouped ("per plan", "by region"), filtered by equality on
known column values ("urgent", "EU") and by date ranges ("in March 2025", "in Q2 2024", "last 30 days"),
top-N ("top 5 customers by amount"), and lists with filters, over one table or a catalog-declared join. What it
cannot express it declines (SqlDeclined) instead of guessing; its output is validated like any model's.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

from rag_server.errors import SqlDeclined
from rag_server.sql.catalog import Catalog, CatalogColumn, CatalogTable

AGGREGATES: list[tuple[str, tuple[str, ...]]] = [
    ("avg", ("average", "avg", "mean", "typical")),
    ("count", ("how many", "number of", "count of", "count the", "count ")),
    ("sum", ("total", "sum of", "sum ", "how much", "overall")),
    ("min", ("minimum", "lowest", "smallest", "least", "cheapest", "earliest", "min ")),
    ("max", ("maximum", "highest", "largest", "biggest", "most expensive", "latest", "max ")),
]
# Words that name a numeric measure without saying the column's name.
_MONEY_WORDS = {
    "revenue",
    "sales",
    "spent",
    "spend",
    "paid",
    "income",
    "money",
    "billed",
    "value",
    "worth",
    "cost",
}
_MONEY_COLUMNS = ("amount", "price", "total", "revenue", "value", "cost", "paid", "sale")
_MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ],
        start=1,
    )
    for name in names
}
# Asks the generator cannot express: it declines rather than answer a different question.
_UNSUPPORTED = (
    "ratio",
    "percentage",
    "percent",
    "proportion",
    "share of",
    "fraction",
    "rate of",
    " rate ",
    "median",
    "difference",
    "compared",
    " versus ",
    " vs ",
    " both ",
    " not ",
    " no ",
    "n't ",
    "non-",
    " non ",
    "without",
    "never",
    "except",
    "contain",
    "start with",
    "starts with",
    "starting with",
    "ending",
    " like ",
    "more than one",
    " same ",
    "weekend",
    "weekday",
    " age ",
    "today",
    "current",
    "snapshot",
    " or ",
    "each other",
    "per cent",
    "growth",
    "change",
    "trend",
    "cumulative",
    "running",
    "rank",
    "median",
    "distinct",
    "unique",
    "duplicate",
    "first time",
    " than the ",
    " than average",
    "return the",
    "order the",
    "sorted",
    "ordered by",
    "from the best",
    "from best",
    " after each",
)
_COMPARATORS = {
    "greater than": ">",
    "more than": ">",
    "higher than": ">",
    "above": ">",
    "over": ">",
    "exceeding": ">",
    "at least": ">=",
    "less than": "<",
    "lower than": "<",
    "below": "<",
    "under": "<",
    "at most": "<=",
    "fewer than": "<",
    "within": "<=",
    ">=": ">=",
    "<=": "<=",
    ">": ">",
    "<": "<",
}
_COMPARATOR_WORDS = "|".join(re.escape(word) for word in sorted(_COMPARATORS, key=len, reverse=True))
_QUARTER_WORDS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "1st": 1, "2nd": 2, "3rd": 3, "4th": 4}
_NUMBER_WORDS = {"three": 3, "five": 5, "ten": 10, "twenty": 20, "two": 2, "four": 4, "six": 6, "seven": 7}


@dataclass
class _Plan:
    """What the question asks, resolved against the catalog, before it is written as SQL."""

    table: CatalogTable
    aggregate: str | None = None
    measure: tuple[str, str] | None = None  # (table, column)
    groups: list[str] = field(default_factory=list)  # columns, or a date_trunc over one
    filters: list[str] = field(default_factory=list)
    joins: dict[str, str] = field(default_factory=dict)  # joined table -> ON condition
    order_desc: bool = True
    top: int | None = None
    entity: CatalogTable | None = None


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


def _check_supported(text: str, catalog: Catalog) -> None:
    # A known value ("duplicate_charge", "New York") is data, not an ask: look for unsupported asks without them.
    asks = _without_values(text, catalog)
    unsupported = next((phrase.strip() for phrase in _UNSUPPORTED if phrase in asks), None)
    if unsupported:
        raise SqlDeclined(
            f"the question asks for something the offline generator cannot express ({unsupported!r})"
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


def _segment_filters(segment: str, catalog: Catalog, plan: _Plan, today: dt.date) -> list[str]:
    """The filters one part of the question states (joins stay on the plan)."""
    kept = plan.filters
    plan.filters = []
    _resolve_filters(segment, catalog, plan)
    _resolve_dates(segment, catalog, plan, today)
    _resolve_comparisons(segment, catalog, plan)
    found, plan.filters = plan.filters, kept
    return found


def _normalize(question: str) -> str:
    # "cost us" is the pronoun, not the region "US" (written in capitals, or "the us").
    question = re.sub(r"(?<!\bthe )\bus\b", "we", question)
    text = re.sub(r"['’]s\b", "", question.lower())
    return " " + re.sub(r"\s+", " ", re.sub(r"[?,;!]", " ", text)).strip() + " "


def _aggregate(text: str) -> str | None:
    found = [(text.find(word), name) for name, words in AGGREGATES for word in words if word in text]
    if re.search(r"\b(total|overall) (count|number)\b", text) or (
        "per " in text and any(word in text for word in ("how many", "number of")) and "average" not in text
    ):
        return "count"
    if re.match(r"\s*when (did|was|were)\b", text):
        if re.search(r"\b(first|earliest|oldest)\b", text):
            return "min"
        if re.search(r"\b(last|latest|most recent|newest)\b", text):
            return "max"
    if not found and any(re.search(rf"\b{word}\b", text) for word in _MONEY_WORDS):
        return "sum"
    return min(found)[1] if found else None


def _top_n(text: str) -> int | None:
    match = re.search(
        r"\b(?:top|best|first|biggest|largest|highest)\s+(\d+|" + "|".join(_NUMBER_WORDS) + r")\b", text
    )
    match = match or re.search(
        r"\b(\d+|" + "|".join(_NUMBER_WORDS) + r")\s+(?:most|highest|largest|biggest|top|"
        r"least|fewest|lowest|smallest|cheapest)\b",
        text,
    )
    match = match or re.search(
        r"\bwhich (\d+|"
        + "|".join(_NUMBER_WORDS)
        + r") [a-z_ ]+? (?:the )?(?:most|highest|largest|biggest|best)\b",
        text,
    )
    if not match:
        return None
    value = match.group(1)
    return int(value) if value.isdigit() else _NUMBER_WORDS[value]


def _is_listing(text: str) -> bool:
    return bool(re.match(r"\s*(list|show|which|what are the|give me|find|display)\b", text))


def _words(name: str) -> list[str]:
    return [word for word in name.lower().split("_") if word and word != "id"]


def _position(text: str, name: str) -> int | None:
    """Where the text first names this table or column (plural, singular, spaces for underscores), if it does."""
    found = _naming(text, name)
    return min(found)[0] if found else None


def _naming(text: str, name: str) -> list[tuple[int, int]]:
    """(start, end) of the first place each form of the name appears."""
    phrase = " ".join(_words(name)) or name.lower()
    variants = {phrase, phrase.rstrip("s"), phrase + "s", phrase + "es", re.sub(r"ies$", "y", phrase)}
    return [
        match.span()
        for variant in variants
        if len(variant) > 1
        for match in [re.search(rf"\b{re.escape(variant)}\b", text)]
        if match
    ]


def _all_words_in(text: str, name: str) -> bool:
    """`first response time in hours` names first_response_hours: every word of the name appears."""
    words = _words(name)
    return len(words) > 1 and all(re.search(rf"\b{re.escape(word.rstrip('s'))}s?\b", text) for word in words)


def _mentions(text: str, name: str) -> bool:
    return _position(text, name) is not None


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


def _join(catalog: Catalog, plan: _Plan, other: CatalogTable) -> bool:
    """Join `other` to the main table through a declared join; False when there is none."""
    if other.name == plan.table.name or other.name in plan.joins:
        return True
    joins = catalog.joins_between(plan.table.name, other.name)
    if not joins:
        return False
    join = joins[0]
    plan.joins[other.name] = f"{join.left_table}.{join.left_column} = {join.right_table}.{join.right_column}"
    return True


def _joinable(catalog: Catalog, plan: _Plan) -> list[CatalogTable]:
    return [plan.table] + [
        t
        for t in catalog.tables.values()
        if t.name != plan.table.name and catalog.joins_between(plan.table.name, t.name)
    ]


def _value_pattern(form: str) -> str:
    # "duplicate charges" names duplicate_charge; short values ("us", "eu") only as written ("uses" is no "us").
    plural = "s?" if len(form) >= 4 else ""
    return rf"(?<![\w-]){re.escape(form)}{plural}(?![\w-])"


def _without_values(text: str, catalog: Catalog) -> str:
    for table in catalog.tables.values():
        for column in table.columns:
            for value in column.text_values:
                for form in _value_forms(str(value)):
                    if len(form) > 1 and form in text:
                        text = re.sub(_value_pattern(form), " ", text)
    return text


def _names_value(text: str, value: object) -> bool:
    """The text names the value as a whole word, in any of its forms (`duplicate charge` for duplicate_charge)."""
    return any(
        len(form) > 1 and form in text and re.search(_value_pattern(form), text)
        for form in _value_forms(str(value))
    )


def _value_forms(value: str) -> set[str]:
    lowered = value.lower()
    return {lowered, lowered.replace("_", " "), lowered.replace("-", " ")}


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


def _is_key(column: CatalogColumn) -> bool:
    return (
        column.name == "id"
        or column.name.endswith("_id")
        or (column.name.endswith("id") and len(column.name) <= 4)
    )


def _literal(value: object) -> str:
    return "'" + str(value).replace("'", "''") + "'"


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


_SIZE = re.compile(r"\b(biggest|largest|smallest|most expensive|least expensive|cheapest|priciest)\b")
_COUNTING = re.compile(r"\b(number of|how many|count)\b")
_SHARE = re.compile(r"\b(share|percentage|percent|proportion|fraction|ratio) of\b")
_WHICH_MOST = re.compile(
    r"\bwhich (\w+) (?:has|had|have|gets|got|sees|saw|does|did|spent|spends) the "
    r"(most|highest|largest|biggest|fewest|lowest|least|smallest)\b"
)
_ASCENDING = {"fewest", "lowest", "least", "smallest"}
# "How much does the Business plan cost per seat?": a price, which summing orders would not give.
_PRICE_ASK = re.compile(r"\bhow much (?:does|do|will|would|should)\b.*\bcost\b")
_GROUPING = re.compile(
    r"\b(?:per|by|for each|for every|each|broken down by|split by|grouped by)\s+([a-z_ ]+)"
)
_PERIOD = re.compile(r"^(month|year|quarter|week|day)s?\b")


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


def _date_column(text: str, table: CatalogTable) -> CatalogColumn | None:
    dates = [column for column in table.columns if column.is_date]
    return (_named_dates(text, table) or dates or [None])[0]


def _named_dates(text: str, table: CatalogTable) -> list[CatalogColumn]:
    """Date columns the question names by a word of their own ("signed up" for signup_date, not "date")."""
    return [
        column
        for column in table.columns
        if column.is_date
        and any(
            # "signed up" names signup_date, "created" created_at: a stem of four or five letters.
            re.search(rf"\b{re.escape(w[:4] if len(w) >= 6 else w[:5])}", text)
            for w in _words(column.name)
            if w not in {"date", "at", "ts", "time"}
        )
    ]


def _resolve_dates(text: str, catalog: Catalog, plan: _Plan, today: dt.date) -> None:
    span = _date_span(text, today)
    if span is None:
        return
    dated = plan.table
    if plan.measure is not None and not _named_dates(text, plan.table):
        # The rows measured are the ones dated, unless the question names the main table's date column.
        dated = catalog.tables[plan.measure[0]]
    column = _date_column(text, dated) or _date_column(text, plan.table)
    if column is None:
        for table in _joinable(catalog, plan):
            column = _date_column(text, table)
            if column is not None:
                _join(catalog, plan, table)
                break
    if column is None:
        raise SqlDeclined("the question has a date range but the tables have no date column")
    owner = next(t for t in _joinable(catalog, plan) if column in t.columns)
    start, end = span
    name = f"{owner.name}.{column.name}"
    if start is not None:
        plan.filters.append(f"{name} >= '{start.isoformat()}'")
    if end is not None:
        plan.filters.append(f"{name} < '{end.isoformat()}'")


_MONTH_DAY = r"(" + "|".join(_MONTHS) + r")\.? (\d{1,2})(?:st|nd|rd|th)?(?: (\d{4}))?"


def _spelled_dates(text: str) -> str:
    """`between July 1 and September 30 2025` -> ISO dates (a missing year is the next one given)."""
    found = list(re.finditer(rf"\b{_MONTH_DAY}\b", text))
    years = [match.group(3) for match in found]
    for index, match in reversed(list(enumerate(found))):
        year = next((y for y in years[index:] if y), None)
        if year is None:
            continue
        try:
            day = dt.date(int(year), _MONTHS[match.group(1)], int(match.group(2)))
        except ValueError:
            continue
        text = text[: match.start()] + day.isoformat() + text[match.end() :]
    return text


def _date_span(text: str, today: dt.date) -> tuple[dt.date | None, dt.date | None] | None:
    """[start, end) of the date range the text names, or None."""
    text = _spelled_dates(text)
    iso = re.findall(r"\b(\d{4}-\d{2}-\d{2})\b", text)
    if len(iso) >= 2 and "between" in text:
        return dt.date.fromisoformat(iso[0]), dt.date.fromisoformat(iso[1]) + dt.timedelta(days=1)
    if iso:
        day = dt.date.fromisoformat(iso[0])
        if re.search(rf"\b(after|since|from)\s+{iso[0]}", text):
            return day, None
        if re.search(rf"\bbefore\s+{iso[0]}", text):
            return None, day
        return day, day + dt.timedelta(days=1)
    quarter = re.search(r"\bq([1-4])\s*(?:of\s+)?(\d{4})\b", text) or re.search(
        r"\b(first|second|third|fourth|1st|2nd|3rd|4th) quarter (?:of )?(\d{4})\b", text
    )
    if quarter:
        number = int(quarter.group(1)) if quarter.group(1).isdigit() else _QUARTER_WORDS[quarter.group(1)]
        year = int(quarter.group(2))
        return dt.date(year, 3 * number - 2, 1), _add_months(dt.date(year, 3 * number - 2, 1), 3)
    month = re.search(r"\b(" + "|".join(_MONTHS) + r")\.?\s+(?:of\s+)?(\d{4})\b", text)
    if month:
        start = dt.date(int(month.group(2)), _MONTHS[month.group(1)], 1)
        return start, _add_months(start, 1)
    year = re.search(r"\b(?:in|during|for|of|year)\s+((?:19|20)\d{2})\b", text)
    if year:
        start = dt.date(int(year.group(1)), 1, 1)
        if re.search(rf"\b(after|since)\s+{year.group(1)}", text):
            return dt.date(start.year + 1, 1, 1), None
        return start, dt.date(start.year + 1, 1, 1)
    relative = re.search(r"\b(?:last|past|previous)\s+(\d+)\s+(day|week|month|year)s?\b", text)
    if relative:
        count, unit = int(relative.group(1)), relative.group(2)
        if unit == "month":
            start = _add_months(today, -count)
            return start.replace(day=min(today.day, 28)), None
        days = {"day": 1, "week": 7, "year": 365}[unit] * count
        return today - dt.timedelta(days=days), None
    if re.search(r"\bthis year\b", text):
        return dt.date(today.year, 1, 1), None
    if re.search(r"\blast year\b", text):
        return dt.date(today.year - 1, 1, 1), dt.date(today.year, 1, 1)
    if re.search(r"\blast month\b", text):
        first = today.replace(day=1)
        return _add_months(first, -1), first
    if re.search(r"\blast quarter\b", text):
        first = dt.date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
        return _add_months(first, -3), first
    return None


def _add_months(day: dt.date, months: int) -> dt.date:
    index = day.year * 12 + day.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1)


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
