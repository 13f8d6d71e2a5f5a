"""The remote reranker: a rerank endpoint a team runs itself (`RAG_RERANKER=remote`), for every domain.

Two request shapes (`RAG_RERANK_API`):

- `cohere` (Cohere, Jina, llama.cpp's server, TEI's Cohere-style route): POST `{model, query, documents,
  top_n}` -> `{"results": [{"index", "relevance_score"}]}`;
- `tei` (text-embeddings-inference's own `/rerank`): POST `{query, texts, truncate}` -> `[{"index", "score"}]`.

Either reply is read whichever shape was asked. A 429 or 5xx (or a refused connection) is retried with
backoff, waiting what Retry-After says when it says; a timeout is not retried (its wait was the budget). A call
that still fails never breaks the answer: a warning is logged (the host and the failure, never the key) and the
fused order serves, which `fell_back` tells the pipeline (`reranker: "remote (failed)"` in the response).
"""

from __future__ import annotations

import email.utils
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
import numpy as np

from rag_server.config import Settings
from rag_server.errors import ConfigError, ModelError
from rag_server.rerank.cross_encoder import passage
from rag_server.rerank.feature import order
from rag_server.retrieval.types import ScoredChunk

log = logging.getLogger(__name__)

NAME = "remote"
Api = Literal["cohere", "tei"]
# Backoff without Retry-After: 0.25 s, 0.5 s, 1 s ... at most this long.
_MAX_BACKOFF_S = 4.0


class RemoteReranker:
    """Scores the candidates with a remote rerank endpoint (a `Reranker`); the fused order when it fails."""

    name = NAME

    def __init__(
        self,
        url: str,
        model: str | None = None,
        api_key: str | None = None,
        api: Api = "cohere",
        timeout_s: float = 5.0,
        max_retries: int = 2,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        parsed = httpx.URL(url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ConfigError(f"RAG_RERANK_URL must be an http(s) URL, got scheme {parsed.scheme!r}")
        if api not in ("cohere", "tei"):
            raise ConfigError(f"unknown rerank API {api!r}: cohere or tei")
        self.url = url
        # What a log line may name: no user info, path or query (where a key could hide).
        self.host = f"{parsed.host}:{parsed.port}" if parsed.port else parsed.host
        self.model = model
        self.api = api
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self._sleep = sleep
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(timeout=timeout_s, headers=headers)
        self._local = threading.local()

    @classmethod
    def from_settings(cls, settings: Settings) -> RemoteReranker:
        """The endpoint the settings name (RAG_RERANK_URL, _API, _MODEL, _API_KEY, _TIMEOUT_S, _MAX_RETRIES)."""
        if not settings.rerank_url:
            raise ConfigError("the remote reranker needs RAG_RERANK_URL")
        key = settings.rerank_api_key.get_secret_value() if settings.rerank_api_key else None
        return cls(
            settings.rerank_url,
            settings.rerank_model,
            key or None,
            settings.rerank_api,
            settings.rerank_timeout_s,
            settings.rerank_max_retries,
        )

    @property
    def fell_back(self) -> bool:
        """Whether this thread's last `rerank` failed and left the fused order."""
        return bool(getattr(self._local, "fell_back", False))

    def rerank(
        self, question: str, question_vector: np.ndarray | None, candidates: Sequence[ScoredChunk]
    ) -> list[ScoredChunk]:
        """The candidates by the endpoint's scores (ties and unscored ones keep the fused order); the fused
        order itself when the endpoint fails."""
        self._local.fell_back = False
        if len(candidates) < 2:
            return list(candidates)
        try:
            scores = self.scores(question, [passage(chunk) for chunk in candidates])
        except ModelError as error:
            log.warning("remote reranker at %s failed, the fused order serves: %s", self.host, error)
            self._local.fell_back = True
            return list(candidates)
        return [candidates[i] for i in order(scores)]

    def scores(self, question: str, documents: Sequence[str]) -> np.ndarray:
        """The endpoint's score of each document (-inf for one it left out).

        Raises:
            ModelError: the endpoint failed after its retries, timed out, or answered something unreadable.
        """
        body: dict[str, Any]
        if self.api == "tei":
            body = {"query": question, "texts": list(documents), "truncate": True}
        else:
            body = {"query": question, "documents": list(documents), "top_n": len(documents)}
            if self.model:
                body["model"] = self.model
        return _scores(self._post(body), len(documents))

    def _post(self, body: dict[str, Any]) -> Any:
        """The endpoint's JSON reply; 429, 5xx and refused connections retried with backoff."""
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            try:
                response = self._client.post(self.url, json=body)
            except httpx.TimeoutException:
                raise ModelError(f"no reply within {self.timeout_s:g} s") from None
            except httpx.TransportError as error:
                if last:
                    raise ModelError(f"{type(error).__name__} after {attempt + 1} attempts") from None
                self._sleep(_backoff(attempt))
                continue
            status = response.status_code
            if response.is_success:
                try:
                    return response.json()
                except ValueError:
                    raise ModelError(f"HTTP {status} with a reply that is not JSON") from None
            if status != 429 and status < 500:
                raise ModelError(f"HTTP {status} (not retried)")
            if last:
                raise ModelError(f"HTTP {status} after {attempt + 1} attempts")
            wait = _retry_after(response.headers.get("retry-after"))
            if wait is not None and wait > self.timeout_s:
                raise ModelError(f"HTTP {status}, Retry-After {wait:g} s: longer than the call's timeout")
            self._sleep(_backoff(attempt) if wait is None else wait)
        raise ModelError("no attempt was made")  # unreachable: the loop returns or raises

    def close(self) -> None:
        self._client.close()


def _scores(reply: Any, count: int) -> np.ndarray:
    """Scores by document index from either reply shape; ModelError when it is neither."""
    results = reply.get("results") if isinstance(reply, dict) else reply
    if not isinstance(results, list):
        raise ModelError("the reply has no results list")
    scores = np.full(count, -np.inf)
    for item in results:
        try:
            index = int(item["index"])
            score = float(item["relevance_score"] if "relevance_score" in item else item["score"])
        except (KeyError, TypeError, ValueError):
            raise ModelError("a result without an index and a score") from None
        if not 0 <= index < count or math.isnan(score):
            raise ModelError(f"a result with index {index} of {count} documents, or no score")
        scores[index] = score
    return scores


def _backoff(attempt: int) -> float:
    return float(min(0.25 * 2**attempt, _MAX_BACKOFF_S))


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds: a number, or an HTTP date; None when absent or unreadable.

    >>> _retry_after("2"), _retry_after(None), _retry_after("soon")
    (2.0, None, None)
    """
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
