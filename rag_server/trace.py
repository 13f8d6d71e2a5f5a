"""One trace per request: its id, how long each stage took, and every model call with its usage and cost.

A `RequestTrace` is made once where a request enters (HTTP, CLI, eval) and passed through every stage of
the pipeline (route -> retrieve -> rerank -> answer), which time themselves with `trace.stage(name)` and
record their model calls with `trace.record(call)`. Responses, logs and usage accounting read it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from rag_server.llm import ModelCall

# The stages a question may pass through, in order; a trace holds those that ran.
STAGES: tuple[str, ...] = (
    "route",
    "embed",
    "expand",
    "semantic",
    "keyword",
    "fuse",
    "sql",
    "rerank",
    "ttft",
    "generate",
    "total",
)


def new_request_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Usage:
    """Tokens and dollars summed over a request's model calls."""

    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    model_calls: int = 0

    @classmethod
    def of(cls, calls: Iterable[ModelCall]) -> Usage:
        listed = list(calls)
        return cls(
            sum(c.prompt_tokens for c in listed),
            sum(c.cached_tokens for c in listed),
            sum(c.completion_tokens for c in listed),
            round(sum(c.cost_usd for c in listed), 8),
            len(listed),
        )


@dataclass
class RequestTrace:
    """Stage timings (ms) and model calls of one request; stages add up when they run more than once."""

    request_id: str = field(default_factory=new_request_id)
    timings_ms: dict[str, float] = field(default_factory=dict)
    model_calls: list[ModelCall] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, (time.perf_counter() - started) * 1000)

    def add(self, name: str, ms: float) -> None:
        self.timings_ms[name] = self.timings_ms.get(name, 0.0) + ms

    def record(self, calls: ModelCall | Iterable[ModelCall]) -> None:
        """Keep model calls, once each (a search's calls may be reported by more than one of its parts)."""
        for call in [calls] if isinstance(calls, ModelCall) else calls:
            if not any(call is kept for kept in self.model_calls):
                self.model_calls.append(call)

    def finish(self) -> None:
        self.timings_ms["total"] = (time.perf_counter() - self.started) * 1000

    @property
    def usage(self) -> Usage:
        return Usage.of(self.model_calls)

    def timings(self) -> dict[str, float]:
        """The timings rounded, in pipeline order."""
        ordered = sorted(self.timings_ms, key=lambda s: STAGES.index(s) if s in STAGES else len(STAGES))
        return {stage: round(self.timings_ms[stage], 3) for stage in ordered}

    def as_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "timings_ms": self.timings(),
            "model_calls": [call.as_dict() for call in self.model_calls],
        }
