"""Every error the API answers, in one shape (`ErrorResponse`) and mapped to a status in one place.

A RagError gets the status of the nearest class in `STATUS` and a code made of its class name
(`NotFound` -> `not_found`); a bad request body, query or path gets 422 `validation_error`, with each
problem located and at most a short prefix of the value sent; HTTP errors (unknown path, wrong method) keep
their status with a code named for it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from rag_server.api.schemas import ErrorDetail, ErrorResponse, error_content
from rag_server.errors import (
    AccessError,
    BudgetExceeded,
    ConfigError,
    DatabaseError,
    EmbeddingModelMismatch,
    Forbidden,
    IngestError,
    ModelError,
    NotFound,
    RagError,
    RateLimited,
    RetrievalError,
    SqlDeclined,
    SqlExecutionError,
    SqlRejected,
    Unauthenticated,
    UnknownFilterKey,
)

# The status of each kind of RagError; a subclass not listed gets its nearest listed ancestor's.
STATUS: dict[type[RagError], int] = {
    RagError: 400,
    ConfigError: 500,
    DatabaseError: 503,
    IngestError: 400,
    EmbeddingModelMismatch: 409,
    RetrievalError: 400,
    UnknownFilterKey: 422,
    SqlRejected: 422,
    SqlDeclined: 422,
    SqlExecutionError: 422,
    ModelError: 502,
    NotFound: 404,
    AccessError: 403,
    Unauthenticated: 401,
    Forbidden: 403,
    BudgetExceeded: 402,
    RateLimited: 429,
}

# How much of a value sent an error may repeat: enough to recognise it, never the whole of a large body.
MAX_ECHO_CHARS = 100

HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    422: "validation_error",
    500: "internal_error",
}

# Every status an endpoint may answer with an ErrorResponse, for the OpenAPI schema.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in [
        (400, "The request cannot be run as asked"),
        (401, "No API key, or an unknown or revoked one (`Authorization: Bearer KEY`)"),
        (402, "The project's monthly budget would be passed"),
        (403, "The key's role or domains do not allow this"),
        (404, "A domain or document that does not exist"),
        (413, "The body is larger than RAG_MAX_BODY_BYTES"),
        (414, "The URL is too long"),
        (422, "A field is missing, malformed or out of range, or a filter names an unknown key"),
        (429, "The key's requests or tokens per minute are spent; `Retry-After` says for how long"),
        (500, "A server fault (the message names no internals; the request id finds it in the log)"),
        (502, "The model could not be reached"),
        (503, "The database cannot be reached"),
        (504, "The request ran past RAG_REQUEST_TIMEOUT_S"),
    ]
}


def status_and_code(error: RagError) -> tuple[int, str]:
    """The HTTP status and machine-readable code of a RagError."""
    kind = next(kind for kind in type(error).__mro__ if kind in STATUS)
    return STATUS[kind], error_code(type(error))  # type: ignore[index]


def error_code(kind: type[RagError]) -> str:
    """`NotFound` -> `not_found`, `SqlRejected` -> `sql_rejected`."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", kind.__name__).lower()


def request_id(request: Request) -> str:
    """The request's id, as the RequestGuard middleware settled it."""
    return str(request.scope.get("rag.request_id", ""))


def echo(value: Any) -> str:
    """A short, printable prefix of a value sent, safe to put in a JSON response."""
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    if len(text) > MAX_ECHO_CHARS:
        text = text[:MAX_ECHO_CHARS] + "..."
    # Lone surrogates cannot be encoded as UTF-8: they are shown escaped (as "\ud800").
    return printable(text)


def printable(text: str) -> str:
    """`text` with lone surrogates and NULs escaped, so that it can be sent as UTF-8 JSON."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\u0000")


def _rag_details(error: RagError) -> list[ErrorDetail]:
    if isinstance(error, UnknownFilterKey):
        return [
            ErrorDetail(
                loc=["body", "filters", key],
                msg=f"no document has this metadata key; known keys: {', '.join(error.known) or 'none'}",
                type="unknown_filter_key",
                input=echo(key),
            )
            for key in error.unknown
        ]
    return []


def _details(errors: Sequence[Any]) -> list[ErrorDetail]:
    details = []
    for error in errors:
        loc = [part if isinstance(part, int) else echo(part) for part in error.get("loc", ())]
        has_input = "input" in error and error.get("type") not in {"missing", "json_invalid"}
        details.append(
            ErrorDetail(
                loc=loc,
                msg=echo(error.get("msg", "")),
                type=str(error.get("type", "")),
                input=echo(error["input"]) if has_input else None,
            )
        )
    return details


def _message(details: list[ErrorDetail]) -> str:
    first = details[0] if details else None
    if first is None:
        return "the request is invalid"
    where = ".".join(str(part) for part in first.loc) or "request"
    more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
    return f"{where}: {first.msg}{more}"


def install(app: FastAPI) -> None:
    """Register the handlers that give every error the one shape."""

    def counted(request: Request, code: str) -> None:
        metrics = getattr(request.app.state, "metrics", None)
        if metrics is not None:
            metrics.errors.labels(code).inc()

    @app.exception_handler(RagError)
    async def rag_error(request: Request, error: RagError) -> JSONResponse:
        status, code = status_and_code(error)
        counted(request, code)
        message = printable(str(error))
        headers = error.headers if isinstance(error, AccessError) else None
        return JSONResponse(
            error_content(code, message, request_id(request), _rag_details(error)),
            status_code=status,
            headers=headers,
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        details = _details(error.errors())
        counted(request, "validation_error")
        return JSONResponse(
            error_content("validation_error", _message(details), request_id(request), details),
            status_code=422,
        )

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        code = HTTP_CODES.get(error.status_code, f"http_{error.status_code}")
        message = error.detail if isinstance(error.detail, str) else code.replace("_", " ")
        counted(request, code)
        return JSONResponse(
            error_content(code, echo(message), request_id(request)),
            status_code=error.status_code,
            headers=error.headers,
        )
