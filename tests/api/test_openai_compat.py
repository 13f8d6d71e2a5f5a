"""/v1/chat/completions and /v1/models through the official `openai` client, over real HTTP."""

from __future__ import annotations

import openai
import pytest

from tests.api.conftest import SMALL_DOMAIN, LiveServer

QUESTION = "Within how many days are refunds approved?"


@pytest.fixture(scope="module")
def client(live_server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"http://127.0.0.1:{live_server.port}/v1", api_key="unused", max_retries=0)


def test_models_are_the_domains(client: openai.OpenAI) -> None:
    assert SMALL_DOMAIN in [model.id for model in client.models.list()]


def test_a_completion_is_a_cited_answer(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model=SMALL_DOMAIN,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": QUESTION}],
    )
    message = completion.choices[0].message
    assert "14 days" in (message.content or "") and completion.choices[0].finish_reason == "stop"
    extra = message.model_extra["rag"]  # type: ignore[index]
    assert extra["citations"][0]["document_id"] == "refunds.md" and not extra["abstained"]
    assert completion.usage is not None and completion.usage.total_tokens == 0  # offline: no model tokens


def test_streaming_sends_deltas_citations_last_and_usage_when_asked(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=SMALL_DOMAIN,
        messages=[{"role": "user", "content": QUESTION}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    text = "".join(deltas)
    assert "14 days" in text and all(len(d) <= len(text) for d in deltas)
    final = next(c for c in chunks if c.choices and c.choices[0].finish_reason == "stop")
    assert final.model_extra["rag"]["citations"][0]["document_id"] == "refunds.md"  # type: ignore[index]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None


def test_an_unknown_model_is_a_404_and_no_question_a_4xx(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nosuch", messages=[{"role": "user", "content": QUESTION}])
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=SMALL_DOMAIN, messages=[{"role": "system", "content": "hi"}])
