"""A rerank endpoint on loopback that scores from a script: the stand-in for a team's own reranking server
(Cohere, Jina, llama.cpp, TEI). The code under test talks to it with its real HTTP client.

Two routes, one per request shape: `POST /v1/rerank` `{model, query, documents, top_n}` -> `{"results":
[{"index", "relevance_score"}]}` (best first, as Cohere answers) and `POST /rerank` `{query, texts}` ->
`[{"index", "score"}]` (TEI). Faults are played one per request, as in `tests.scripted_llm`:
`Fault(status=429, retry_after=0)`, `Fault(status=500)`, `Fault(sleep=2.0)`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.loopback import LoopbackServer
from tests.scripted_llm import Fault

# A script gets the query and the documents and returns one score per document.
Scores = Callable[[str, list[str]], list[float]]


def word_overlap(query: str, documents: list[str]) -> list[float]:
    """The share of the query's words each document contains (a crude but telling reranker)."""
    words = set(query.lower().replace("?", "").split())
    return [len(words & set(text.lower().split())) / max(len(words), 1) for text in documents]


class ScriptedReranker:
    """`with ScriptedReranker(scores) as server:` serves `server.url` (Cohere shape) and `server.tei_url`;
    `server.requests` keeps every body, `server.authorizations` every Authorization header (or None)."""

    def __init__(self, scores: Scores = word_overlap, faults: list[Fault | None] | None = None) -> None:
        self.scores = scores
        self.faults = list(faults or [])
        self.requests: list[dict[str, Any]] = []
        self.authorizations: list[str | None] = []
        self.app = FastAPI()
        self.app.post("/v1/rerank")(self._cohere)
        self.app.post("/rerank")(self._tei)
        self.server = LoopbackServer(self.app, "scripted rerank")
        self.port = self.server.port
        self.url = f"http://127.0.0.1:{self.port}/v1/rerank"
        self.tei_url = f"http://127.0.0.1:{self.port}/rerank"

    async def _fault(self, request: Request) -> tuple[dict[str, Any], JSONResponse | None]:
        body = await request.json()
        self.requests.append(body)
        self.authorizations.append(request.headers.get("authorization"))
        fault = self.faults.pop(0) if self.faults else None
        if fault and fault.sleep:
            await asyncio.sleep(fault.sleep)
        if fault and fault.status:
            headers = {} if fault.retry_after is None else {"retry-after": str(fault.retry_after)}
            return body, JSONResponse({"message": f"scripted {fault.status}"}, fault.status, headers)
        return body, None

    async def _cohere(self, request: Request) -> Any:
        body, failed = await self._fault(request)
        if failed is not None:
            return failed
        scores = self.scores(body["query"], body["documents"])
        ranked = sorted(range(len(scores)), key=lambda i: -scores[i])[: body.get("top_n") or len(scores)]
        return {"results": [{"index": i, "relevance_score": scores[i]} for i in ranked]}

    async def _tei(self, request: Request) -> Any:
        body, failed = await self._fault(request)
        if failed is not None:
            return failed
        scores = self.scores(body["query"], body["texts"])
        return [{"index": i, "score": s} for i, s in sorted(enumerate(scores), key=lambda x: -x[1])]

    def __enter__(self) -> ScriptedReranker:
        self.server.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.stop()
