"""Prometheus metrics (`GET /metrics`): requests and latency per endpoint, latency per pipeline stage, routes,
answer-cache hits, abstentions, tokens and dollars, errors by code; each project's budget (read from Postgres
at scrape time, so every worker reports the same shared figure).

One registry per application (not the library's global one), so that several apps in one process (tests)
do not collide. Labels are bounded: endpoints are route templates, never raw paths; no key, question or
domain value is ever a label (project names are: an operator creates them).
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rag_server.pipeline.schemas import AskResponse

# Milliseconds matter here: stages run from well under 1 ms (rerank) to seconds (a model's answer).
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "rag_http_requests", "HTTP requests", ["endpoint", "method", "status"], registry=r
        )
        self.latency = Histogram(
            "rag_http_request_seconds", "HTTP request latency", ["endpoint"], buckets=_BUCKETS, registry=r
        )
        self.stages = Histogram(
            "rag_stage_seconds", "Time per pipeline stage", ["stage"], buckets=_BUCKETS, registry=r
        )
        self.routes = Counter("rag_routes", "Questions per route taken", ["route", "decided_by"], registry=r)
        self.cache = Counter("rag_answer_cache", "Answer cache lookups", ["result"], registry=r)
        self.abstentions = Counter("rag_abstentions", "Answers that abstained", registry=r)
        self.tokens = Counter("rag_model_tokens", "Model tokens", ["kind"], registry=r)
        self.cost = Counter("rag_model_cost_usd", "Model spend in dollars", registry=r)
        self.errors = Counter("rag_errors", "Error responses by code", ["code"], registry=r)
        self.budget_spent = Gauge("rag_budget_spent_usd", "Dollars spent this month", ["project"], registry=r)
        self.budget_used = Gauge(
            "rag_budget_used_ratio", "Share of the monthly budget spent", ["project"], registry=r
        )
        self.budget_alert = Gauge(
            "rag_budget_alert", "1 once the spend passed the project's alert share", ["project"], registry=r
        )

    def observe_timings(self, timings_ms: dict[str, float]) -> None:
        for stage, ms in timings_ms.items():
            self.stages.labels(stage).observe(ms / 1000)

    def observe_routing(self, routing: Any) -> None:
        if routing is not None:
            self.routes.labels(routing.route, routing.decided_by).inc()

    def observe_answer(self, answer: AskResponse) -> None:
        self.observe_timings(answer.timings_ms)
        self.observe_routing(answer.routing)
        self.cache.labels(answer.cache).inc()
        if answer.abstained:
            self.abstentions.inc()
        usage = answer.usage
        self.tokens.labels("prompt").inc(usage.prompt_tokens - usage.cached_prompt_tokens)
        self.tokens.labels("cached_prompt").inc(usage.cached_prompt_tokens)
        self.tokens.labels("completion").inc(usage.completion_tokens)
        self.cost.inc(usage.cost_usd)

    def observe_budgets(self, budgets: dict[str, Any]) -> None:
        """Set each project's budget gauges from its BudgetStatus (projects without a budget: spend only)."""
        for project, status in budgets.items():
            self.budget_spent.labels(project).set(status.spent_usd)
            if status.used is not None:
                self.budget_used.labels(project).set(status.used)
                self.budget_alert.labels(project).set(1 if status.alert else 0)

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Counts and times every HTTP request by its route template (pure ASGI: streaming stays streaming)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
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
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(endpoint, scope.get("method", ""), str(status)).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
