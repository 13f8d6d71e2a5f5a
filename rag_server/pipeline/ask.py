"""The flow of a question: `search` (route -> retrieve -> fuse) and `ask` (search -> rerank -> answer).

`Pipeline.events` is the one implementation of ask: it yields the SSE events (`route`, `evidence`, `token`...,
`citation`..., `usage`, then `done` or `error`) and `Pipeline.ask` consumes them into one `AskResponse`, so
the streamed and the plain answer cannot drift apart. Every stage is timed into the request's trace.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from rag_server.answer import signals
from rag_server.answer.abstention import NOT_IN_CONTEXT, Assessment, Calibration, assess, says_not_in_context
from rag_server.answer.answerers import Answerer, ExtractiveAnswerer, GenerativeAnswerer
from rag_server.answer.citations import MarkerFilter, cite, clean_markers
from rag_server.answer.evidence import Evidence, collect
from rag_server.config import Settings
from rag_server.domains import get_domain
from rag_server.errors import ModelError, RagError
from rag_server.pipeline.cache import AnswerCache, cache_key, semantic_threshold, settings_key
from rag_server.pipeline.schemas import AskRequest, AskResponse, UsageOut
from rag_server.rerank import Reranker
from rag_server.rerank.registry import RerankerRegistry
from rag_server.retrieval.search import Searcher
from rag_server.retrieval.types import SearchRequest, SearchResult
from rag_server.trace import RequestTrace, Usage


@dataclass(frozen=True)
class Event:
    """One step of an answer as it happens; `name` is the SSE event name."""

    name: str
    data: dict[str, Any]


class Pipeline:
    """One per process: the searcher (routes, router, models), the answerers and the calibration."""

    def __init__(
        self,
        searcher: Searcher,
        settings: Settings,
        calibration: Calibration | None = None,
        reranker: Reranker | None = None,
    ) -> None:
        self.searcher = searcher
        self.settings = settings
        self.calibration = calibration or Calibration.load(settings.answer_calibration)
        # A reranker given here serves every domain (tests, benchmarks); else each domain's promoted one.
        self.reranker = reranker
        self.rerankers = RerankerRegistry(searcher.pool, searcher)
        self.extractive = ExtractiveAnswerer()
        self.cache = AnswerCache(searcher.pool) if settings.answer_cache != "off" else None
        self.semantic_threshold = (
            semantic_threshold(settings, searcher.embedder.name)
            if settings.answer_cache == "semantic"
            else None
        )
        fitted = self.calibration
        self._calibration_id = f"{fitted.fitted_on}|{sorted(fitted.thresholds.items())}|{fitted.coef}"

    def search(self, request: SearchRequest, trace: RequestTrace) -> SearchResult:
        """Route -> retrieve -> fuse (the sql route and fan-outs included)."""
        return self.searcher.search(request, trace=trace)

    def answerer(self, max_tokens: int | None = None) -> Answerer:
        model = self.searcher.model
        if self.settings.answerer == "llm" and model is None:
            raise ModelError("RAG_ANSWERER=llm needs a model: set OPENAI_API_KEY or OPENAI_BASE_URL")
        if self.settings.answerer == "extractive" or model is None:
            return self.extractive
        return GenerativeAnswerer(model, max_tokens or self.settings.answer_max_tokens)

    def ask(self, request: AskRequest, trace: RequestTrace | None = None) -> AskResponse:
        """The whole answer at once; a model failure raises (ModelError) instead of an `error` event."""
        for event in self.events(request, trace or RequestTrace(), raise_errors=True):
            if event.name == "done":
                return AskResponse.model_validate(event.data)
        raise ModelError("the answer ended without a result")  # unreachable: events always ends with done

    def events(self, request: AskRequest, trace: RequestTrace, raise_errors: bool = False) -> Iterator[Event]:
        """Search, rerank, assess, answer and cite, as events; a failure mid-answer ends with `error`.

        With the answer cache on, a repeated question replays its stored answer (no search, no model call);
        with the semantic cache, so does a paraphrase of a stored question (docs/answers.md)."""
        domain_name = request.domain or self.settings.default_domain
        if self.cache is None:
            yield from self._answered(request, trace, raise_errors, "off")
            return
        with self.searcher.pool.connection() as conn:
            domain = get_domain(conn, domain_name)
        # The domain's tuning is part of the key: a promotion must not replay answers searched without it.
        tuned = self.searcher.tunings.for_domain(domain).apply(self.settings)
        key = cache_key(request, tuned, self._answerer_name(), self._model_name(), self._calibration_id)
        with trace.stage("cache"):
            state, cached = self.cache.lookup(domain, key)
        if cached is not None:
            yield from _replayed(cached, trace, request.question, {"cache_match": "exact"})
            return
        vector, semantic = None, None
        threshold = self.semantic_threshold
        if threshold is not None and domain.model.name == self.searcher.embedder.name:
            names = (self._answerer_name(), self._model_name(), self._calibration_id)
            settings = settings_key(request, tuned, *names)
            # Embedded once: the lookup and, on a miss, the search and the assessment share the vector.
            with trace.stage("embed"):
                vector = self.searcher.embedder.embed([request.question])[0]
            with trace.stage("cache"):
                hit = self.cache.nearest(domain, settings, request.question, vector, threshold, state)
            if hit is not None:
                match = {
                    "cache_match": "semantic",
                    "cached_question": hit.question,
                    "cache_similarity": hit.similarity,
                }
                yield from _replayed(hit.response, trace, request.question, match)
                return
            semantic = (request.question, settings, vector)
        for event in self._answered(request, trace, raise_errors, "miss", vector):
            # An answer the remote reranker failed on is not kept: the next one may get its order.
            if event.name == "done" and not event.data["reranker"].endswith("(failed)"):
                self.cache.put(domain, key, AskResponse.model_validate(event.data), state, semantic)
            yield event

    def _reranker(self, domain_name: str) -> Reranker:
        if self.reranker is not None:
            return self.reranker
        with self.searcher.pool.connection() as conn:
            domain = get_domain(conn, domain_name)
        return self.rerankers.for_domain(domain)

    def _answerer_name(self) -> str:
        model = self.searcher.model
        return "extractive" if self.settings.answerer == "extractive" or model is None else "llm"

    def _model_name(self) -> str:
        return self.searcher.model.model if self.searcher.model is not None else ""

    def _answered(
        self,
        request: AskRequest,
        trace: RequestTrace,
        raise_errors: bool,
        cache: str,
        vector: np.ndarray | None = None,
    ) -> Iterator[Event]:
        domain = request.domain or self.settings.default_domain
        k = request.k or self.settings.answer_evidence
        # Embedded once (unless the semantic cache did): the search and the evidence assessment both need it.
        if vector is None:
            with trace.stage("embed"):
                vector = self.searcher.embedder.embed([request.question])[0]
        depth = max(k, self.settings.rerank_depth)
        search = SearchRequest(request.question, domain, request.route, depth, request.filters)
        result = self.searcher.search(search, query_vector=vector, trace=trace)
        yield Event(
            "route",
            {
                "request_id": trace.request_id,
                "route": result.route,
                "routing": result.routing.as_dict() if result.routing else None,
            },
        )
        with trace.stage("rerank"):
            reranker = self._reranker(domain)
            result = replace(result, chunks=reranker.rerank(request.question, vector, result.chunks))
            served = _reranker_name(reranker)  # now: a remote reranker's failure is known per call
        evidence = collect(result, k)
        yield Event("evidence", {"evidence": [item.as_dict() for item in evidence]})

        with trace.stage("assess"):
            lexicon = self.lexicon(domain)
            ranked = signals.score_sentences(
                request.question, vector, signals.sentences(evidence), lexicon, self.searcher.embedder.embed
            )
            values = signals.features(request.question, ranked, lexicon)
            assessment = assess(
                request.question,
                evidence,
                ranked,
                values,
                lexicon,
                self.calibration,
                self.settings.abstention,
            )
        answerer = self.extractive if assessment.abstain else self.answerer(request.max_tokens)
        try:
            answer, dropped, abstained, reason = yield from self._answer(
                request, evidence, assessment, answerer, trace
            )
        except RagError as error:
            if raise_errors:
                raise
            yield Event(
                "error", {"code": _code(error), "message": str(error), "request_id": trace.request_id}
            )
            return
        citations = cite(
            answer,
            evidence,
            lambda claim, item: signals.support(claim, item, lexicon),
            self.calibration.support_threshold,
        )
        for citation in citations:
            yield Event("citation", citation.as_dict())
        usage = trace.usage
        yield Event("usage", usage.__dict__)
        trace.finish()
        yield Event(
            "done",
            AskResponse.model_validate(
                {
                    "request_id": trace.request_id,
                    "cache": cache,
                    "question": request.question,
                    "domain": domain,
                    "answer": answer,
                    "abstained": abstained,
                    "abstention_reason": reason,
                    "answerable": round(assessment.answerable, 4),
                    "signals": {name: round(value, 6) for name, value in assessment.features.items()},
                    "answerer": "none" if assessment.abstain else answerer.name,
                    "reranker": served,
                    "tuning": result.tuning,
                    "citations": [c.as_dict() for c in citations],
                    "dropped_citations": dropped,
                    "unsupported_citations": sum(not c.supported for c in citations),
                    "evidence": [item.as_dict() for item in evidence],
                    "routing": result.routing.as_dict() if result.routing else None,
                    "sql_error": result.sql_error,
                    "timings_ms": trace.timings(),
                    "usage": usage.__dict__,
                    "model_calls": [call.as_dict() for call in trace.model_calls],
                }
            ).model_dump(),
        )

    def _answer(
        self,
        request: AskRequest,
        evidence: Sequence[Evidence],
        assessment: Assessment,
        answerer: Answerer,
        trace: RequestTrace,
    ) -> Generator[Event, None, tuple[str, int, bool, str | None]]:
        """Token events; returns (answer, dropped citation numbers, abstained, reason)."""
        if assessment.abstain:
            text = f"I don't know: {assessment.reason}."
            yield from self._token(text, [], trace)
            return text, 0, True, assessment.reason
        markers = MarkerFilter({item.number for item in evidence})
        parts: list[str] = []
        # The start of the answer is held until it is clearly not the model's NOT_IN_CONTEXT reply.
        held, deciding = "", True
        with trace.stage("generate"):
            for delta in answerer.deltas(request.question, evidence, assessment, trace):
                text = markers.feed(delta)
                if deciding:
                    held += text
                    head = held.lstrip()[: len(NOT_IN_CONTEXT)]
                    if NOT_IN_CONTEXT.startswith(head) or head == NOT_IN_CONTEXT:
                        continue
                    text, held, deciding = held, "", False
                if text:
                    yield from self._token(text, parts, trace)
            tail = held + markers.flush()
        if says_not_in_context(tail):
            reason = tail.strip()[len(NOT_IN_CONTEXT) :].strip(" :.-") or "the evidence does not say"
            text = f"I don't know: {reason}."
            yield from self._token(text, parts, trace)
            return text, markers.dropped, True, reason
        if tail:
            yield from self._token(tail, parts, trace)
        answer, late = clean_markers("".join(parts).strip(), {item.number for item in evidence})
        if not answer:
            return answer, markers.dropped + late, True, "the answerer wrote no answer"
        return answer, markers.dropped + late, False, None

    @staticmethod
    def _token(text: str, parts: list[str], trace: RequestTrace) -> Iterator[Event]:
        if not parts:
            trace.add("ttft", (time.perf_counter() - trace.started) * 1000)
        parts.append(text)
        yield Event("token", {"text": text})

    def lexicon(self, domain_name: str) -> signals.Lexicon:
        keyword = self.searcher.keyword
        with self.searcher.pool.connection() as conn:
            index = keyword.current(conn, get_domain(conn, domain_name)).index
        return signals.Lexicon(keyword.analyzer, index.idf, index.max_idf or 1.0)


def _code(error: Exception) -> str:
    """snake_case of the error's class: ModelError -> model_error."""
    name = type(error).__name__
    return "".join(f"_{c.lower()}" if c.isupper() and i else c.lower() for i, c in enumerate(name))


def _replayed(
    cached: AskResponse, trace: RequestTrace, question: str, match: dict[str, Any]
) -> Iterator[Event]:
    """A stored answer's events, for this request: its id, question and timings, how it matched (`match`: the
    cache_* fields) and no usage (nothing was spent)."""
    trace.add("ttft", (time.perf_counter() - trace.started) * 1000)
    routing = cached.routing.model_dump() if cached.routing else None
    yield Event(
        "route",
        {"request_id": trace.request_id, "route": routing["route"] if routing else None, "routing": routing},
    )
    yield Event("evidence", {"evidence": [item.model_dump() for item in cached.evidence]})
    yield Event("token", {"text": cached.answer})
    for citation in cached.citations:
        yield Event("citation", citation.model_dump())
    usage = Usage()
    yield Event("usage", usage.__dict__)
    trace.finish()
    response = cached.model_copy(
        update={
            "request_id": trace.request_id,
            "cache": "hit",
            "question": question,
            "cached_question": cached.question,
            **match,
            "usage": UsageOut(**usage.__dict__),
            "model_calls": [],
            "timings_ms": trace.timings(),
        }
    )
    yield Event("done", response.model_dump())


def _reranker_name(reranker: Reranker) -> str:
    """The reranker and, for a trained one, the id of its stored decision (`rag-server rerankers list`)."""
    if getattr(reranker, "fell_back", False):  # it failed and the fused order served
        return f"{reranker.name} (failed)"
    stored = getattr(reranker, "reranker_id", None)
    return f"{reranker.name}#{stored}" if stored is not None else reranker.name
