"""Whatever is sent, the API answers below 500: hypothesis throws arbitrary JSON at every field of every
endpoint, and schemathesis fuzzes the OpenAPI schema's operations (real app, real pool, real model)."""

from __future__ import annotations

import json
import math
import re
from typing import Any
from urllib.parse import quote

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag_server.api.app import create_app
from rag_server.config import Settings
from tests.api.conftest import SMALL_DOMAIN, LiveServer

# Text with what breaks naive servers mixed in: lone surrogates, NUL, control and non-BMP characters.
TEXT = st.text(
    alphabet=st.one_of(
        st.characters(), st.sampled_from(["\ud800", "\udfff", "\x00", "\x7f", "\U0001f600", "\n", '"', "\\"])
    ),
    max_size=40,
)
NUMBERS = st.one_of(
    st.integers(),
    st.integers(min_value=19, max_value=400).map(lambda digits: 10**digits),
    st.floats(allow_nan=False),
    st.sampled_from([math.inf, -math.inf, 1e308, -0.0, 2**63, -(2**63) - 1, -(10**400)]),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT)
JSON = st.recursive(
    SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(TEXT, children, max_size=4)),
    max_leaves=30,
)
# Deep nesting, beyond what a hand-written body would have (and beyond what Python's json parses): a marker
# that `_encode` replaces by that many nested arrays.
DEEP = st.integers(min_value=10, max_value=3000).map(lambda depth: f"@@deep{depth}@@")


def _encode(value: Any) -> bytes:
    """JSON as a client might send it: surrogates as \\u escapes, infinities as numbers that overflow."""
    text = json.dumps(value).replace("-Infinity", "-1e400").replace("Infinity", "1e400")
    text = re.sub(r'"@@deep(\d+)@@"', lambda match: "[" * int(match[1]) + "]" * int(match[1]), text)
    return text.encode()


def _field_value(good: Any) -> st.SearchStrategy[Any]:
    return st.one_of(st.just(good), JSON, DEEP)


SEARCH_BODIES = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "query": _field_value("refunds"),
            "domain": _field_value(SMALL_DOMAIN),
            "route": st.one_of(st.sampled_from(["keyword", "semantic", "hybrid", "sql", "auto"]), JSON),
            "k": _field_value(3),
            "filters": st.one_of(st.dictionaries(TEXT, JSON, max_size=3), JSON),
        },
    ),
    st.fixed_dictionaries(
        {"query": st.just("refunds")}, optional={"filters": st.dictionaries(TEXT, JSON, max_size=3)}
    ),
    st.fixed_dictionaries({"query": TEXT}),
    JSON,
    DEEP,
)


def _assert_no_5xx(response: Any) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if response.status_code >= 400:
        assert response.json()["error"]["message"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=SEARCH_BODIES)
def test_search_never_answers_5xx(small_client: TestClient, body: Any) -> None:
    response = small_client.post(
        "/v1/search", content=_encode(body), headers={"content-type": "application/json"}
    )
    _assert_no_5xx(response)


@settings(max_examples=100, deadline=None)
@given(
    domain=st.one_of(st.just(SMALL_DOMAIN), TEXT),
    limit=st.one_of(TEXT, NUMBERS),
    offset=st.one_of(TEXT, NUMBERS),
)
def test_documents_never_answer_5xx(small_client: TestClient, domain: str, limit: Any, offset: Any) -> None:
    path = quote(domain.encode("utf-8", "surrogatepass"), safe="") or "x"
    query = "&".join(
        f"{name}={quote(str(value).encode('utf-8', 'surrogatepass'), safe='')}"
        for name, value in [("limit", limit), ("offset", offset)]
    )
    _assert_no_5xx(small_client.get(f"/v1/domains/{path}/documents?{query}"))


@settings(max_examples=50, deadline=None)
@given(request_id=st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255), max_size=300))
def test_any_request_id_header_is_answered(small_client: TestClient, request_id: str) -> None:
    for path in ("/healthz", "/v1/domains"):
        response = small_client.get(path, headers={"X-Request-ID": request_id.encode("latin-1")})
        assert response.status_code == 200 and response.headers["X-Request-ID"]


# The schema as the app publishes it at /openapi.json (building it needs no database); the cases go over real
# HTTP to a uvicorn server on the small corpus.
schema = schemathesis.openapi.from_dict(create_app(Settings(_env_file=None)).openapi())


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_schemathesis_finds_no_5xx(case: Any, live_server: LiveServer) -> None:
    response = case.call(base_url=f"http://127.0.0.1:{live_server.port}", timeout=60)
    assert response.status_code < 500, (case.method, case.path, response.status_code, response.text[:500])
    if response.status_code >= 400:
        assert response.json()["error"]["code"]
