"""The extractive answerer: the best sentence with its citation, a second one only from the same passage."""

from __future__ import annotations

from rag_server.answer.abstention import Assessment
from rag_server.answer.answerers import ExtractiveAnswerer
from rag_server.answer.evidence import Evidence
from rag_server.answer.signals import Scored, Sentence
from rag_server.trace import RequestTrace


def _evidence(number: int, text: str) -> Evidence:
    return Evidence(number, "chunk", f"d{number}#0", f"d{number}", None, text, 1.0 / number, "hybrid")


def _scored(evidence: Evidence, sentence: str, score: float) -> Scored:
    start = evidence.text.index(sentence)
    return Scored(Sentence(evidence, start, start + len(sentence), evidence.number - 1), 0.5, 0.5, score)


def _answer(ranked: list[Scored]) -> str:
    assessment = Assessment(False, 0.9, 0.5, None, {}, ranked)
    return "".join(ExtractiveAnswerer().deltas("q?", [], assessment, RequestTrace()))


def test_a_close_sentence_of_another_passage_is_not_quoted() -> None:
    first = _evidence(1, "The Normans came from Normandy. They spoke French.")
    second = _evidence(2, "Rollo was a Viking leader.")
    ranked = [
        _scored(first, "The Normans came from Normandy.", 1.0),
        _scored(second, "Rollo was a Viking leader.", 0.99),
        _scored(first, "They spoke French.", 0.5),
    ]
    # Only passage [1] is cited: the runner-up of passage [2] would cite a passage that may not answer.
    assert _answer(ranked) == "The Normans came from Normandy [1]."


def test_a_close_sentence_of_the_same_passage_is_quoted_in_text_order() -> None:
    first = _evidence(1, "The Normans came from Normandy. They spoke French in 1066.")
    other = _evidence(2, "Rollo was a Viking leader.")
    ranked = [
        _scored(first, "They spoke French in 1066.", 1.0),
        _scored(other, "Rollo was a Viking leader.", 0.95),
        _scored(first, "The Normans came from Normandy.", 0.8),
    ]
    assert _answer(ranked) == "The Normans came from Normandy [1]. They spoke French in 1066 [1]."
