"""The semantic cache's guard: two questions may share an answer only if their specifics are the same.

Embeddings place "refunded within 14 days" next to "refunded within 30 days", "ERR-4012" next to "ERR-4013"
and "Are renewals refundable?" next to "Are renewals not refundable?": a similarity threshold alone cannot
tell them apart. So before a cached answer is served for a different wording, each question is reduced to
its `Specifics` (numbers, dates, identifiers and names, quoted strings, negation cues, and the side taken
on a few axes of opposite words) and the two must agree. A refusal only costs a miss; a wrong hit serves a
wrong answer.

>>> same_specifics("How long can deleted dashboards be restored?", "For how long can I restore a deleted dashboard")
True
>>> same_specifics("Refunds within 14 days?", "Refunds within fourteen days?")
True
>>> differences(specifics("What does ERR-4013 mean?"), specifics("What does ERR-4012 mean?"))
['numbers', 'identifiers']
>>> differences(specifics("Are renewal charges refundable?"), specifics("Aren't renewal charges refundable?"))
['negation']
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

# A quoted string, in straight, curly or back quotes: compared verbatim (case and spacing folded).
_QUOTED = re.compile(r"\"([^\"]+)\"|“([^”]+)”|`([^`]+)`|(?<!\w)'([^']+)'(?!\w)")
# A token: letters, digits and the joiners inside identifiers (ERR-4013, v2.3.1, lum_live_, /v2/x, 1,000, don't).
_TOKEN = re.compile(r"[$€£]?\w[\w\-./:@,{}'’]*[\w}_%]|[$€£]?\w")
_VERSION = re.compile(r"^[vV](\d+(?:\.\d+)+)$")
_NUMBER = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)*")
# A number with a unit or ordinal stuck to it is a number, not an identifier: 30-day, 5th, 10x, 24h, $12.
_NUMBER_WITH_UNIT = re.compile(
    r"[$€£]?\d+(?:,\d{3})*(?:\.\d+)?(?:%|st|nd|rd|th|s|k|m|h|d|x|am|pm|-(?:day|week|month|year|hour|minute"
    r"|second|seat|user|gb|mb|tb)s?)?"
)

# fmt: off
_UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "dozen": 12,
}
_TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 10**6, "billion": 10**9}
# "one" is a pronoun after these ("a fresh one", "no one", "which one") and before "of"/"another".
_ONE_PRONOUN_BEFORE = {
    "a", "an", "the", "no", "any", "every", "each", "which", "this", "that", "new", "fresh", "another", "some",
    "other", "same", "right", "wrong", "old", "current",
}
_ONE_PRONOUN_AFTER = {"of", "another", "anymore"}

_MONTHS = {
    "jan": "january", "january": "january", "feb": "february", "february": "february", "mar": "march",
    "march": "march", "apr": "april", "april": "april", "may": "may", "jun": "june", "june": "june",
    "jul": "july", "july": "july", "aug": "august", "august": "august", "sep": "september",
    "sept": "september", "september": "september", "oct": "october", "october": "october",
    "nov": "november", "november": "november", "dec": "december", "december": "december",
}
# Month names that are ordinary words too ("may", "mar"): a month only next to a number ("may 3", "3 mar").
_AMBIGUOUS_MONTHS = {"may", "mar", "jan", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "apr", "feb"}
_DAYS = {
    "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "today", "yesterday",
    "tomorrow", "tonight", "weekend", "weekday",
}
_RELATIVE = {"last", "next", "this", "previous", "past", "coming", "current", "prior"}
_PERIODS = {"day", "week", "month", "year", "quarter", "weekend", "night", "morning", "hour", "decade"}

# Negation cues by kind: the count of each kind must be the same in both questions.
_NEGATION = {
    "not": "not", "no": "not", "never": "not", "none": "not", "nothing": "not", "nobody": "not",
    "nowhere": "not", "neither": "not", "nor": "not", "cannot": "not", "cant": "not", "dont": "not",
    "doesnt": "not", "didnt": "not", "isnt": "not", "arent": "not", "wasnt": "not", "werent": "not",
    "wont": "not", "wouldnt": "not", "shouldnt": "not", "couldnt": "not", "hasnt": "not", "havent": "not",
    "hadnt": "not", "mustnt": "not", "neednt": "not", "aint": "not", "unable": "not", "impossible": "not",
    "without": "without", "lacking": "without",
    "except": "except", "excluding": "except", "besides": "except", "unless": "unless",
}
_NEGATION_PHRASES = {("other", "than"), ("apart", "from"), ("aside", "from"), ("instead", "of")}

# Words with an opposite that an embedding barely separates, as (axis, side); synonyms share a side.
_SIDES: dict[tuple[str, str], tuple[str, ...]] = {
    ("extent", "max"): ("max", "maximum", "most", "highest", "largest", "biggest", "upper", "longest",
                        "latest", "newest"),
    ("extent", "min"): ("min", "minimum", "least", "lowest", "smallest", "fewest", "shortest", "earliest",
                        "oldest"),
    ("compare", "more"): ("more", "greater", "higher", "larger", "above", "exceed", "exceeds", "longer"),
    ("compare", "less"): ("less", "fewer", "lower", "smaller", "below", "shorter"),
    ("order", "before"): ("before", "prior", "earlier"),
    ("order", "after"): ("after", "later"),
    ("cycle", "month"): ("monthly", "month-to-month"),
    ("cycle", "year"): ("annual", "annually", "yearly"),
    ("switch", "on"): ("enable", "enabled", "enabling", "activate", "activated"),
    ("switch", "off"): ("disable", "disabled", "disabling", "deactivate", "deactivated"),
    ("plan", "up"): ("upgrade", "upgraded", "upgrading"),
    ("plan", "down"): ("downgrade", "downgraded", "downgrading"),
    ("flow", "in"): ("import", "imported", "importing", "upload", "uploaded", "uploading"),
    ("flow", "out"): ("export", "exported", "exporting", "download", "downloaded", "downloading"),
    ("change", "add"): ("add", "added", "adding", "create", "created", "creating"),
    ("change", "remove"): ("remove", "removed", "removing", "delete", "deleted", "deleting"),
    ("outcome", "ok"): ("succeed", "succeeded", "success", "successful", "successfully"),
    ("outcome", "fail"): ("fail", "failed", "fails", "failing", "failure"),
    ("scope", "in"): ("include", "included", "includes", "including"),
    ("scope", "out"): ("exclude", "excluded", "excludes"),
    ("price", "free"): ("free", "gratis", "unpaid"),
    ("price", "paid"): ("paid", "paying"),
    ("visibility", "public"): ("public",),
    ("visibility", "private"): ("private",),
}
# fmt: on
_OPPOSITES = {word: side for side, words in _SIDES.items() for word in words}


@dataclass(frozen=True)
class Specifics:
    """What must not differ between a question and the one whose answer it would be served."""

    numbers: tuple[str, ...]
    dates: tuple[str, ...]
    # Codes found in the question (lower case), and all its tokens, to look the other question's codes up in.
    identifiers: frozenset[str]
    tokens: frozenset[str]
    quoted: frozenset[str]
    negation: tuple[tuple[str, int], ...]
    sides: frozenset[tuple[str, str]]


def same_specifics(first: str, second: str) -> bool:
    """Whether two questions agree on numbers, dates, identifiers, quotes, negation and opposite words."""
    return not differences(specifics(first), specifics(second))


def differences(first: Specifics, second: Specifics) -> list[str]:
    """What tells two questions apart, e.g. ["numbers", "negation"]; empty when nothing does.

    Numbers and dates are compared as multisets, negation cues by kind and count. A code of either question
    must be a token of both (so "saml" matches "SAML"). Opposite words conflict only when both questions take
    a side on the same axis ("upgrade" against "downgrade"; "upgrade" against "move up" is left to the
    similarity threshold).
    """
    found = []
    if first.numbers != second.numbers:
        found.append("numbers")
    if first.dates != second.dates:
        found.append("dates")
    if not (first.identifiers | second.identifiers) <= (first.tokens & second.tokens):
        found.append("identifiers")
    if first.quoted != second.quoted:
        found.append("quoted")
    if first.negation != second.negation:
        found.append("negation")
    if any(
        {s for a, s in first.sides if a == axis} != {s for a, s in second.sides if a == axis}
        for axis in {a for a, _ in first.sides} & {a for a, _ in second.sides}
    ):
        found.append("opposites")
    return found


def specifics(question: str) -> Specifics:
    """The specifics of one question (numbers as values: "fourteen", "14" and "14-day" are the same)."""
    quoted = frozenset(
        " ".join(next(group for group in match.groups() if group).lower().split())
        for match in _QUOTED.finditer(question)
    )
    # A version is the same with or without its "v" (v2.3.1, 2.3.1).
    found = list(_TOKEN.finditer(question))
    raw = [_VERSION.sub(r"\1", match.group()) for match in found]
    words = [_fold(token) for token in raw]
    numbers: list[str] = []
    identifiers: set[str] = set()
    for match, token in zip(found, raw, strict=True):
        if not any(char.isdigit() for char in token):
            if _is_code(token) or _is_name(token, question[: match.start()]):
                identifiers.add(token.lower())
            continue
        if not _NUMBER_WITH_UNIT.fullmatch(token.lower()):
            identifiers.add(token.lower())
        numbers.extend(_value(number) for number in _NUMBER.findall(token))
    numbers.extend(_number_words(words))
    return Specifics(
        numbers=tuple(sorted(numbers)),
        dates=tuple(sorted(_dates(words))),
        identifiers=frozenset(identifiers),
        tokens=frozenset(token.lower() for token in raw),
        quoted=quoted,
        negation=tuple(sorted(_negations(words).items())),
        sides=frozenset(_OPPOSITES[word] for word in words if word in _OPPOSITES),
    )


def _fold(token: str) -> str:
    """Lower case, apostrophes dropped (don't -> dont)."""
    return token.lower().replace("'", "").replace("’", "")


def _is_code(token: str) -> bool:
    """An identifier without digits: lum_live_, X-Lumen-Signature, /sources, api.lumen.io, SAML, CSV."""
    if any(char in token for char in "_/@{") or "." in token:
        return True
    letters = [char for char in token if char.isalpha()]
    if len(letters) >= 2 and all(char.isupper() for char in letters):  # an acronym; "I" and "A" are not
        return True
    parts = token.split("-")
    return len(parts) > 1 and sum(part[:1].isupper() for part in parts) >= 2  # a header: Retry-After


def _is_name(token: str, before: str) -> bool:
    """A capitalized word inside a sentence: a name (the Business plan, Snowflake, Owner), whose swap for
    another (Enterprise, BigQuery) an embedding barely notices. "I" and a sentence's first word are not."""
    previous = before.rstrip()
    starts_sentence = not previous or previous[-1] in ".?!:;\"'(“‘"
    ordinary = token == "I" or token.startswith("I'") or token.lower() in _MONTHS or token.lower() in _DAYS
    return token[:1].isupper() and not starts_sentence and not ordinary


def _value(number: str) -> str:
    """A number's canonical spelling: thousands separators dropped, leading and trailing zeros too."""
    plain = number.replace(",", "")
    if plain.count(".") == 1:
        whole, fraction = plain.split(".")
        fraction = fraction.rstrip("0")
        return f"{int(whole)}.{fraction}" if fraction else str(int(whole))
    return plain if "." in plain else str(int(plain))  # a version (2.3.1) stays as written


def _number_words(words: list[str]) -> list[str]:
    """The values of spelled-out numbers: "thirty five" -> 35, "two hundred" -> 200, "a dozen" -> 12."""
    found: list[str] = []
    total, current, inside = 0, 0, False
    for index, word in enumerate([*words, ""]):
        parts = word.split("-") if word.count("-") == 1 else [word]  # twenty-five
        if word and all(part in _UNITS or part in _TENS or part in _SCALES for part in parts):
            if word == "one" and _pronoun_one(words, index):
                continue
            for part in parts:
                if part in _SCALES:
                    current = (current or 1) * _SCALES[part]
                    if _SCALES[part] >= 1000:
                        total, current = total + current, 0
                else:
                    current += _UNITS.get(part, 0) + _TENS.get(part, 0)
            inside = True
        elif inside:
            found.append(str(total + current))
            total, current, inside = 0, 0, False
    return found


def _pronoun_one(words: list[str], index: int) -> bool:
    before = words[index - 1] if index else ""
    after = words[index + 1] if index + 1 < len(words) else ""
    return before in _ONE_PRONOUN_BEFORE or after in _ONE_PRONOUN_AFTER


def _dates(words: list[str]) -> list[str]:
    """Month and day names, and relative dates ("last month", "this year") as modifier:period."""
    found: list[str] = []
    for index, word in enumerate(words):
        before = words[index - 1] if index else ""
        after = words[index + 1] if index + 1 < len(words) else ""
        if word in _MONTHS and (
            word not in _AMBIGUOUS_MONTHS or _NUMBER.fullmatch(before) or _NUMBER.fullmatch(after)
        ):
            found.append(_MONTHS[word])
        elif word.removesuffix("s") in _DAYS:
            found.append(word.removesuffix("s"))
        elif word in _RELATIVE and after.removesuffix("s") in _PERIODS:
            found.append(f"{word}:{after.removesuffix('s')}")
    return found


def _negations(words: list[str]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for index, word in enumerate(words):
        if word in _NEGATION:
            counts[_NEGATION[word]] += 1
        elif word.startswith("non-") or (
            word.startswith("non") and word[3:] in {"refundable", "transferable"}
        ):
            counts["not"] += 1
        elif index + 1 < len(words) and (word, words[index + 1]) in _NEGATION_PHRASES:
            counts["except"] += 1
    return counts
