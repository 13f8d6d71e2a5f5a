"""Model multi-query expansion for the semantic route: the configured model rephrases the question a few
ways, each rephrasing is searched, and the lists are fused by reciprocal rank. Off by default: it costs a
model call per search, and it is kept only where evals with a real model show a gain."""

from __future__ import annotations

import json
import re

from rag_server.errors import ModelError
from rag_server.llm import ChatModel, ModelCall

_SYSTEM = (
    "Rewrite the user's search query {n} different ways that a document answering it might use: synonyms, "
    "the formal term, a spelled-out form. Reply with a JSON list of {n} strings and nothing else."
)


def rephrasings(model: ChatModel, query: str, count: int) -> tuple[list[str], ModelCall | None]:
    """Up to `count` rephrasings of the query, and the call they cost; none when the model fails."""
    messages = [{"role": "system", "content": _SYSTEM.format(n=count)}, {"role": "user", "content": query}]
    try:
        reply = model.complete("multiquery", messages, max_tokens=200)
    except ModelError:
        return [], None
    match = re.search(r"\[.*\]", reply.text, flags=re.DOTALL)
    try:
        parsed = json.loads(match.group(0)) if match else []
    except ValueError:
        parsed = []
    found = [
        text.strip() for text in parsed if isinstance(text, str) and text.strip() and text.strip() != query
    ]
    return list(dict.fromkeys(found))[:count], reply.call
