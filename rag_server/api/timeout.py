"""A bound on each request's time (RAG_REQUEST_TIMEOUT_S): past it the client gets an answer, not a hang.

A request whose response has not started gets a 504 in the API's error shape (code `timeout`); a stream
already started (SSE from /v1/ask) ends with an `error` event in the stream's own framing, since its status
was sent long ago. The request's work runs in a task of its own, so the answer does not wait for it:
blocking work in the thread pool (a model call, a query) cannot be interrupted; it is cancelled at its next
await and whatever it still sends is dropped.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rag_server.api.schemas import error_content

log = logging.getLogger(__name__)

TIMEOUT_CODE = "timeout"


class RequestTimeout:
    """Pure ASGI middleware answering 504 (or an SSE `error` event) once a request runs past `seconds`."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        if seconds <= 0:
            raise ValueError("the timeout must be positive (leave the middleware out for none)")
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started: Message | None = None
        finished = False
        timed_out = False

        async def guarded_send(message: Message) -> None:
            nonlocal started, finished
            if timed_out:
                return  # the client has its answer already
            if message["type"] == "http.response.start":
                started = message
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                finished = True
            await send(message)

        work = asyncio.ensure_future(self.app(scope, receive, guarded_send))
        try:
            await asyncio.wait({work}, timeout=self.seconds)
        except asyncio.CancelledError:
            work.cancel()
            raise
        if work.done():
            work.result()  # its exception, if any, goes to the RequestGuard
            return
        timed_out = True
        work.cancel()
        work.add_done_callback(_consume)
        request_id = str(scope.get("rag.request_id", ""))
        message = f"the request ran past RAG_REQUEST_TIMEOUT_S ({self.seconds:g} s)"
        log.warning("request %s %s timed out after %g s", request_id, scope.get("path", ""), self.seconds)
        if finished:
            return
        if started is None:
            body = json.dumps(error_content(TIMEOUT_CODE, message, request_id)).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 504, "headers": headers})
            await send({"type": "http.response.body", "body": body, "more_body": False})
        elif "text/event-stream" in Headers(raw=started.get("headers", [])).get("content-type", ""):
            event = {"code": TIMEOUT_CODE, "message": message, "request_id": request_id}
            frame = f"event: error\ndata: {json.dumps(event)}\n\n".encode()
            await send({"type": "http.response.body", "body": frame, "more_body": False})
        else:
            await send({"type": "http.response.body", "body": b"", "more_body": False})


def _consume(work: asyncio.Future[Any]) -> None:
    """Retrieve an abandoned request's outcome, so that asyncio does not report it as never retrieved."""
    if not work.cancelled() and work.exception() is not None:
        log.debug("a timed-out request ended with %r", work.exception())
