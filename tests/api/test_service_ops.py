"""Operations of `rag-server serve`: several worker processes over one database, JSON logs that keep no
secret, a graceful SIGTERM, CORS, and the per-request timeout (a 504, or an SSE `error` event once a stream
has started)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import httpx
import psutil
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from evals.loadgen import Connection
from rag_server.api.app import create_app
from rag_server.api.logs import JsonFormatter, RedactSecrets
from rag_server.config import Settings
from tests.api.conftest import SMALL_DOMAIN, LiveServer
from tests.conftest import REPO, wait_until
from tests.scripted_llm import Fault, ScriptedLLM

HEADER_KEY = "rk_HeaderSecret0123456789abcdefghijklmnop"
QUERY_KEY = "rk_QuerySecret0123456789abcdefghijklmnopq"
ANSWER = "Invoices are sent on the first day of each month [1]."
ALLOWED = "https://app.example.com"


def _model_settings(settings: Settings, llm: ScriptedLLM, **update: Any) -> Settings:
    """Settings whose answers come from the scripted model, called for every question (no abstention, no
    cache, no routing or SQL by the model)."""
    return settings.model_copy(
        update={
            "default_domain": SMALL_DOMAIN,
            "openai_base_url": llm.base_url,
            "abstention": "never",
            "answer_cache": "off",
            "router_llm": "off",
            "sql_generator": "deterministic",
            **update,
        }
    )


def _events(text: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


# --- CORS -----------------------------------------------------------------------------------------------


def test_cors_answers_a_listed_origin_and_refuses_another(
    small_client: TestClient, module_settings: Settings
) -> None:
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    settings = module_settings.model_copy(update={"cors_origins": [ALLOWED], "default_domain": SMALL_DOMAIN})
    with TestClient(create_app(settings)) as client:
        allowed = client.options("/v1/search", headers={"Origin": ALLOWED, **preflight})
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == ALLOWED
        assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
        refused = client.options("/v1/search", headers={"Origin": "https://evil.example", **preflight})
        assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers
        simple = client.post("/v1/search", json={"query": "refunds"}, headers={"Origin": ALLOWED})
        assert simple.status_code == 200 and simple.headers["access-control-allow-origin"] == ALLOWED
        assert "x-request-id" in simple.headers["access-control-expose-headers"].lower()
        other = client.post(
            "/v1/search", json={"query": "refunds"}, headers={"Origin": "https://evil.example"}
        )
        assert other.status_code == 200 and "access-control-allow-origin" not in other.headers
    # By default (no RAG_CORS_ORIGINS) no origin gets CORS headers.
    default = small_client.options("/v1/search", headers={"Origin": ALLOWED, **preflight})
    assert "access-control-allow-origin" not in default.headers


def test_cors_origins_are_read_as_a_list_and_checked() -> None:
    assert Settings(cors_origins=f"{ALLOWED}, http://localhost:3000", _env_file=None).cors_origins == [
        ALLOWED,
        "http://localhost:3000",
    ]
    assert Settings(cors_origins=f'["{ALLOWED}"]', _env_file=None).cors_origins == [ALLOWED]
    assert Settings(_env_file=None).cors_origins == []
    with pytest.raises(ValidationError, match="no origin"):
        Settings(cors_origins=f"{ALLOWED}/", _env_file=None)  # a trailing slash never matches a browser's


# --- the request timeout ---------------------------------------------------------------------------------


def test_a_request_past_the_timeout_gets_a_504_or_an_sse_error_event(
    small_client: TestClient, module_settings: Settings
) -> None:
    # The first search trains the built-in router (cached on disk): done here, with no limit, so that no
    # abandoned request is left training it when the limit answers first.
    assert small_client.post("/v1/search", json={"query": "invoices"}).status_code == 200
    with ScriptedLLM(lambda body: ANSWER, faults=[Fault(sleep=6.0)] * 2) as llm:
        settings = _model_settings(module_settings, llm, request_timeout_s=2.0)
        with LiveServer(settings) as server:
            base = f"http://127.0.0.1:{server.port}"
            # A request within the limit is untouched (the first may load models: given a few tries).
            assert wait_until(
                lambda: (
                    httpx.post(f"{base}/v1/search", json={"query": "invoices"}, timeout=30).status_code == 200
                ),
                timeout=60,
            )
            started = time.monotonic()
            response = httpx.post(f"{base}/v1/ask", json={"question": "When are invoices sent?"}, timeout=30)
            assert response.status_code == 504, response.text
            assert time.monotonic() - started < 5  # answered at the limit, not when the model is done
            error = response.json()["error"]
            assert error["code"] == "timeout" and "RAG_REQUEST_TIMEOUT_S" in error["message"]
            assert error["request_id"] == response.headers["x-request-id"]

            stream = httpx.post(
                f"{base}/v1/ask", json={"question": "When are invoices sent?", "stream": True}, timeout=30
            )
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            events = _events(stream.text)
            assert events[0][0] == "route" and "done" not in [name for name, _ in events]
            assert events[-1][0] == "error" and events[-1][1]["code"] == "timeout"
            assert events[-1][1]["request_id"] == stream.headers["x-request-id"]
            metrics = httpx.get(f"{base}/metrics", timeout=30).text
            assert 'rag_http_requests_total{endpoint="/v1/ask",method="POST",status="504"} 1.0' in metrics


def test_no_timeout_middleware_when_the_limit_is_zero(module_settings: Settings) -> None:
    from rag_server.api.timeout import RequestTimeout

    def middleware(settings: Settings) -> list[type]:
        return [entry.cls for entry in create_app(settings).user_middleware]  # type: ignore[misc]

    assert RequestTimeout in middleware(module_settings)
    assert RequestTimeout not in middleware(module_settings.model_copy(update={"request_timeout_s": 0}))


# --- logs ------------------------------------------------------------------------------------------------


def test_json_lines_mask_keys_even_in_a_message_or_a_traceback() -> None:
    handler = logging.Handler()
    handler.addFilter(RedactSecrets())
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "key %s refused", (HEADER_KEY,), None)
    try:
        raise RuntimeError(f"Authorization: Bearer {QUERY_KEY}")
    except RuntimeError:
        record.exc_info = sys.exc_info()
    assert handler.filter(record)
    line = json.loads(JsonFormatter().format(record))
    assert {"time", "level", "logger", "message"} <= line.keys() and line["level"] == "ERROR"
    assert line["message"] == "key rk_*** refused"
    assert "RuntimeError" in line["exception"]
    assert HEADER_KEY not in json.dumps(line) and QUERY_KEY not in json.dumps(line)


# --- several workers, JSON logs, graceful shutdown (a real `rag-server serve` process) -------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _workers(process: subprocess.Popen[str]) -> list[psutil.Process]:
    """The uvicorn worker processes of a `serve` process (multiprocessing's spawned children; its resource
    tracker is a child too, and is no worker). A worker that died and is not reaped yet is none either."""
    workers = []
    for child in psutil.Process(process.pid).children():
        with contextlib.suppress(psutil.NoSuchProcess):  # ZombieProcess is one
            if "spawn_main" in " ".join(child.cmdline()):
                workers.append(child)
    return workers


@pytest.mark.slow
def test_serve_runs_workers_logs_json_without_secrets_and_drains_on_sigterm(
    small_client: TestClient, module_settings: Settings
) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with ScriptedLLM(lambda body: ANSWER, faults=[Fault(sleep=4.0)]) as llm:
        env = {
            **os.environ,
            "DATABASE_URL": module_settings.database_url.get_secret_value(),  # type: ignore[union-attr]
            "RAG_DATA_DIR": str(module_settings.data_dir),
            "RAG_DEFAULT_DOMAIN": SMALL_DOMAIN,
            "RAG_LOG_FORMAT": "json",
            "RAG_AUTH_DISABLED": "1",
            "OPENAI_BASE_URL": llm.base_url,
            "RAG_ABSTENTION": "never",
            "RAG_ANSWER_CACHE": "off",
            "RAG_ROUTER_LLM": "off",
            "RAG_SQL_GENERATOR": "deterministic",
        }
        command = [sys.executable, "-m", "rag_server", "serve", "--workers", "2", "--port", str(port)]
        process = subprocess.Popen(
            command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:

            def healthy() -> bool:
                try:
                    return httpx.get(f"{base}/healthz", timeout=5).status_code == 200
                except httpx.HTTPError:
                    assert process.poll() is None, process.communicate()[1]
                    return False

            assert wait_until(healthy, timeout=240), "serve --workers 2 did not answer /healthz"
            assert wait_until(lambda: len(_workers(process)) == 2, timeout=60)
            worker_pids = {worker.pid for worker in _workers(process)}

            # A key in the header and key-like query values: neither may reach the logs.
            secret = {"Authorization": f"Bearer {HEADER_KEY}"}
            assert httpx.get(f"{base}/v1/domains?api_key={QUERY_KEY}", headers=secret, timeout=30).is_success
            search = httpx.post(
                f"{base}/v1/search?key={QUERY_KEY}&q=secret-value",
                json={"query": "refunds"},
                headers=secret,
                timeout=60,
            )
            assert search.status_code == 200, search.text

            # Eight kept-alive connections opened at once are spread over both workers (uvicorn's own
            # workers most often gave all eight to one).
            asyncio.run(_burst_of_connections(base, 8))

            # A worker that exits is started again. (SIGTERM: SIGKILL could cut its last access line.)
            killed = min(worker_pids)
            os.kill(killed, signal.SIGTERM)
            assert wait_until(
                lambda: len(_workers(process)) == 2 and killed not in {w.pid for w in _workers(process)},
                timeout=60,
            ), "the dead worker was not started again"
            replacement = {worker.pid for worker in _workers(process)} - worker_pids
            worker_pids |= replacement

            # A slow request in flight when SIGTERM comes still completes.
            outcome: dict[str, httpx.Response] = {}

            def ask() -> None:
                outcome["ask"] = httpx.post(
                    f"{base}/v1/ask", json={"question": "When are invoices sent?"}, timeout=60
                )

            asking = threading.Thread(target=ask)
            asking.start()
            assert wait_until(lambda: bool(llm.requests), timeout=60), "the ask never reached the model"
            process.send_signal(signal.SIGTERM)
            asking.join(timeout=60)
            assert outcome["ask"].status_code == 200, outcome["ask"].text
            assert "Invoices" in outcome["ask"].json()["answer"]
            _, stderr = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                # The workers too: left running, they would hold the pipes open and communicate() wait.
                for child in psutil.Process(process.pid).children(recursive=True):
                    child.kill()
                process.kill()
                process.communicate()
    assert process.returncode == 0, stderr[-3000:]
    assert HEADER_KEY not in stderr and QUERY_KEY not in stderr and "secret-value" not in stderr
    lines = [json.loads(line) for line in stderr.splitlines() if line.strip()]  # every line is JSON
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    access = [line for line in lines if line["logger"] == "rag_server.access"]
    by_path = {line["path"]: line for line in access}
    assert by_path["/v1/domains"]["status"] == 200 and by_path["/v1/search"]["method"] == "POST"
    assert by_path["/v1/ask"]["status"] == 200 and by_path["/v1/ask"]["duration_ms"] >= 3000
    assert all(line["request_id"] and "?" not in line["path"] for line in access)
    assert {line["pid"] for line in access} <= worker_pids
    burst = [
        line for line in access if line["path"] == "/healthz" and line["request_id"].startswith("burst-")
    ]
    assert len(burst) == 8 * 3
    assert {line["pid"] for line in burst} == worker_pids - replacement, "one worker took the whole burst"
    assert any(line["message"].startswith(f"worker {killed} exited") for line in lines)


async def _burst_of_connections(base: str, count: int) -> None:
    """`count` connections opened together, each sending three requests in turn (request ids burst-...)."""
    host = base.split("://", 1)[1]
    connections = await asyncio.gather(*(Connection.open(base) for _ in range(count)))
    try:
        for turn in range(3):
            requests = [
                f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nX-Request-ID: burst-{turn}-{number}\r\n\r\n".encode()
                for number in range(count)
            ]
            replies = await asyncio.gather(
                *(conn.send(r) for conn, r in zip(connections, requests, strict=True))
            )
            assert all(reply.status == 200 for reply in replies)
    finally:
        await asyncio.gather(*(conn.close() for conn in connections))
