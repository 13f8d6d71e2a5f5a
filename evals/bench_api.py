"""`rag-server bench api`: the HTTP API under load next to the in-process cost of the same call.

The server is `rag-server serve --workers N`, started here as a process of its own over the domain; the load
comes from this process, over loopback (evals/loadgen.py, lighter than the server it measures): C clients (one
keep-alive connection each) send requests back to back, for a fixed number of requests or seconds a level,
whichever ends first, after one warm-up request a client.
Measured: `/v1/search` over the demo's questions, and `/v1/ask` of one question asked once to fill the answer
cache, then repeated (cache hits). Beside them, the same calls made in-process (`Searcher.search`,
`Pipeline.ask`): what HTTP, JSON and the workers add is the ratio of the two.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import httpx

from evals.loadgen import Connection, post_request
from evals.metrics import percentile
from rag_server.errors import RagError
from rag_server.pipeline import AskRequest, Pipeline
from rag_server.retrieval.search import Searcher
from rag_server.retrieval.types import SearchRequest

# What the API should reach on a developer machine (reported against, never asserted).
TARGETS = {"search_rps_at_8_clients": 150.0, "search_p95_ms_at_8_clients": 100.0, "ask_cached_p50_ms": 5.0}

SEARCH_K = 10
WARM_BODIES = 50


def request_headers(api_key: str | None = None) -> dict[str, str]:
    """The headers of every request the bench sends, with the API key when the server wants one."""
    headers = {"content-type": "application/json"}
    if api_key:
        headers["authorization"] = f"Bearer {api_key}"
    return headers


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def served_api(workers: int, env: dict[str, str] | None = None, startup_s: float = 300) -> Iterator[str]:
    """`rag-server serve --workers N` on a free loopback port, as its own process, until the block ends
    (then SIGTERM). Yields its base URL once /healthz answers."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "rag_server", "serve", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--workers", str(workers), "--no-demo"]
    environment = {**os.environ, "RAG_AUTH_DISABLED": "1", "RAG_LOG_LEVEL": "WARNING", **(env or {})}
    with tempfile.TemporaryFile(mode="w+") as log:
        process = subprocess.Popen(command, env=environment, stdout=log, stderr=subprocess.STDOUT, text=True)
        try:
            _wait_healthy(base_url, process, log, startup_s)
            yield base_url
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def _wait_healthy(base_url: str, process: subprocess.Popen[str], log: Any, startup_s: float) -> None:
    deadline = time.monotonic() + startup_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            raise RagError(f"the server exited with {process.returncode}: {log.read()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base_url}/healthz", timeout=5).status_code == 200:
                return
        time.sleep(0.5)
    raise RagError(f"the server did not answer /healthz within {startup_s:.0f} s")


def _stats(values: Sequence[float]) -> dict[str, float]:
    return {"p50": round(percentile(values, 50), 3), "p95": round(percentile(values, 95), 3)}


async def _level(
    base_url: str,
    path: str,
    bodies: Sequence[dict[str, Any]],
    clients: int,
    requests: int,
    seconds: float,
    headers: dict[str, str],
) -> dict[str, Any]:
    """`clients` concurrent clients posting `bodies` in turn to `path`, until `requests` are sent or
    `seconds` have passed."""
    host = base_url.split("://", 1)[1]
    prepared = [post_request(host, path, body, headers) for body in bodies]
    connections = await asyncio.gather(*(Connection.open(base_url) for _ in range(clients)))
    try:
        # Untimed first, each client sends each body (up to WARM_BODIES): connections open and every worker
        # has seen every request, its caches (query vectors, BM25 index, models) in the state steady traffic
        # keeps them in. (Connections are spread over the workers: one warm request a client left a worker
        # cold at 8 clients, and its first queries ran the model into the figures.)
        await asyncio.gather(*(_warm(conn, prepared[:WARM_BODIES]) for conn in connections))
        latencies: list[float] = []
        errors = 0
        hits = 0
        numbers = itertools.count()
        started = time.perf_counter()
        deadline = started + seconds

        async def one_client(conn: Connection) -> None:
            nonlocal errors, hits
            while (number := next(numbers)) < requests and time.perf_counter() < deadline:
                sent = time.perf_counter()
                reply = await conn.send(prepared[number % len(prepared)])
                latencies.append((time.perf_counter() - sent) * 1000)
                if reply.status != 200:
                    errors += 1
                elif path == "/v1/ask" and reply.json().get("cache") == "hit":
                    hits += 1

        await asyncio.gather(*(one_client(conn) for conn in connections))
        reopened = sum(conn.reopened for conn in connections)
        elapsed = time.perf_counter() - started
    finally:
        await asyncio.gather(*(conn.close() for conn in connections))
    figures: dict[str, Any] = {
        "clients": clients,
        "requests": len(latencies),
        "errors": errors,
        "connections_reopened": reopened,  # kept-alive ones the server closed while idle (warm-up)
        "seconds": round(elapsed, 3),
        "requests_per_s": round(len(latencies) / elapsed, 1),
        **{f"{name}_ms": value for name, value in _stats(latencies).items()},
    }
    if path == "/v1/ask":
        figures["cache_hit_share"] = round(hits / len(latencies), 3)
    return figures


async def _warm(conn: Connection, requests: Sequence[bytes]) -> None:
    for request in requests:
        await conn.send(request)


def _in_process(call: Callable[[int], object], count: int) -> dict[str, float]:
    call(0)  # warm
    latencies = []
    for number in range(count):
        started = time.perf_counter()
        call(number)
        latencies.append((time.perf_counter() - started) * 1000)
    return _stats(latencies)


def run_api_bench(
    base_url: str,
    searcher: Searcher,
    pipeline: Pipeline,
    domain: str,
    queries: Sequence[str],
    question: str,
    levels: Sequence[int] = (1, 8, 32),
    requests: int = 500,
    seconds: float = 20.0,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Both endpoints at each level of concurrent clients against the served API at `base_url`, and the same
    calls in-process; the figures as a JSON-ready dict."""
    headers = headers if headers is not None else request_headers()
    ask_body = {"question": question, "domain": domain}
    # Fill the answer cache (through the server: the entry is the one its workers read).
    filled = httpx.post(f"{base_url}/v1/ask", json=ask_body, headers=headers, timeout=300)
    if filled.status_code != 200:
        raise RagError(f"/v1/ask answered {filled.status_code}: {filled.text[:500]}")
    in_process_count = min(requests, 200)
    endpoints: dict[str, Any] = {
        "search": {
            "path": "/v1/search",
            "in_process_ms": _in_process(
                lambda n: searcher.search(SearchRequest(queries[n % len(queries)], domain, None, SEARCH_K)),
                in_process_count,
            ),
            "bodies": [{"query": query, "domain": domain, "k": SEARCH_K} for query in queries],
        },
        "ask_cached": {
            "path": "/v1/ask",
            "in_process_ms": _in_process(
                lambda n: pipeline.ask(AskRequest(question=question, domain=domain)), in_process_count
            ),
            "bodies": [ask_body],
        },
    }
    results: dict[str, Any] = {
        "domain": domain,
        "levels": list(levels),
        "requests_per_level": requests,
        "seconds_per_level": seconds,
        "queries": len(queries),
        "question": question,
        "cpus": os.cpu_count(),
        "load_average_before": [round(load, 2) for load in os.getloadavg()],
        "targets": TARGETS,
    }
    for name, endpoint in endpoints.items():
        bodies = endpoint.pop("bodies")
        endpoint["levels"] = _levels(base_url, endpoint["path"], bodies, levels, requests, seconds, headers)
        for figures in endpoint["levels"].values():
            in_process_p50 = endpoint["in_process_ms"]["p50"]
            figures["p50_over_in_process"] = (
                round(figures["p50_ms"] / in_process_p50, 2) if in_process_p50 else None
            )
        results[name] = endpoint
    results["load_average_after"] = [round(load, 2) for load in os.getloadavg()]
    results["against_targets"] = _against_targets(results)
    return results


def search_levels(
    base_url: str,
    domain: str,
    queries: Sequence[str],
    levels: Sequence[int],
    requests: int,
    seconds: float,
    headers: dict[str, str],
) -> dict[str, Any]:
    """`/v1/search` alone at each level (for a server started otherwise, e.g. without its query-vector cache)."""
    bodies = [{"query": query, "domain": domain, "k": SEARCH_K} for query in queries]
    return _levels(base_url, "/v1/search", bodies, levels, requests, seconds, headers)


def _levels(
    base_url: str,
    path: str,
    bodies: Sequence[dict[str, Any]],
    levels: Sequence[int],
    requests: int,
    seconds: float,
    headers: dict[str, str],
) -> dict[str, Any]:
    return {
        str(clients): asyncio.run(_level(base_url, path, bodies, clients, requests, seconds, headers))
        for clients in levels
    }


def _against_targets(results: dict[str, Any]) -> dict[str, Any]:
    """Each target with the figure measured (None where its level was not run) and whether it is met."""
    at_8 = results["search"]["levels"].get("8")
    ask = [level["p50_ms"] for level in results["ask_cached"]["levels"].values()]
    measured = {
        "search_rps_at_8_clients": at_8["requests_per_s"] if at_8 else None,
        "search_p95_ms_at_8_clients": at_8["p95_ms"] if at_8 else None,
        # At one client: the latency of a cached answer, not of a queue.
        "ask_cached_p50_ms": results["ask_cached"]["levels"]
        .get("1", {})
        .get("p50_ms", min(ask, default=None)),
    }
    met = {
        "search_rps_at_8_clients": lambda value: value >= TARGETS["search_rps_at_8_clients"],
        "search_p95_ms_at_8_clients": lambda value: value <= TARGETS["search_p95_ms_at_8_clients"],
        "ask_cached_p50_ms": lambda value: value <= TARGETS["ask_cached_p50_ms"],
    }
    return {
        name: {"target": TARGETS[name], "measured": value, "met": None if value is None else met[name](value)}
        for name, value in measured.items()
    }


def table(results: dict[str, Any]) -> str:
    """The figures as a text table, one row per endpoint and level."""
    rows = [
        f"{'endpoint':<16}{'clients':>8}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'in-proc p50':>13}{'ratio':>8}"
        f"{'errors':>8}"
    ]
    labels = {"search": "/v1/search", "search_uncached": "/v1/search *", "ask_cached": "/v1/ask cached"}
    for name, label in labels.items():
        endpoint = results.get(name)
        if endpoint is None:
            continue
        in_process = endpoint.get("in_process_ms", {}).get("p50")
        for clients, level in endpoint["levels"].items():
            ratio = level.get("p50_over_in_process")
            rows.append(
                f"{label:<16}{clients:>8}{level['requests_per_s']:>9.1f}{level['p50_ms']:>9.2f}"
                f"{level['p95_ms']:>9.2f}{in_process if in_process is not None else '-':>13}"
                f"{f'{ratio:.1f}x' if ratio else '-':>8}{level['errors']:>8}"
            )
    if "search_uncached" in results:
        rows.append(
            "* every query embedded again: the server's query-vector cache off (RAG_EMBEDDING_CACHE_SIZE=0)"
        )
    for name, figure in results["against_targets"].items():
        verdict = {True: "met", False: "NOT met", None: "not measured"}[figure["met"]]
        rows.append(f"target {name}: {figure['target']} -> {figure['measured']} ({verdict})")
    return "\n".join(rows)
