"""POST /v1/search: ranked chunks (or a query's rows) from any route."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response

from rag_server.api.auth import KeyDep, identify
from rag_server.api.deps import PoolDep, SearcherDep, SettingsDep
from rag_server.api.errors import ERROR_RESPONSES, request_id
from rag_server.api.metering import Meter, failed_status
from rag_server.api.schemas import SearchBody, SearchResponse, as_json
from rag_server.documents import check_filter_keys
from rag_server.pipeline.quote import worst_case
from rag_server.retrieval.types import SearchRequest, SearchResult
from rag_server.trace import RequestTrace

router = APIRouter(tags=["search"])


@router.post("/v1/search", response_model=SearchResponse, responses=ERROR_RESPONSES)
async def search(
    body: SearchBody,
    http: Request,
    searcher: SearcherDep,
    pool: PoolDep,
    settings: SettingsDep,
    key: KeyDep,
) -> Response:
    """Search a domain: the ranked chunks with the time each stage took."""
    request = SearchRequest(
        body.query, body.domain or settings.default_domain, body.route, body.k, body.filters
    )
    trace = RequestTrace(request_id=request_id(http) or RequestTrace().request_id)

    def run() -> SearchResult:
        # One hop to a worker thread for all of the request's blocking work (each hop costs the event loop).
        principal = identify(pool, settings, key, request.domain)
        meter = Meter(pool, principal, "search", request.domain, trace, body.query)
        quote = worst_case(settings, searcher.model, body.query, None)
        meter.hold(quote.tokens, quote.usd)
        try:
            with pool.connection() as conn:
                check_filter_keys(conn, request.domain, request.filters)
            result = searcher.search(request, trace=trace)
        except Exception as error:
            meter.close(failed_status(error))
            raise
        meter.close(200, route=result.route)
        return result

    result = await asyncio.to_thread(run)
    metrics = http.app.state.metrics
    metrics.observe_timings(result.timings_ms)
    metrics.observe_routing(result.routing)
    return as_json(SearchResponse.of(result))
