"""The answerers: extractive (the best supporting sentence, quoted with its citation; no model, offline)
and generative (the configured chat model, streamed). Both yield the answer as text deltas."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from rag_server.answer import prompt
from rag_server.answer.abstention import Assessment
from rag_server.answer.evidence import Evidence
from rag_server.llm import ChatModel, ChatStream
from rag_server.trace import RequestTrace


class Answerer(Protocol):
    name: str

    def deltas(
        self, question: str, evidence: Sequence[Evidence], assessment: Assessment, trace: RequestTrace
    ) -> Iterator[str]: ...


class ExtractiveAnswerer:
    """Quotes the sentence that best covers the question, and a second sentence of the same passage when it
    scores nearly as well: a sentence of another passage would cite a passage that may not hold the answer
    (on the SQuAD 2.0 calibration questions that cost 6 points of citation accuracy for 1 of containment)."""

    name = "extractive"

    def __init__(self, second_within: float = 0.7) -> None:
        self.second_within = second_within

    def deltas(
        self, question: str, evidence: Sequence[Evidence], assessment: Assessment, trace: RequestTrace
    ) -> Iterator[str]:
        ranked = assessment.ranked
        if not ranked:
            return
        best = ranked[0]
        if best.sentence.evidence.kind == "table":
            yield _rows_sentence(best.sentence.evidence)
            return
        chosen = [best]
        runner_up = next(
            (s for s in ranked[1:] if s.sentence.evidence.number == best.sentence.evidence.number), None
        )
        if runner_up is not None and runner_up.score >= self.second_within * best.score:
            chosen.append(runner_up)
        # In the order they appear in the evidence, so two sentences of one passage read naturally.
        chosen.sort(key=lambda s: (s.sentence.evidence.number, s.sentence.start))
        yield " ".join(_cited(s.sentence.text, s.sentence.evidence.number) for s in chosen)


class GenerativeAnswerer:
    """The configured chat model writes the answer from the prompt of `answer.prompt`, streamed."""

    name = "llm"

    def __init__(self, model: ChatModel, max_tokens: int) -> None:
        self.model = model
        self.max_tokens = max_tokens

    def deltas(
        self, question: str, evidence: Sequence[Evidence], assessment: Assessment, trace: RequestTrace
    ) -> Iterator[str]:
        stream: ChatStream = self.model.stream(
            "answer", prompt.messages(question, evidence), self.max_tokens, prompt.STOP
        )
        try:
            yield from stream
        finally:
            if stream.call is not None:
                trace.record(stream.call)


def _cited(text: str, number: int) -> str:
    """A quoted sentence with its citation before the full stop: "... within 30 days [1]." """
    text = " ".join(text.split())
    end = text[-1] if text.endswith(("!", "?")) else "."
    return f"{text.rstrip('.!?,;: ')} [{number}]{end}"


def _rows_sentence(table: Evidence) -> str:
    """A query result stated in words: one value, a few rows, or a count of rows with the first ones."""
    columns, rows = table.columns, table.rows
    cite = f"[{table.number}]"
    if len(rows) == 1 and len(columns) == 1:
        return f"{_label(columns[0])}: {rows[0][0]} {cite}."
    shown = [", ".join(f"{_label(c)} {v}" for c, v in zip(columns, row, strict=False)) for row in rows[:10]]
    more = f" (and {len(rows) - 10} more rows)" if len(rows) > 10 else ""
    noun = "row" if len(rows) == 1 else "rows"
    return f"The query returned {len(rows)} {noun}: " + "; ".join(shown) + f"{more} {cite}."


def _label(column: str) -> str:
    return column.replace("_", " ")
