"""Citations: the `[n]` markers an answer carries, mapped back to evidence and checked for support.

The answerer writes `[1]`, `[2, 3]` or `[2][3]`. Numbers that map to no evidence are dropped from the text
and counted. While streaming, `MarkerFilter` holds back a marker until it is complete, so a client never
sees half of one (nor one that is later dropped).

>>> filtered = MarkerFilter(valid={1, 2})
>>> "".join(filtered.feed(d) for d in ["Paris [", "1] and [9", "] ok [2,", " 7]."]) + filtered.flush()
'Paris [1] and  ok [2].'
>>> filtered.dropped
2
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rag_server.answer.evidence import Evidence

MARKER = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")
# A tail that may still become a marker: "[", "[1", "[1,", "[1, 2".
_PARTIAL = re.compile(r"\[(\d{1,3}(\s*,\s*\d{0,3})*)?\s*$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_LEADING_MARKER = re.compile(r"(\[\d{1,3}(?:\s*,\s*\d{1,3})*\])\s*")
SNIPPET_CHARS = 240


@dataclass(frozen=True)
class Citation:
    """One evidence cited by the answer: where, which part of the answer it supports, and whether it does."""

    number: int
    ref: str
    kind: str
    document_id: str | None
    title: str | None
    sql: str | None
    # The sentence of the answer that cites it, as [start, end) character offsets.
    span: tuple[int, int]
    snippet: str
    supported: bool
    support: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "ref": self.ref,
            "kind": self.kind,
            "document_id": self.document_id,
            "title": self.title,
            "sql": self.sql,
            "span": list(self.span),
            "snippet": self.snippet,
            "supported": self.supported,
            "support": round(self.support, 4),
        }


def clean_markers(text: str, valid: set[int]) -> tuple[str, int]:
    """The text with invalid citation numbers removed (a marker left empty goes entirely); and how many."""
    dropped = 0

    def keep(match: re.Match[str]) -> str:
        nonlocal dropped
        numbers = [int(n) for n in match.group(1).split(",")]
        kept = [n for n in dict.fromkeys(numbers) if n in valid]
        dropped += len(numbers) - len(kept)
        return f"[{', '.join(map(str, kept))}]" if kept else ""

    return MARKER.sub(keep, text), dropped


class MarkerFilter:
    """Streams text through `clean_markers`, holding back a possibly partial marker at the end of a delta."""

    def __init__(self, valid: set[int]) -> None:
        self.valid = valid
        self.dropped = 0
        self._pending = ""

    def feed(self, delta: str) -> str:
        text = self._pending + delta
        cut = _partial_start(text)
        ready, self._pending = text[:cut], text[cut:]
        return self._clean(ready)

    def flush(self) -> str:
        ready, self._pending = self._pending, ""
        return self._clean(ready)

    def _clean(self, text: str) -> str:
        cleaned, dropped = clean_markers(text, self.valid)
        self.dropped += dropped
        return cleaned


def _partial_start(text: str) -> int:
    """Where a trailing partial marker starts (len(text) when there is none)."""
    start = text.rfind("[")
    if start == -1 or len(text) - start > 24:
        return len(text)
    return start if _PARTIAL.fullmatch(text[start:]) else len(text)


def cite(
    answer: str,
    evidence: Sequence[Evidence],
    support: Callable[[str, Evidence], float],
    threshold: float,
) -> list[Citation]:
    """Every (sentence, cited evidence) pair of a cleaned answer, checked: `support` >= `threshold`."""
    by_number = {item.number: item for item in evidence}
    citations: list[Citation] = []
    for start, end in sentence_spans(answer):
        sentence = answer[start:end]
        claim = MARKER.sub("", sentence).strip()
        for match in MARKER.finditer(sentence):
            for number in dict.fromkeys(int(n) for n in match.group(1).split(",")):
                item = by_number.get(number)
                if item is None:
                    continue
                score = support(claim, item) if claim else 0.0
                citations.append(
                    Citation(
                        number,
                        item.ref,
                        item.kind,
                        item.document_id,
                        item.title,
                        item.sql,
                        (start, end),
                        snippet(item.text, claim),
                        score >= threshold,
                        score,
                    )
                )
    return citations


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """[start, end) of each sentence; markers right after a full stop belong to the sentence before it."""
    spans: list[tuple[int, int]] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        if match.start() < start:
            continue
        end, next_start = match.start(), match.end()
        # "... in 1911. [2] Then": "[2]" stays with the first sentence.
        while marker := _LEADING_MARKER.match(text, next_start):
            end, next_start = marker.start(1) + len(marker.group(1)), marker.end()
        spans.append((start, end))
        start = next_start
    if start < len(text.rstrip()):
        spans.append((start, len(text.rstrip())))
    return [(s, e) for s, e in spans if e > s]


def snippet(text: str, claim: str) -> str:
    """The part of an evidence text that best matches the claim, at most SNIPPET_CHARS long."""
    if len(text) <= SNIPPET_CHARS:
        return text
    words = set(re.findall(r"\w+", claim.lower()))
    best, best_hits = 0, -1
    for start in range(0, len(text) - SNIPPET_CHARS + 1, 40):
        hits = len(words & set(re.findall(r"\w+", text[start : start + SNIPPET_CHARS].lower())))
        if hits > best_hits:
            best, best_hits = start, hits
    return ("…" if best else "") + text[best : best + SNIPPET_CHARS].strip() + "…"
