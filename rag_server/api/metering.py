"""A metered request: its worst case reserved before any model call, settled to what it really spent when it
ends (answered, failed, or cut off by the client), and logged for usage and feedback."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

from psycopg_pool import ConnectionPool

from rag_server import usage
from rag_server.api.errors import status_and_code
from rag_server.errors import RagError
from rag_server.keys import Principal
from rag_server.limits import Reservation, reserve, settle
from rag_server.pipeline import AskResponse, Event
from rag_server.trace import RequestTrace

log = logging.getLogger(__name__)


class Meter:
    """One request's reservation and log entry; `close` runs once, whatever happens."""

    def __init__(
        self,
        pool: ConnectionPool,
        principal: Principal,
        endpoint: str,
        domain: str,
        trace: RequestTrace,
        question: str | None = None,
    ) -> None:
        self.pool = pool
        self.principal = principal
        self.endpoint = endpoint
        self.domain = domain
        self.trace = trace
        self.question = question
        self.held: Reservation | None = None
        self.closed = False

    async def open(self, tokens: int, usd: float) -> None:
        """Reserve the worst case: 429 or 402 (raised) when a limit would be passed."""
        if tokens > 0 or usd > 0:  # else nothing to reserve (no priced model): no hop, no round trip
            await asyncio.to_thread(self.hold, tokens, usd)

    def hold(self, tokens: int, usd: float) -> None:
        """`open` for a caller already in a worker thread."""
        if tokens <= 0 and usd <= 0:
            return
        with self.pool.connection() as conn:
            self.held = reserve(conn, self.principal, tokens, usd)

    def close(
        self,
        status: int,
        answer: AskResponse | None = None,
        route: str | None = None,
        cache_hit: bool = False,
    ) -> None:
        """Settle to the trace's real usage and log the request (blocking: call it from a worker thread)."""
        if self.closed:
            return
        self.closed = True
        spent = self.trace.usage
        record = usage.RequestRecord(
            request_id=self.trace.request_id,
            endpoint=self.endpoint,
            domain=self.domain,
            route=answer.routing.route if answer is not None and answer.routing else route,
            status=status,
            usage=spent,
            cache_hit=answer.cache == "hit" if answer is not None else cache_hit,
            abstained=answer.abstained if answer is not None else False,
            question=self.question,
            trace=_kept(answer, self.trace),
        )
        try:
            with self.pool.connection() as conn:
                if self.held is not None:
                    settle(conn, self.held, spent.prompt_tokens + spent.completion_tokens, spent.cost_usd)
                usage.record(conn, self.principal, record)
        except Exception:
            # The answer is already out; a failed settlement must not turn it into an error. It is logged.
            log.exception("settling request %s failed", self.trace.request_id)

    async def aclose(self, status: int, answer: AskResponse | None = None, **kwargs: Any) -> None:
        await asyncio.to_thread(lambda: self.close(status, answer, **kwargs))

    def events(self, events: Iterator[Event]) -> Iterator[Event]:
        """The events as they are; the request settles when they end, fail, or are abandoned by the client."""
        answer: AskResponse | None = None
        status = 499  # the client went away before the end, unless found otherwise below
        try:
            for event in events:
                if event.name == "done":
                    answer, status = AskResponse.model_validate(event.data), 200
                elif event.name == "error":
                    status = 502
                yield event
        except Exception as error:
            status = failed_status(error)
            raise
        finally:
            # Closed first, so that a model stream cut short records what it spent into the trace.
            close = getattr(events, "close", None)
            if close is not None:
                close()
            self.close(status, answer)


def failed_status(error: Exception) -> int:
    """The status a request that raised `error` answers with."""
    return status_and_code(error)[0] if isinstance(error, RagError) else 500


def _kept(answer: AskResponse | None, trace: RequestTrace) -> dict[str, Any]:
    """What the request log keeps: the answer with its evidence and citations (for feedback), and the trace."""
    kept: dict[str, Any] = {"trace": trace.as_dict()}
    if answer is not None:
        kept.update(answer.model_dump(mode="json", include={"answer", "abstained", "citations", "evidence"}))
    return kept
