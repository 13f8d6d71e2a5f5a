"""The configured chat model (OpenAI or any compatible server) and what each call costs.

Every call returns a `ModelCall` with tokens, prompt-cache hits, latency and dollars, so that SQL generation,
routing and answering are counted the same way. `ChatModel` is the seam (a Protocol with `complete` and
`stream`); `OpenAIChatModel` is the one implementation, through the `openai` client. The API key is read from
the settings (the environment) and is never logged or put in an error message.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import openai

from rag_server.config import Settings
from rag_server.errors import ConfigError, ModelError
from rag_server.tokens import count_tokens

# Dollars per million tokens (input, cached input, output); other models are priced by RAG_MODEL_PRICES.
PRICES_PER_MTOK: dict[str, tuple[float, float, float]] = {
    "gpt-4o-mini": (0.15, 0.075, 0.60),
    "gpt-4o": (2.50, 1.25, 10.00),
    "gpt-4.1-mini": (0.40, 0.10, 1.60),
    "gpt-4.1-nano": (0.10, 0.025, 0.40),
    "gpt-4.1": (2.00, 0.50, 8.00),
}


@dataclass(frozen=True)
class ModelCall:
    """One call to the model: what for, tokens in and out, prompt-cache hits, latency and cost."""

    purpose: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    ms: float
    cost_usd: float
    # "provider" when the server reported usage, "tiktoken" when we counted it ourselves.
    counted_by: str = "provider"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ModelReply:
    text: str
    tool_arguments: str | None
    call: ModelCall


@dataclass
class ChatStream:
    """Text deltas as the model writes them; `call` (usage and cost) is set once the stream is exhausted.

    `ttft_ms` is the time to the first non-empty delta."""

    deltas: Iterator[str]
    call: ModelCall | None = None
    ttft_ms: float | None = None
    finish_reason: str | None = None
    _parts: list[str] = field(default_factory=list)

    def __iter__(self) -> Iterator[str]:
        return self.deltas


class ChatModel(Protocol):
    """What the router, the SQL route and the answerer need of a chat model."""

    model: str

    def complete(
        self,
        purpose: str,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        max_tokens: int = 800,
        stop: list[str] | None = None,
    ) -> ModelReply: ...

    def stream(
        self,
        purpose: str,
        messages: list[dict[str, Any]],
        max_tokens: int = 800,
        stop: list[str] | None = None,
    ) -> ChatStream: ...


def model_configured(settings: Settings) -> bool:
    """A model is used when a key or a compatible server's URL is set."""
    return settings.openai_api_key is not None or settings.openai_base_url is not None


class OpenAIChatModel:
    """The `openai` client, accounting for every call; retries 429/5xx with backoff (honouring Retry-After)."""

    def __init__(self, settings: Settings) -> None:
        if not model_configured(settings):
            raise ModelError(
                "no model configured: set OPENAI_API_KEY, or OPENAI_BASE_URL for a compatible server"
            )
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "not-needed"
        self.model = settings.openai_model
        self.price = price_of(settings)
        self.client = openai.OpenAI(
            api_key=key,
            base_url=settings.openai_base_url,
            timeout=settings.openai_timeout_s,
            max_retries=settings.openai_max_retries,
        )

    def complete(
        self,
        purpose: str,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        max_tokens: int = 800,
        stop: list[str] | None = None,
    ) -> ModelReply:
        """One chat completion at temperature 0; ModelError when the server fails or answers nothing."""
        started = time.perf_counter()
        extra: dict[str, Any] = {}
        if tools:
            extra["tools"] = tools
            extra["tool_choice"] = {"type": "function", "function": {"name": tools[0]["function"]["name"]}}
        if stop:
            extra["stop"] = stop
        try:
            response = self.client.chat.completions.create(
                model=self.model, messages=messages, temperature=0, max_tokens=max_tokens, **extra
            )
        except openai.OpenAIError as error:
            raise _model_error(purpose, error) from None
        ms = (time.perf_counter() - started) * 1000
        if not response.choices:
            raise ModelError(f"the model returned no choices for {purpose}")
        message = response.choices[0].message
        arguments = message.tool_calls[0].function.arguments if message.tool_calls else None
        text = message.content or ""
        return ModelReply(text, arguments, self._account(purpose, response.usage, ms, messages, text))

    def stream(
        self,
        purpose: str,
        messages: list[dict[str, Any]],
        max_tokens: int = 800,
        stop: list[str] | None = None,
    ) -> ChatStream:
        """Stream a completion; the connection is opened now (so a refused call fails here, not mid-answer)."""
        started = time.perf_counter()
        extra: dict[str, Any] = {"stop": stop} if stop else {}
        try:
            chunks = self.client.chat.completions.create(
                model=self.model,
                messages=messages,
                temperature=0,
                max_tokens=max_tokens,
                stream=True,
                stream_options={"include_usage": True},
                **extra,
            )
        except openai.OpenAIError as error:
            raise _model_error(purpose, error) from None
        result = ChatStream(iter(()))

        def deltas() -> Iterator[str]:
            usage = None
            parts: list[str] = []
            try:
                for chunk in chunks:
                    usage = chunk.usage or usage
                    for choice in chunk.choices:
                        text = choice.delta.content if choice.delta else None
                        if choice.finish_reason:
                            result.finish_reason = choice.finish_reason
                        if text:
                            if result.ttft_ms is None:
                                result.ttft_ms = (time.perf_counter() - started) * 1000
                            parts.append(text)
                            yield text
            except Exception as error:
                # Whatever the transport raises when a stream is cut (its HTTP library's own protocol error,
                # not always the client's) ends the answer with a clear ModelError, never a hang.
                raise _model_error(purpose, error) from None
            finally:
                ms = (time.perf_counter() - started) * 1000
                result.call = self._account(purpose, usage, ms, messages, "".join(parts))

        result.deltas = deltas()
        return result

    def _account(
        self, purpose: str, usage: Any, ms: float, messages: list[dict[str, Any]], reply: str
    ) -> ModelCall:
        """Usage as the provider reported it; counted with tiktoken when it reported none."""
        if usage is None or not getattr(usage, "prompt_tokens", None):
            prompt = sum(count_tokens(str(m.get("content") or ""), self.model) + 4 for m in messages)
            completion = count_tokens(reply, self.model)
            return ModelCall(
                purpose,
                self.model,
                prompt,
                completion,
                0,
                round(ms, 2),
                cost(self.price, prompt, 0, completion),
                "tiktoken",
            )
        prompt = getattr(usage, "prompt_tokens", 0) or 0
        completion = getattr(usage, "completion_tokens", 0) or 0
        details = getattr(usage, "prompt_tokens_details", None)
        cached = (getattr(details, "cached_tokens", 0) or 0) if details else 0
        return ModelCall(
            purpose,
            self.model,
            prompt,
            completion,
            cached,
            round(ms, 2),
            cost(self.price, prompt, cached, completion),
        )


def price_of(settings: Settings) -> tuple[float, float, float]:
    """The configured model's price per million tokens; ConfigError when it has none (never a silent 0)."""
    model = settings.openai_model
    if model in settings.model_prices:
        return settings.model_prices[model]
    for name, price in sorted(PRICES_PER_MTOK.items(), key=lambda item: -len(item[0])):
        if model.startswith(name):
            return price
    if settings.model_free:
        return (0.0, 0.0, 0.0)
    raise ConfigError(
        f"no price for model {model!r}: set RAG_MODEL_PRICES='{{\"{model}\": [input, cached, output]}}' "
        "(dollars per million tokens), or RAG_MODEL_FREE=1 for a server you run yourself"
    )


def cost(
    price: tuple[float, float, float], prompt_tokens: int, cached_tokens: int, completion_tokens: int
) -> float:
    """Dollars for one call at the given prices per million tokens (input, cached input, output)."""
    fresh = max(prompt_tokens - cached_tokens, 0)
    return round((fresh * price[0] + cached_tokens * price[1] + completion_tokens * price[2]) / 1e6, 8)


def _model_error(purpose: str, error: Exception) -> ModelError:
    return ModelError(f"the model call for {purpose} failed: {type(error).__name__}: {_short(error)}")


def _short(error: Exception) -> str:
    return str(error).splitlines()[0][:300] if str(error) else "no detail"
