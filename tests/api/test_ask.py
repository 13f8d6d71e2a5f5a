"""POST /v1/ask over real HTTP: a cited answer as JSON, the same answer as SSE events in their order, an
abstention with its reason, and a 4xx (never a stream) for a request that cannot start."""

from __future__ import annotations

import json
from typing import Any

import httpx
from fastapi.testclient import TestClient

from tests.api.conftest import LiveServer


def _events(text: str) -> list[tuple[str, dict[str, Any]]]:
    """SSE frames as (event, data)."""
    frames = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        frames.append((lines["event"], json.loads(lines["data"])))
    return frames


def test_ask_answers_with_a_cited_answer(live_server: LiveServer) -> None:
    body = {"question": "Within how many days are refunds approved?", "route": "hybrid"}
    response = httpx.post(f"http://127.0.0.1:{live_server.port}/v1/ask", json=body, timeout=120)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert not answer["abstained"] and "14 days" in answer["answer"]
    assert answer["citations"][0]["document_id"] == "refunds.md"
    assert answer["request_id"] == response.headers["x-request-id"]
    assert {"embed", "rerank", "ttft", "total"} <= set(answer["timings_ms"])
    assert answer["usage"]["cost_usd"] == 0


def test_ask_streams_events_in_order(live_server: LiveServer) -> None:
    body = {"question": "Within how many days are refunds approved?", "route": "hybrid", "stream": True}
    with httpx.stream(
        "POST", f"http://127.0.0.1:{live_server.port}/v1/ask", json=body, timeout=120
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = _events(response.read().decode())
    names = [name for name, _ in events]
    assert names[:2] == ["route", "evidence"] and names[-2:] == ["usage", "done"]
    tokens = [data["text"] for name, data in events if name == "token"]
    citations = [data for name, data in events if name == "citation"]
    done = events[-1][1]
    assert tokens and "".join(tokens) == done["answer"]
    assert names.index("citation") > max(i for i, n in enumerate(names) if n == "token")
    assert citations == done["citations"]


def test_accept_header_asks_for_a_stream(live_server: LiveServer) -> None:
    response = httpx.post(
        f"http://127.0.0.1:{live_server.port}/v1/ask",
        json={"question": "When are invoices sent?"},
        headers={"accept": "text/event-stream"},
        timeout=120,
    )
    assert response.status_code == 200 and _events(response.text)[-1][0] == "done"


def test_a_request_that_cannot_start_is_a_4xx_not_a_stream(small_client: TestClient) -> None:
    missing = small_client.post("/v1/ask", json={"question": "anything", "domain": "nosuch", "stream": True})
    assert missing.status_code == 404 and missing.json()["error"]["code"]
    unknown_key = small_client.post("/v1/ask", json={"question": "refunds", "filters": {"nosuch": "x"}})
    assert unknown_key.status_code == 422 and "nosuch" in unknown_key.text
    empty = small_client.post("/v1/ask", json={"question": ""})
    assert empty.status_code == 422


def test_the_readme_questions_on_the_demo(client: TestClient) -> None:
    """What a new user asks first: a cited answer, and an abstention with a reason."""
    answered = client.post("/v1/ask", json={"question": "What does ERR-4013 mean?", "domain": "demo"}).json()
    assert not answered["abstained"] and answered["citations"]
    assert "err-4013" in answered["citations"][0]["document_id"]
    colour = client.post(
        "/v1/ask", json={"question": "What is the CEO's favourite colour?", "domain": "demo"}
    )
    abstained = colour.json()
    assert abstained["abstained"] and abstained["abstention_reason"]
    assert abstained["answer"].startswith("I don't know") and abstained["usage"]["model_calls"] == 0


def test_a_repeat_is_a_cache_hit_over_http(live_server: LiveServer) -> None:
    url = f"http://127.0.0.1:{live_server.port}/v1/ask"
    body = {"question": "When are invoices sent to customers?", "route": "hybrid"}
    first, again = (httpx.post(url, json=body, timeout=120).json() for _ in range(2))
    assert first["cache"] == "miss" and again["cache"] == "hit"
    assert again["answer"] == first["answer"] and again["request_id"] != first["request_id"]
