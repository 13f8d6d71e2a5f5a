"""Bad and oversized input gets a 4xx with a reason, never a 500 or a reset: over the test client and over
a real uvicorn server on loopback."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from rag_server.api.errors import MAX_ECHO_CHARS
from rag_server.api.guard import MAX_URL_BYTES
from rag_server.config import Settings
from tests.api.conftest import SMALL_DOMAIN, LiveServer

# Raw bodies: the escapes reach the server as sent (a JSON encoder would refuse or rewrite them).
BAD_BODIES = [
    pytest.param(b'{"query": "a\\ud800b"}', "query", id="surrogate-in-query"),
    pytest.param(b'{"query": "a\\u0000b"}', "query", id="nul-in-query"),
    pytest.param(b'{"query": "x", "domain": "a\\ud800"}', "domain", id="surrogate-in-domain"),
    pytest.param(b'{"query": "x", "domain": "a\\u0000"}', "domain", id="nul-in-domain"),
    pytest.param(b'{"query": "x", "filters": {"format": "a\\u0000"}}', "filters", id="nul-in-filter-value"),
    pytest.param(
        b'{"query": "x", "filters": {"format": ["\\udfff"]}}', "filters", id="surrogate-in-filter-list"
    ),
    pytest.param(b'{"query": "x", "filters": {"a\\u0000": 1}}', "filters", id="nul-in-filter-key"),
    pytest.param(b'{"query": "x", "k": 1e400}', "k", id="k-overflows-to-infinity"),
    pytest.param(b'{"query": "x", "k": -1e400}', "k", id="k-minus-infinity"),
    pytest.param(b'{"query": "x", "k": 1e20}', "k", id="k-huge"),
    pytest.param(b'{"query": "x", "\\ud800": 1}', "\\ud800", id="surrogate-as-unknown-field"),
    pytest.param(b'{"query": "x", "filters": {"f": 1e400}}', "filters", id="infinite-filter-value"),
    pytest.param(
        b'{"query": "x", "filters": ' + b'{"a": ' * 50 + b"1" + b"}" * 51, "filters", id="deep-filter"
    ),
    pytest.param(b"[" * 100_000 + b"]" * 100_000, "", id="nesting-beyond-the-parser"),
    pytest.param(b'{"query": "\xff\xfe"}', "", id="invalid-utf8"),
]


@pytest.mark.parametrize(("body", "field"), BAD_BODIES)
def test_bad_bodies_get_a_4xx_naming_the_field(small_client: TestClient, body: bytes, field: str) -> None:
    response = small_client.post("/v1/search", content=body, headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500, response.text
    error = response.json()["error"]
    assert error["message"] and field in response.text


@pytest.mark.parametrize(
    "path",
    [
        "/v1/domains/a%00b/documents",
        "/v1/domains/a%ED%A0%80b/documents",
        "/v1/domains/small/documents?offset=1e400",
        "/v1/domains/small/documents?offset=99999999999999999999999",
        "/v1/domains/small/documents?limit=%00",
    ],
)
def test_bad_paths_and_queries_get_a_4xx(small_client: TestClient, path: str) -> None:
    response = small_client.get(path)
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"]["message"]


def test_a_422_echoes_only_a_short_prefix_of_the_value(small_client: TestClient) -> None:
    response = small_client.post("/v1/search", json={"query": "q" * 4001})
    assert response.status_code == 422
    detail = response.json()["error"]["details"][0]
    assert detail["loc"] == ["body", "query"] and detail["input"].startswith("qqq")
    assert len(detail["input"]) <= MAX_ECHO_CHARS + 3 and len(response.content) < 1000
    nested = small_client.post("/v1/search", json={"query": "x", "k": ["k" * 10_000]})
    assert nested.status_code == 422 and len(nested.content) < 1000


def test_body_limit_is_a_413_with_a_reason(small_client: TestClient) -> None:
    limit = small_client.app.state.settings.max_body_bytes  # type: ignore[attr-defined]
    assert limit == 1024 * 1024
    response = small_client.post("/v1/search", json={"query": "x", "filters": {"f": "v" * limit}})
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "body_too_large" and "RAG_MAX_BODY_BYTES" in error["message"]
    assert small_client.post("/v1/search", json={"query": "refunds", "k": 1}).status_code == 200


def test_max_body_bytes_must_be_positive() -> None:
    for bad in (0, -1):
        with pytest.raises(ValidationError, match="max_body_bytes"):
            Settings(max_body_bytes=bad, _env_file=None)


def _raw_request(port: int, request: bytes) -> bytes:
    """Send `request` as is and read the whole reply (the server closes after an error)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(request)
        reply = b""
        while chunk := conn.recv(65536):
            reply += chunk
            if b"\r\n\r\n" in reply:
                head, _, body = reply.partition(b"\r\n\r\n")
                length = [
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                ]
                if length and len(body) >= length[0]:
                    break
    return reply


def test_a_1mb_url_is_a_414_over_real_http(live_server: LiveServer) -> None:
    url = b"/v1/domains/small/documents?x=" + b"a" * 1_000_000
    reply = _raw_request(
        live_server.port, b"GET " + url + b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    assert reply.startswith(b"HTTP/1.1 414"), reply[:300]
    assert (
        b'"uri_too_long"' in reply
        and str(MAX_URL_BYTES).encode() in reply
        and b"x-request-id" in reply.lower()
    )
    short = httpx.get(
        f"http://127.0.0.1:{live_server.port}/v1/domains/small/documents?x=" + "a" * 1000, timeout=30
    )
    assert short.status_code == 200


def test_a_chunked_body_over_the_limit_is_a_413_over_real_http(live_server: LiveServer) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"query": "x", "filters": {"f": "'
        for _ in range(40):
            yield b"v" * 65536
        yield b'"}}'

    response = httpx.post(
        f"http://127.0.0.1:{live_server.port}/v1/search",
        content=chunks(),
        headers={"content-type": "application/json", "X-Request-ID": "chunked-1"},
        timeout=30,
    )
    assert response.status_code == 413 and response.json()["error"]["code"] == "body_too_large"
    assert response.headers["X-Request-ID"] == "chunked-1" == response.json()["error"]["request_id"]
    fine = httpx.post(
        f"http://127.0.0.1:{live_server.port}/v1/search", json={"query": "refunds", "k": 1}, timeout=60
    )
    assert fine.status_code == 200 and fine.json()["results"][0]["external_id"] == "refunds.md"


def test_a_surrogate_over_real_http_is_a_422(live_server: LiveServer) -> None:
    response = httpx.post(
        f"http://127.0.0.1:{live_server.port}/v1/search",
        content=b'{"query": "a\\ud800b", "domain": "' + SMALL_DOMAIN.encode() + b'"}',
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 422 and "query" in response.json()["error"]["message"]
