"""The worst case of a request before it runs: the tokens and dollars that the budget and the token rate limit
reserve, settled to the real figures once it ends.

Bounds per model call, generous on purpose (a reservation that is too small lets concurrent requests pass a
budget; one too large only refuses early near the line). A question's characters bound its tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

from rag_server.config import Settings
from rag_server.llm import ChatModel, cost

# (prompt tokens besides the question, completion tokens) of each kind of call.
ROUTER_CALL = (1500, 60)
SQL_CALL = (6000, 600)
EXPANSION_CALL = (400, 300)
ANSWER_INSTRUCTIONS = 1200
EVIDENCE_OVERHEAD = 60  # numbering, title and separators of one passage


@dataclass(frozen=True)
class Quote:
    tokens: int
    usd: float


def worst_case(
    settings: Settings,
    model: ChatModel | None,
    question: str,
    answer_tokens: int | None,
    k: int | None = None,
) -> Quote:
    """The most a search (`answer_tokens` None) or an ask may spend; nothing without a priced model."""
    if model is None:
        return Quote(0, 0.0)
    asked = len(question)
    calls: list[tuple[int, int]] = []
    if settings.router_llm != "off":
        calls.append(ROUTER_CALL)
    if settings.sql_generator != "deterministic":
        calls.extend([SQL_CALL] * (1 + settings.sql_max_retries))
    if settings.semantic_expansion == "multiquery":
        calls.append(EXPANSION_CALL)
    if answer_tokens is not None and settings.answerer != "extractive":
        passages = k or settings.answer_evidence
        calls.append(
            (ANSWER_INSTRUCTIONS + passages * (2 * settings.chunk_size + EVIDENCE_OVERHEAD), answer_tokens)
        )
    price = getattr(model, "price", (0.0, 0.0, 0.0))
    tokens = sum(prompt + asked + completion for prompt, completion in calls)
    usd = sum(cost(price, prompt + asked, 0, completion) for prompt, completion in calls)
    return Quote(tokens, round(usd, 8))
