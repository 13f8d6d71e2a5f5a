"""The HTTP API through FastAPI's test client (real app, real pool, real model)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from ingest.pipeline import Ingestion, IngestOptions
from rag_server.api.app import create_app
from rag_server.config import Settings
from rag_server.db import open_pool
from rag_server.demo import DEMO_DOMAIN, corpus_dir
from rag_server.embedding import SentenceTransformerEmbedder
from rag_server.retrieval.analyzer import Analyzer


@pytest.fixture(scope="module")
def client(module_settings: Settings, embedder: SentenceTransformerEmbedder) -> Iterator[TestClient]:
    with open_pool(module_settings) as pool:
        options = IngestOptions.from_settings(module_settings)
        Ingestion(pool, embedder, Analyzer(), options).run([corpus_dir()], DEMO_DOMAIN)
    with TestClient(create_app(module_settings)) as test_client:
        yield test_client


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


def test_domains_and_documents(client: TestClient) -> None:
    domains = client.get("/v1/domains").json()["domains"]
    assert [d["name"] for d in domains] == [DEMO_DOMAIN] and domains[0]["dimension"] == 384
    page = client.get(f"/v1/domains/{DEMO_DOMAIN}/documents", params={"limit": 5}).json()
    assert page["total"] == 40 and len(page["documents"]) == 5


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"query": "x", "domain": "missing"}, 404, "no domain"),
        ({"query": "x", "domain": DEMO_DOMAIN, "route": "psychic"}, 422, "route"),
        ({"query": "x", "domain": DEMO_DOMAIN, "k": 0}, 422, "k"),
        ({"query": "", "domain": DEMO_DOMAIN}, 422, "query"),
        ({"domain": DEMO_DOMAIN}, 422, "query"),
        ({"query": "x", "domain": DEMO_DOMAIN, "filters": [1, 2]}, 422, "filters"),
        ({"query": "x", "domain": DEMO_DOMAIN, "filter": {"format": "md"}}, 422, "filter"),
        ({"query": "   ", "domain": DEMO_DOMAIN}, 400, "empty"),
    ],
)
def test_bad_requests_get_a_4xx_with_a_reason(
    client: TestClient, body: dict, status: int, fragment: str
) -> None:
    response = client.post("/v1/search", json=body)
    assert response.status_code == status
    assert fragment in response.text


def test_unknown_domain_documents_is_404(client: TestClient) -> None:
    response = client.get("/v1/domains/nope/documents")
    assert response.status_code == 404 and "nope" in response.json()["detail"]
