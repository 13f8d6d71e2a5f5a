"""Text a request may carry to the database: no NUL, no lone surrogate, JSON not nested without end.

Shared by every request model (HTTP and CLI), so that such input is a 422 with a reason and never reaches
Postgres (which refuses NUL in text) or an encoder (which refuses lone surrogates).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, JsonValue


def clean_text(value: str) -> str:
    """Refuse text Postgres cannot store or UTF-8 cannot encode: NUL and lone surrogates."""
    if "\x00" in value:
        raise ValueError("must not contain a NUL character (\\u0000)")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (a lone surrogate such as \\ud800 is not)") from None
    return value


# A string that can reach the database: every text field of a request is one.
CleanStr = Annotated[str, AfterValidator(clean_text)]


# Metadata filters are matched with jsonb `@>`: deeper objects are no one's metadata.
_MAX_FILTER_DEPTH = 8


def clean_json(value: JsonValue, depth: int = 0) -> None:
    if depth > _MAX_FILTER_DEPTH:
        raise ValueError(f"must not nest deeper than {_MAX_FILTER_DEPTH} levels")
    if isinstance(value, str):
        clean_text(value)
    elif isinstance(value, list):
        for item in value:
            clean_json(item, depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            clean_text(key)
            clean_json(item, depth + 1)


def _clean_filters(filters: dict[str, JsonValue]) -> dict[str, JsonValue]:
    clean_json(filters)
    return filters


# Document metadata filters of a request, every key and value storable.
Filters = Annotated[dict[str, JsonValue], AfterValidator(_clean_filters)]
