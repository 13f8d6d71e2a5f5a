"""The generator's vocabulary and text matching: aggregate and money words, months, comparators, asks it
declines, and how a question names a table, a column or a value."""

from __future__ import annotations

import re

from rag_server.sql.catalog import Catalog, CatalogColumn

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


def _is_key(column: CatalogColumn) -> bool:
    return (
        column.name == "id"
        or column.name.endswith("_id")
        or (column.name.endswith("id") and len(column.name) <= 4)
    )


def _literal(value: object) -> str:
    return "'" + str(value).replace("'", "''") + "'"
