"""The HTTP API through FastAPI's test client (real app, real pool, real model) on the demo corpus."""

from __future__ import annotations

import json
import re

import pytest
from fastapi.testclient import TestClient

from rag_server.api.schemas import SearchResponse
from rag_server.config import Settings
from rag_server.demo import DEMO_DOMAIN, corpus_dir
from tests.conftest import run_cli


def test_health(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json()["status"] == "ok"


def test_search_returns_ranked_chunks_and_timings(client: TestClient) -> None:
    response = client.post(
        "/v1/search", json={"query": "ERR-4029", "domain": DEMO_DOMAIN, "route": "keyword", "k": 3}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["route"] == "keyword" and "keyword" in body["timings_ms"]
    assert body["results"][0]["external_id"] == "errors/err-4029-api-rate-limit.md"
    assert len(body["results"]) == 3


def test_cli_search_json_is_the_http_response_model(client: TestClient, module_settings: Settings) -> None:
    query = {"query": "ERR-4029", "domain": DEMO_DOMAIN, "route": "keyword", "k": 2}
    http = client.post("/v1/search", json=query).json()
    env = {"DATABASE_URL": module_settings.database_url.get_secret_value()}  # type: ignore[union-attr]
    done = run_cli(
        "search", "ERR-4029", "--domain", DEMO_DOMAIN, "--route", "keyword", "-k", "2", "--json", env=env
    )
    assert done.returncode == 0, done.stderr
    cli = json.loads(done.stdout)
    assert set(cli) == set(http) == set(SearchResponse.model_fields)
    assert [r["chunk_id"] for r in cli["results"]] == [r["chunk_id"] for r in http["results"]]
    SearchResponse.model_validate(cli)


def test_domains_and_documents(client: TestClient) -> None:
    domains = client.get("/v1/domains").json()["domains"]
    assert [d["name"] for d in domains] == [DEMO_DOMAIN] and domains[0]["dimension"] == 384
    page = client.get(f"/v1/domains/{DEMO_DOMAIN}/documents", params={"limit": 5}).json()
    assert page["total"] == 40 and len(page["documents"]) == 5


def test_documents_name_no_server_path(client: TestClient) -> None:
    response = client.get(f"/v1/domains/{DEMO_DOMAIN}/documents", params={"limit": 1000})
    assert response.status_code == 200
    assert str(corpus_dir()) not in response.text
    documents = response.json()["documents"]
    assert len(documents) == 40
    for document in documents:
        # The demo's files are named by their path under the corpus folder, which is also their external id.
        assert document["source"] == document["external_id"] and not document["source"].startswith("/")


@pytest.mark.parametrize(
    ("body", "status", "code", "fragment"),
    [
        ({"query": "x", "domain": "missing"}, 404, "not_found", "no domain"),
        ({"query": "x", "domain": DEMO_DOMAIN, "route": "psychic"}, 422, "validation_error", "route"),
        ({"query": "x", "domain": DEMO_DOMAIN, "k": 0}, 422, "validation_error", "k"),
        ({"query": "", "domain": DEMO_DOMAIN}, 422, "validation_error", "query"),
        ({"domain": DEMO_DOMAIN}, 422, "validation_error", "query"),
        ({"query": "x", "domain": DEMO_DOMAIN, "filters": [1, 2]}, 422, "validation_error", "filters"),
        (
            {"query": "x", "domain": DEMO_DOMAIN, "filter": {"format": "md"}},
            422,
            "validation_error",
            "filter",
        ),
        ({"query": "   ", "domain": DEMO_DOMAIN}, 400, "retrieval_error", "empty"),
    ],
)
def test_bad_requests_get_a_4xx_with_a_reason(
    client: TestClient, body: dict, status: int, code: str, fragment: str
) -> None:
    response = client.post("/v1/search", json=body)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code and fragment in error["message"]


def test_unknown_domain_documents_is_404(client: TestClient) -> None:
    response = client.get("/v1/domains/nope/documents")
    assert response.status_code == 404 and "nope" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("POST", "/v1/search", {"query": "x", "domain": "nope"}, 404, "not_found"),
        ("POST", "/v1/search", {"query": 5}, 422, "validation_error"),
        ("GET", "/v1/domains/nope/documents", None, 404, "not_found"),
        ("GET", f"/v1/domains/{DEMO_DOMAIN}/documents?limit=0", None, 422, "validation_error"),
        ("GET", "/no/such/path", None, 404, "not_found"),
        ("GET", "/v1/search", None, 405, "method_not_allowed"),
    ],
)
def test_every_error_has_one_shape_and_the_request_id(
    client: TestClient, method: str, path: str, body: dict | None, status: int, code: str
) -> None:
    response = client.request(method, path, json=body, headers={"X-Request-ID": "req-123.abc"})
    assert response.status_code == status
    assert response.headers["X-Request-ID"] == "req-123.abc"
    payload = response.json()
    assert set(payload) == {"error"}
    error = payload["error"]
    assert set(error) == {"code", "message", "request_id", "details"}
    assert error["code"] == code and error["message"] and error["request_id"] == "req-123.abc"
    if code == "validation_error":
        assert error["details"] and {"loc", "msg", "type", "input"} <= set(error["details"][0])


def test_a_request_id_is_made_up_when_none_or_a_bad_one_is_sent(client: TestClient) -> None:
    first = client.get("/healthz").headers["X-Request-ID"]
    second = client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"}).headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", first) and re.fullmatch(r"[0-9a-f]{32}", second) and first != second


def test_every_rag_error_has_a_status_and_its_own_code() -> None:
    from rag_server import errors
    from rag_server.api.errors import status_and_code

    kinds = [v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, errors.RagError)]
    codes = {}
    for kind in kinds:
        error = kind.__new__(kind)
        status, code = status_and_code(error)
        assert 400 <= status < 600 and re.fullmatch(r"[a-z_]+", code)
        codes[code] = kind
    assert len(codes) == len(kinds)
    assert status_and_code(errors.NotFound("x")) == (404, "not_found")
    assert status_and_code(errors.SqlRejected("r", "d")) == (422, "sql_rejected")


def test_openapi_types_every_response(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert '"additionalProperties": true' not in json.dumps(spec)
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                schema = response["content"]["application/json"]["schema"]
                expected = "ErrorResponse" if status[0] in "45" else ""
                if (path, status) == ("/readyz", "503"):
                    expected = "Readiness"  # not ready says which check failed
                assert schema.get("$ref", "").startswith("#/components/schemas/"), (path, method, status)
                if expected:
                    assert schema["$ref"].endswith(expected), (path, method, status)


def test_unknown_filter_key_is_a_422_listing_the_known_keys(client: TestClient) -> None:
    response = client.post(
        "/v1/search", json={"query": "refund", "domain": DEMO_DOMAIN, "filters": {"nosuch": "x"}}
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "unknown_filter_key"
    assert "nosuch" in error["message"] and "format" in error["message"] and "path" in error["message"]
    assert error["details"][0]["loc"] == ["body", "filters", "nosuch"]
    known = client.post(
        "/v1/search", json={"query": "refund", "domain": DEMO_DOMAIN, "filters": {"format": "md"}}
    )
    assert known.status_code == 200 and known.json()["results"]


def test_cli_search_refuses_an_unknown_filter_key(client: TestClient, module_settings: Settings) -> None:
    env = {"DATABASE_URL": module_settings.database_url.get_secret_value()}  # type: ignore[union-attr]
    done = run_cli("search", "refund", "--domain", DEMO_DOMAIN, "--filter", '{"nosuch": 1}', env=env)
    assert done.returncode == 2
    assert "nosuch" in done.stderr and "format" in done.stderr and "Traceback" not in done.stderr


def test_docs_load_nothing_from_another_host(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200 and "swagger" in page.text.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page.text), page.text
    assert "cdn" not in page.text.lower()
    assets = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", page.text)
    assert len(assets) >= 3
    for asset in assets:
        assert client.get(asset).status_code == 200, asset
    assert "url: '/openapi.json'" in page.text and client.get("/openapi.json").status_code == 200
