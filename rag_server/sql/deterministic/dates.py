"""Date ranges a question names ("in March 2025", "Q2 2024", "last 30 days") as filters on a date column."""

from __future__ import annotations

import datetime as dt
import re

from rag_server.errors import SqlDeclined
from rag_server.sql.catalog import Catalog, CatalogColumn, CatalogTable
from rag_server.sql.deterministic.plan import _join, _joinable, _Plan
from rag_server.sql.deterministic.words import _MONTHS, _QUARTER_WORDS, _words


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
