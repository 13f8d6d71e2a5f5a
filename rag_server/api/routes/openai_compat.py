"""The OpenAI-compatible face of /v1/ask: `POST /v1/chat/completions` and `GET /v1/models` (a model is a domain).

An app written against the OpenAI SDK points `base_url` here and gets cited answers: the last user message is
the question, the answer is the assistant message. Citations, evidence and abstention ride along in one
documented extra field, `rag`, of the message (or of the final chunk when streaming). Streaming sends deltas,
never cumulative text; `stream_options.include_usage` adds a last chunk with the usage, as OpenAI does.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from itertools import chain
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from rag_server.api.auth import CallerDep, check_domain, visible
from rag_server.api.deps import PoolDep, SettingsDep
from rag_server.api.errors import ERROR_RESPONSES, request_id
from rag_server.api.metering import Meter, failed_status
from rag_server.api.routes.ask import observed
from rag_server.domains import list_domains
from rag_server.errors import RetrievalError
from rag_server.pipeline import AskRequest, AskResponse, Event, Pipeline
from rag_server.pipeline.quote import worst_case
from rag_server.pipeline.schemas import MAX_QUESTION_CHARS, CitationOut
from rag_server.trace import RequestTrace
from rag_server.validation import CleanStr

router = APIRouter(tags=["openai-compatible"])


class ContentPart(BaseModel):
    type: str
    text: CleanStr | None = None


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: CleanStr | list[ContentPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return " ".join(part.text or "" for part in self.content if part.type == "text")
        return self.content or ""


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """The subset of OpenAI's chat completion request that applies; other fields are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")

    model: CleanStr = Field(description="The domain to answer from.", min_length=1, max_length=200)
    messages: list[ChatMessage] = Field(min_length=1, max_length=100)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=8000)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=8000)

    def question(self) -> str:
        asked = next((m.text() for m in reversed(self.messages) if m.role == "user"), "").strip()
        if not asked:
            raise RetrievalError("the messages hold no user message with text: it is the question")
        if len(asked) > MAX_QUESTION_CHARS:
            raise RetrievalError(f"the question is longer than {MAX_QUESTION_CHARS} characters")
        return asked


class RagExtra(BaseModel):
    """What an answer carries beyond OpenAI's shape."""

    request_id: str
    abstained: bool
    abstention_reason: str | None
    answerable: float
    citations: list[CitationOut]
    route: str | None


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    rag: RagExtra


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop"] = "stop"


class PromptTokensDetails(BaseModel):
    cached_tokens: int


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: CompletionUsage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "rag-server"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


@router.get("/v1/models", responses=ERROR_RESPONSES)
async def models(pool: PoolDep, principal: CallerDep) -> ModelList:
    """The domains the key may use, as models to name in a chat completion."""

    def run() -> ModelList:
        with pool.connection() as conn:
            found = visible(principal, list_domains(conn))
        return ModelList(data=[ModelCard(id=d.name, created=int(d.created_at.timestamp())) for d in found])

    return await asyncio.to_thread(run)


@router.post(
    "/v1/chat/completions",
    response_model=ChatCompletion,
    responses={
        **ERROR_RESPONSES,
        200: {
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
            "description": "A completion.",
        },
    },
)
async def chat_completions(
    body: ChatCompletionRequest, request: Request, pool: PoolDep, settings: SettingsDep, principal: CallerDep
) -> Any:
    """A cited answer in OpenAI's chat completion shape (non-streaming unless `stream` is true)."""
    pipeline: Pipeline = request.app.state.pipeline
    trace = RequestTrace(request_id=request_id(request) or RequestTrace().request_id)
    ask = AskRequest(
        question=body.question(), domain=body.model, max_tokens=body.max_completion_tokens or body.max_tokens
    )
    await check_domain(pool, principal, body.model)
    meter = Meter(pool, principal, "chat_completions", body.model, trace, ask.question)
    quote = worst_case(
        settings, pipeline.searcher.model, ask.question, ask.max_tokens or settings.answer_max_tokens
    )
    await meter.open(quote.tokens, quote.usd)
    created = int(time.time())
    if not body.stream:
        try:
            answer = await asyncio.to_thread(pipeline.ask, ask, trace)
        except Exception as error:
            await meter.aclose(failed_status(error))
            raise
        request.app.state.metrics.observe_answer(answer)
        await meter.aclose(200, answer)
        return _completion(answer, body.model, created)
    events = meter.events(pipeline.events(ask, trace))
    first = await asyncio.to_thread(next, events)  # a request that cannot start is a plain 4xx
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    counted = observed(chain([first], events), request.app.state.metrics)
    chunks = _chunks(counted, body.model, created, trace.request_id, include_usage)
    return StreamingResponse(chunks, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def _completion(answer: AskResponse, model: str, created: int) -> ChatCompletion:
    message = AssistantMessage(content=answer.answer, rag=_extra(answer))
    return ChatCompletion(
        id=f"chatcmpl-{answer.request_id}",
        created=created,
        model=model,
        choices=[Choice(message=message)],
        usage=_usage(answer),
    )


def _extra(answer: AskResponse) -> RagExtra:
    return RagExtra(
        request_id=answer.request_id,
        abstained=answer.abstained,
        abstention_reason=answer.abstention_reason,
        answerable=answer.answerable,
        citations=answer.citations,
        route=answer.routing.route if answer.routing else None,
    )


def _usage(answer: AskResponse) -> CompletionUsage:
    usage = answer.usage
    return CompletionUsage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.prompt_tokens + usage.completion_tokens,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=usage.cached_prompt_tokens),
    )


def _chunks(
    events: Iterator[Event], model: str, created: int, rid: str, include_usage: bool
) -> Iterator[str]:
    """OpenAI's chunk stream: a role delta, content deltas, a final chunk with `rag`, the usage, [DONE]."""
    head = {"id": f"chatcmpl-{rid}", "object": "chat.completion.chunk", "created": created, "model": model}

    def data(payload: dict[str, Any]) -> str:
        return f"data: {json.dumps({**head, **payload}, ensure_ascii=False, default=str)}\n\n"

    yield data(
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
    )
    for event in events:
        if event.name == "token":
            delta = {"content": event.data["text"]}
            yield data({"choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
        elif event.name == "error":
            yield f"data: {json.dumps({'error': event.data})}\n\n"
            return
        elif event.name == "done":
            answer = AskResponse.model_validate(event.data)
            extra = _extra(answer).model_dump(mode="json")
            yield data({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "rag": extra})
            if include_usage:
                yield data({"choices": [], "usage": _usage(answer).model_dump()})
    yield "data: [DONE]\n\n"
