"""The answering prompt, laid out for provider prompt caching.

Static instructions and a worked example come first and are byte for byte the same for every question
(providers cache a prompt's longest repeated prefix); the numbered evidence and the question come last.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rag_server.answer.abstention import NOT_IN_CONTEXT
from rag_server.answer.evidence import Evidence

INSTRUCTIONS = f"""You answer questions from the numbered evidence you are given, and from nothing else.
Rules:
- Answer in at most three short sentences, in the language of the question.
- After each sentence, cite the evidence that supports it with its number in brackets, like [2] or [1, 3].
- Cite only numbers that appear in the evidence. Never cite a passage for something it does not say.
- For a table result, state the rows that answer the question (numbers exactly as given).
- If the evidence does not contain the answer, reply exactly {NOT_IN_CONTEXT} followed by one sentence that
  says what is missing. Do not guess, and do not use outside knowledge."""

EXAMPLE_USER = """Evidence:
[1] (Billing FAQ) Refunds are issued to the original payment method within 5 business days.
[2] (Query over refunds) status: approved; refunds: 3

Question: How long does a refund take?"""

EXAMPLE_ASSISTANT = "Refunds reach the original payment method within 5 business days [1]."

STOP = ["\nQuestion:", "\nEvidence:"]


def static_prefix() -> list[dict[str, Any]]:
    """The messages every question shares (the cacheable prefix)."""
    return [
        {"role": "system", "content": INSTRUCTIONS},
        {"role": "user", "content": EXAMPLE_USER},
        {"role": "assistant", "content": EXAMPLE_ASSISTANT},
    ]


def messages(question: str, evidence: Sequence[Evidence]) -> list[dict[str, Any]]:
    """The full prompt: the static prefix, then this question's evidence and the question."""
    lines = []
    for item in evidence:
        title = f"({item.title}) " if item.title else ""
        text = " ".join(item.text.split()) if item.kind == "chunk" else item.text
        lines.append(f"[{item.number}] {title}{text}")
    user = "Evidence:\n" + "\n".join(lines) + f"\n\nQuestion: {question.strip()}"
    return [*static_prefix(), {"role": "user", "content": user}]
