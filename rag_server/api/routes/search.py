"""POST /v1/search: ranked chunks (or a query's rows) from any route."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from rag_server.api.deps import PoolDep, SearcherDep, SettingsDep
from rag_server.api.errors import ERROR_RESPONSES
from rag_server.api.schemas import SearchBody, SearchResponse
from rag_server.documents import check_filter_keys
from rag_server.retrieval.types import SearchRequest, SearchResult

router = APIRouter(tags=["search"])


@router.post("/v1/search", responses=ERROR_RESPONSES)
async def search(
    body: SearchBody, http: Request, searcher: SearcherDep, pool: PoolDep, settings: SettingsDep
) -> SearchResponse:
    """Search a domain: the ranked chunks with the time each stage took."""
    request = SearchRequest(
        body.query, body.domain or settings.default_domain, body.route, body.k, body.filters
    )

    def run() -> SearchResult:
        with pool.connection() as conn:
            check_filter_keys(conn, request.domain, request.filters)
        return searcher.search(request)

    result = await run_in_threadpool(run)
    metrics = http.app.state.metrics
    metrics.observe_timings(result.timings_ms)
    metrics.observe_routing(result.routing)
    return SearchResponse.of(result)
