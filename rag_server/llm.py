"""The configured chat model (OpenAI or any compatible server) and what each call costs.

Every call returns a `ModelCall` with tokens, prompt-cache hits, latency and dollars, so that SQL generation,
routing and answering are counted the same way. The API key is read from the settings (the environment) and is
never logged or put in an error message.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import openai

from rag_server.config import Settings
from rag_server.errors import ModelError

# Dollars per million tokens (input, cached input, output); unknown models cost what the settings say.
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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ModelReply:
    text: str
    tool_arguments: str | None
    call: ModelCall


def model_configured(settings: Settings) -> bool:
    """A model is used when a key or a compatible server's URL is set."""
    return settings.openai_api_key is not None or settings.openai_base_url is not None


class ChatModel:
    """A thin wrapper over the `openai` client that accounts for every call."""

    def __init__(self, settings: Settings) -> None:
        if not model_configured(settings):
            raise ModelError(
                "no model configured: set OPENAI_API_KEY, or OPENAI_BASE_URL for a compatible server"
            )
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "not-needed"
        self.model = settings.openai_model
        self.client = openai.OpenAI(
            api_key=key, base_url=settings.openai_base_url, timeout=settings.openai_timeout_s, max_retries=1
        )

    def complete(
        self,
        purpose: str,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        max_tokens: int = 800,
    ) -> ModelReply:
        """One chat completion at temperature 0; ModelError when the server fails or answers nothing."""
        started = time.perf_counter()
        extra: dict[str, Any] = {}
        if tools:
            extra["tools"] = tools
            extra["tool_choice"] = {"type": "function", "function": {"name": tools[0]["function"]["name"]}}
        try:
            response = self.client.chat.completions.create(
                model=self.model, messages=messages, temperature=0, max_tokens=max_tokens, **extra
            )
        except openai.OpenAIError as error:
            raise ModelError(
                f"the model call for {purpose} failed: {type(error).__name__}: {_short(error)}"
            ) from None
        ms = (time.perf_counter() - started) * 1000
        if not response.choices:
            raise ModelError(f"the model returned no choices for {purpose}")
        message = response.choices[0].message
        arguments = message.tool_calls[0].function.arguments if message.tool_calls else None
        return ModelReply(message.content or "", arguments, self._account(purpose, response, ms))

    def _account(self, purpose: str, response: Any, ms: float) -> ModelCall:
        usage = response.usage
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
            cost(self.model, prompt, cached, completion),
        )


def cost(model: str, prompt_tokens: int, cached_tokens: int, completion_tokens: int) -> float:
    """Dollars for one call at list prices (0 for models we have no price for, e.g. a local server)."""
    price = next(
        (
            p
            for name, p in sorted(PRICES_PER_MTOK.items(), key=lambda i: -len(i[0]))
            if model.startswith(name)
        ),
        None,
    )
    if price is None:
        return 0.0
    fresh = max(prompt_tokens - cached_tokens, 0)
    return round((fresh * price[0] + cached_tokens * price[1] + completion_tokens * price[2]) / 1e6, 8)


def _short(error: Exception) -> str:
    return str(error).splitlines()[0][:300] if str(error) else "no detail"
