"""POST /v1/ask: a cited answer, or an abstention with its reason; streamed as SSE when asked.

SSE events, in this order: `route`, `evidence`, `token` (deltas, never cumulative), `citation` (one each),
`usage`, then `done` (the whole `AskResponse`) or `error` ({code, message, request_id}). A request that
cannot start (unknown domain, bad filter) is a plain 4xx before any event.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Iterator
from itertools import chain
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from rag_server.api.auth import KeyDep, identify
from rag_server.api.deps import PoolDep, SettingsDep
from rag_server.api.errors import ERROR_RESPONSES, request_id
from rag_server.api.metering import Meter, failed_status
from rag_server.api.metrics import Metrics
from rag_server.api.schemas import as_json
from rag_server.documents import check_filter_keys
from rag_server.pipeline import AskRequest, AskResponse, Event, Pipeline
from rag_server.pipeline.quote import worst_case
from rag_server.trace import RequestTrace

router = APIRouter(tags=["ask"])


def frame(event: Event) -> str:
    """One SSE frame: `event: NAME` and the data as one line of JSON."""
    return f"event: {event.name}\ndata: {json.dumps(event.data, ensure_ascii=False, default=str)}\n\n"


def observed(events: Iterable[Event], metrics: Metrics) -> Iterator[Event]:
    """The events as they are, the finished answer counted in the metrics on the way."""
    for event in events:
        if event.name == "done":
            metrics.observe_answer(AskResponse.model_validate(event.data))
        elif event.name == "error":
            metrics.errors.labels(event.data.get("code", "error")).inc()
        yield event


@router.post(
    "/v1/ask",
    response_model=AskResponse,
    responses={
        **ERROR_RESPONSES,
        200: {
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
            "description": "An answer (JSON), or its events (SSE).",
        },
    },
)
async def ask(body: AskRequest, request: Request, pool: PoolDep, settings: SettingsDep, key: KeyDep) -> Any:
    """Answer a question from a domain's documents and tables, with checked citations, or abstain."""
    pipeline: Pipeline = request.app.state.pipeline
    trace = RequestTrace(request_id=request_id(request) or RequestTrace().request_id)
    domain = body.domain or settings.default_domain
    streaming = body.stream or "text/event-stream" in request.headers.get("accept", "")

    def start() -> Meter:
        principal = identify(pool, settings, key, domain)
        with pool.connection() as conn:
            check_filter_keys(conn, domain, body.filters)
        meter = Meter(pool, principal, "ask", domain, trace, body.question)
        max_tokens = body.max_tokens or settings.answer_max_tokens
        quote = worst_case(settings, pipeline.searcher.model, body.question, max_tokens, body.k)
        meter.hold(quote.tokens, quote.usd)
        return meter

    def answer() -> AskResponse:
        # One hop to a worker thread for all of the request's blocking work (each hop costs the event loop).
        meter = start()
        try:
            answered = pipeline.ask(body, trace)
        except Exception as error:
            meter.close(failed_status(error))
            raise
        meter.close(200, answered)
        return answered

    metrics: Metrics = request.app.state.metrics
    if not streaming:
        answered = await asyncio.to_thread(answer)
        metrics.observe_answer(answered)
        return as_json(answered)
    meter = await asyncio.to_thread(start)
    events = meter.events(pipeline.events(body, trace))
    # The first event runs the search: a request that cannot start fails here, as a plain 4xx.
    first = await asyncio.to_thread(next, events)
    frames: Iterator[str] = (frame(event) for event in observed(chain([first], events), metrics))
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(frames, media_type="text/event-stream", headers=headers)
