"""POST /v1/search: ranked chunks (or a query's rows) from any route."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from rag_server.api.auth import CallerDep, check_domain
from rag_server.api.deps import PoolDep, SearcherDep, SettingsDep
from rag_server.api.errors import ERROR_RESPONSES, request_id
from rag_server.api.metering import Meter, failed_status
from rag_server.api.schemas import SearchBody, SearchResponse
from rag_server.documents import check_filter_keys
from rag_server.pipeline.quote import worst_case
from rag_server.retrieval.types import SearchRequest, SearchResult
from rag_server.trace import RequestTrace

router = APIRouter(tags=["search"])


@router.post("/v1/search", responses=ERROR_RESPONSES)
async def search(
    body: SearchBody,
    http: Request,
    searcher: SearcherDep,
    pool: PoolDep,
    settings: SettingsDep,
    principal: CallerDep,
) -> SearchResponse:
    """Search a domain: the ranked chunks with the time each stage took."""
    request = SearchRequest(
        body.query, body.domain or settings.default_domain, body.route, body.k, body.filters
    )
    await check_domain(pool, principal, request.domain)
    trace = RequestTrace(request_id=request_id(http) or RequestTrace().request_id)
    meter = Meter(pool, principal, "search", request.domain, trace, body.query)
    quote = worst_case(settings, searcher.model, body.query, None)
    await meter.open(quote.tokens, quote.usd)

    def run() -> SearchResult:
        with pool.connection() as conn:
            check_filter_keys(conn, request.domain, request.filters)
        return searcher.search(request, trace=trace)

    try:
        result = await run_in_threadpool(run)
    except Exception as error:
        await meter.aclose(failed_status(error))
        raise
    await meter.aclose(200, route=result.route)
    metrics = http.app.state.metrics
    metrics.observe_timings(result.timings_ms)
    metrics.observe_routing(result.routing)
    return SearchResponse.of(result)
