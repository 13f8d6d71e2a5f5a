"""`rag-server bench answer`: what the answer stage adds before generation, next to the bare search, at each
rerank depth; and, when a model is configured, its time to first token and tokens per second."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from evals.metrics import percentile
from rag_server.pipeline import AskRequest, Pipeline
from rag_server.retrieval.types import SearchRequest
from rag_server.trace import RequestTrace

# The stages before the answerer writes: route, embed, retrieve (and sql), rerank, assess.
PRE_GENERATION = ("route", "embed", "expand", "semantic", "keyword", "fuse", "sql", "rerank", "assess")


def _stats(values: Sequence[float]) -> dict[str, float]:
    return {"p50": round(percentile(list(values), 50), 3), "p95": round(percentile(list(values), 95), 3)}


def run_answer_bench(
    pipelines: dict[int, Pipeline], domain: str, questions: Sequence[str], rounds: int = 2
) -> dict[str, Any]:
    """For each rerank depth: the bare search (same depth) and the pipeline up to generation, per question,
    taking turns so that neither always runs on warm pages."""
    results: dict[str, Any] = {"domain": domain, "questions": len(questions), "depths": {}}
    for depth, pipeline in pipelines.items():
        pipeline.ask(AskRequest(question=questions[0], domain=domain))  # warm: models, index, router
        search_ms, pre_ms, ttft_ms, rates = [], [], [], []
        for _ in range(rounds):
            for number, question in enumerate(questions):
                runs = [_search, _ask] if number % 2 else [_ask, _search]
                for run in runs:
                    run(pipeline, domain, question, depth, search_ms, pre_ms, ttft_ms, rates)
        pre, bare = _stats(pre_ms), _stats(search_ms)
        results["depths"][str(depth)] = {
            "search_ms": bare,
            "pre_generation_ms": pre,
            "overhead_ratio_p50": round(pre["p50"] / bare["p50"], 3) if bare["p50"] else None,
            "ttft_ms": _stats(ttft_ms),
            "tokens_per_s": _stats(rates) if rates else None,
        }
    return results


def _search(
    pipeline: Pipeline, domain: str, question: str, depth: int, search_ms: list[float], *_: Any
) -> None:
    started = time.perf_counter()
    pipeline.searcher.search(SearchRequest(question, domain, None, depth))
    search_ms.append((time.perf_counter() - started) * 1000)


def _ask(
    pipeline: Pipeline,
    domain: str,
    question: str,
    depth: int,
    search_ms: list[float],
    pre_ms: list[float],
    ttft_ms: list[float],
    rates: list[float],
) -> None:
    trace = RequestTrace()
    response = pipeline.ask(AskRequest(question=question, domain=domain), trace)
    pre_ms.append(sum(trace.timings_ms.get(stage, 0.0) for stage in PRE_GENERATION))
    ttft_ms.append(trace.timings_ms.get("ttft", 0.0))
    generated = response.usage.completion_tokens
    if generated and trace.timings_ms.get("generate"):
        rates.append(generated / (trace.timings_ms["generate"] / 1000))
