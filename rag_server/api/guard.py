"""The middleware every request passes first: its id, and bounds on its URL and body.

It gives each request an id (the caller's `X-Request-ID` when it is a sane token, else a new one) and echoes
it on every response; answers 414 to a URL longer than `max_url_bytes` and 413 to a body longer than
`max_body_bytes` (read before the app sees it, so a chunked body is bounded too); and turns an unexpected
exception into a 500 in the API's error shape, logged with the request id, instead of a plain-text page.
"""

from __future__ import annotations

import logging
import re
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rag_server.api.schemas import error_content

log = logging.getLogger(__name__)

# The longest URL (path and query string) answered; no route needs more than a domain name and a few numbers.
MAX_URL_BYTES = 8 * 1024
# The request line and headers uvicorn buffers before it gives up with a bare 400 (its default is 16 KiB),
# so that a URL up to this size gets our 414 with a reason instead.
MAX_REQUEST_HEAD_BYTES = 2 * 1024 * 1024

REQUEST_ID_HEADER = "X-Request-ID"
_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class RequestGuard:
    """Pure ASGI middleware (no BaseHTTPMiddleware: it would buffer responses and hide the body limit)."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, max_url_bytes: int = MAX_URL_BYTES) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_url_bytes = max_url_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        incoming = headers.get(REQUEST_ID_HEADER, "")
        request_id = incoming if _SANE_ID.fullmatch(incoming) else uuid.uuid4().hex
        scope["rag.request_id"] = request_id
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        url_bytes = len(scope.get("raw_path") or scope["path"].encode()) + len(scope.get("query_string", b""))
        if url_bytes > self.max_url_bytes:
            message = f"the URL is {url_bytes} bytes long; at most {self.max_url_bytes} are accepted"
            await _error(414, "uri_too_long", message, request_id)(scope, receive, send_with_id)
            return
        body = await self._read_body(headers, receive)
        if body is None:
            message = f"the request body is larger than {self.max_body_bytes} bytes (RAG_MAX_BODY_BYTES)"
            await _error(413, "body_too_large", message, request_id)(scope, receive, send_with_id)
            return

        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        try:
            await self.app(scope, replay, send_with_id)
        except Exception:
            log.exception("request %s failed", request_id)
            if started:
                raise
            message = f"internal server error; the server log has it under request id {request_id}"
            await _error(500, "internal_error", message, request_id)(scope, receive, send_with_id)

    async def _read_body(self, headers: Headers, receive: Receive) -> bytes | None:
        """The whole body, or None once it passes the limit (the rest is not read)."""
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _error(status: int, code: str, message: str, request_id: str) -> JSONResponse:
    return JSONResponse(error_content(code, message, request_id), status_code=status)
