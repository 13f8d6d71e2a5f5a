"""Keys, projects, rate limits, budgets, usage and feedback over real HTTP, with auth on (the default).

Two projects: 'acme' owns domain 'small', 'other' owns 'secret'. Limits are counted in Postgres, so the rate
limit test runs two separate server processes on one database and fires at both at once."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from rag_server.config import Settings
from rag_server.db import open_pool
from rag_server.embedding import SentenceTransformerEmbedder
from rag_server.feedback import labels
from rag_server.keys import create_key
from rag_server.projects import assign_domain, create_project, get_project, set_budget
from tests.api.conftest import LiveServer, ingest
from tests.conftest import REPO, wait_until
from tests.scripted_llm import Fault, ScriptedLLM

ANSWER = "Refunds are approved within 14 days [1]."
MODEL = "scripted-priced"
PRICE = (1000.0, 100.0, 1000.0)
# The first search of a domain loads its router and index: minutes on a busy machine, not a hang.
HTTP = httpx.Client(timeout=180)  # dollars per million tokens: a request costs cents, its worst case dollars


@pytest.fixture(scope="module")
def world(
    module_settings: Settings, embedder: SentenceTransformerEmbedder, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """Two projects with a domain each, and keys: acme owner, acme reader, a reader of 'nothing', other owner."""
    root = tmp_path_factory.mktemp("auth")
    (root / "refunds.md").write_text("# Refunds\n\nRefunds are approved within 14 days of a request.\n")
    (root / "invoices.txt").write_text("Invoices are sent on the first day of each month.\n")
    secret = tmp_path_factory.mktemp("secret")
    (secret / "plans.md").write_text("# Plans\n\nThe secret launch is planned for March.\n")
    ingest(module_settings, embedder, root, "small")
    ingest(module_settings, embedder, secret, "secret")
    with open_pool(module_settings) as pool, pool.connection() as conn:
        acme, other = create_project(conn, "acme"), create_project(conn, "other")
        assign_domain(conn, "small", acme.id)
        assign_domain(conn, "secret", other.id)
        keys = {
            "owner": create_key(conn, "acme", "ci owner", "owner").key,
            "reader": create_key(conn, "acme", "ci reader", "reader").key,
            "narrow": create_key(conn, "acme", "narrow", "reader", domains=["elsewhere"]).key,
            "other": create_key(conn, "other", "other owner", "owner").key,
        }
    return {"keys": keys}


@pytest.fixture(scope="module")
def server(world: dict[str, Any], module_settings: Settings) -> Iterator[str]:
    settings = module_settings.model_copy(update={"auth_disabled": False, "default_domain": "small"})
    with LiveServer(settings) as live:
        yield f"http://127.0.0.1:{live.port}"


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_no_unknown_or_revoked_key_is_401(server: str, world: dict[str, Any]) -> None:
    body = {"query": "refunds", "domain": "small"}
    missing = HTTP.post(f"{server}/v1/search", json=body)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert missing.json()["error"]["code"] == "unauthenticated"
    assert HTTP.post(f"{server}/v1/search", json=body, headers=_auth("rk_made-up")).status_code == 401
    owner = _auth(world["keys"]["owner"])
    made = HTTP.post(f"{server}/v1/keys", json={"name": "short-lived"}, headers=owner)
    assert made.status_code == 201 and made.json()["key"].startswith("rk_")
    key = made.json()["key"]
    assert HTTP.post(f"{server}/v1/search", json=body, headers=_auth(key)).status_code == 200
    listed = HTTP.get(f"{server}/v1/keys", headers=owner).json()["keys"]
    assert all(entry["key"] is None for entry in listed) and key[:10] in {e["prefix"] for e in listed}
    assert HTTP.delete(f"{server}/v1/keys/{made.json()['id']}", headers=owner).json()["revoked_at"]
    revoked = HTTP.post(f"{server}/v1/search", json=body, headers=_auth(key))
    assert revoked.status_code == 401 and "revoked" in revoked.json()["error"]["message"]


def test_keys_are_stored_hashed(world: dict[str, Any], module_settings: Settings) -> None:
    key = world["keys"]["reader"]
    with psycopg.connect(module_settings.database_url.get_secret_value()) as conn:  # type: ignore[union-attr]
        stored = conn.execute("SELECT prefix, hash FROM api_keys").fetchall()
        dumped = " ".join(str(row) for row in conn.execute("SELECT * FROM api_keys").fetchall())
    assert key not in dumped and key[10:] not in dumped
    assert any(prefix == key[:10] for prefix, _ in stored)


def test_a_reader_may_ask_but_not_ingest_or_manage_keys(server: str, world: dict[str, Any]) -> None:
    reader = _auth(world["keys"]["reader"])
    asked = HTTP.post(
        f"{server}/v1/ask",
        json={"question": "Within how many days are refunds approved?"},
        headers=reader,
        timeout=60,
    )
    assert asked.status_code == 200 and "14 days" in asked.json()["answer"]
    documents = {"documents": [{"id": "new.md", "text": "A new policy."}]}
    refused = HTTP.post(f"{server}/v1/domains/small/documents", json=documents, headers=reader)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    assert "owner" in refused.json()["error"]["message"]
    assert HTTP.post(f"{server}/v1/keys", json={"name": "x"}, headers=reader).status_code == 403
    assert HTTP.delete(f"{server}/v1/domains/small/documents/refunds.md", headers=reader).status_code == 403


def test_domains_of_another_project_or_not_granted_are_403(server: str, world: dict[str, Any]) -> None:
    reader, narrow = _auth(world["keys"]["reader"]), _auth(world["keys"]["narrow"])
    other = HTTP.post(f"{server}/v1/search", json={"query": "launch", "domain": "secret"}, headers=reader)
    assert other.status_code == 403 and "not granted" in other.json()["error"]["message"]
    ask = {"question": "When is the launch?", "domain": "secret"}
    assert HTTP.post(f"{server}/v1/ask", json=ask, headers=reader).status_code == 403
    chat = {"model": "secret", "messages": [{"role": "user", "content": "When is the launch?"}]}
    assert HTTP.post(f"{server}/v1/chat/completions", json=chat, headers=reader).status_code == 403
    assert HTTP.get(f"{server}/v1/domains/secret/documents", headers=reader).status_code == 403
    assert HTTP.post(f"{server}/v1/search", json={"query": "refunds"}, headers=narrow).status_code == 403
    names = [d["name"] for d in HTTP.get(f"{server}/v1/domains", headers=reader).json()["domains"]]
    assert names == ["small"]
    assert HTTP.get(f"{server}/v1/domains", headers=narrow).json()["domains"] == []
    models = HTTP.get(f"{server}/v1/models", headers=_auth(world["keys"]["other"])).json()["data"]
    assert [m["id"] for m in models] == ["secret"]


def test_an_owner_ingests_into_its_project_and_a_cached_answer_is_missed_after(
    server: str, world: dict[str, Any]
) -> None:
    owner, reader = _auth(world["keys"]["owner"]), _auth(world["keys"]["reader"])
    documents = {
        "documents": [
            {"id": "shipping.md", "title": "Shipping", "text": "Orders ship within two business days."},
            {
                "id": "returns.md",
                "text": "Returns are accepted for 30 days.",
                "metadata": {"team": "support"},
            },
        ]
    }
    added = HTTP.post(f"{server}/v1/domains/fresh/documents", json=documents, headers=owner, timeout=120)
    assert added.status_code == 200, added.text
    assert added.json()["added"] == 2 and added.json()["chunks_embedded"] >= 2
    assert "fresh" in [d["name"] for d in HTTP.get(f"{server}/v1/domains", headers=reader).json()["domains"]]
    # Another project's owner cannot write into it, nor see it.
    other = HTTP.post(
        f"{server}/v1/domains/fresh/documents", json=documents, headers=_auth(world["keys"]["other"])
    )
    assert other.status_code == 403
    ask = {"question": "How fast do orders ship?", "domain": "fresh", "route": "hybrid"}
    first = HTTP.post(f"{server}/v1/ask", json=ask, headers=reader, timeout=60).json()
    again = HTTP.post(f"{server}/v1/ask", json=ask, headers=reader, timeout=60).json()
    assert (first["cache"], again["cache"]) == ("miss", "hit") and again["usage"]["cost_usd"] == 0
    update = {"documents": [{"id": "shipping.md", "text": "Orders ship within five business days."}]}
    assert (
        HTTP.post(f"{server}/v1/domains/fresh/documents", json=update, headers=owner, timeout=120).json()[
            "updated"
        ]
        == 1
    )
    after = HTTP.post(f"{server}/v1/ask", json=ask, headers=reader, timeout=60).json()
    assert after["cache"] == "miss" and "five" in after["answer"]
    gone = HTTP.delete(f"{server}/v1/domains/fresh/documents/returns.md", headers=owner)
    assert gone.status_code == 200 and gone.json()["deleted"]
    assert HTTP.delete(f"{server}/v1/domains/fresh/documents/returns.md", headers=owner).status_code == 404


def test_usage_by_day_and_route_and_feedback_on_a_request(
    server: str, world: dict[str, Any], module_settings: Settings
) -> None:
    reader, owner = _auth(world["keys"]["reader"]), _auth(world["keys"]["owner"])
    asked = HTTP.post(
        f"{server}/v1/ask",
        json={"question": "When are invoices sent?", "route": "keyword"},
        headers=reader,
        timeout=60,
    ).json()
    mine = HTTP.get(f"{server}/v1/usage", headers=reader).json()
    assert mine["project"] == "acme" and mine["totals"]["requests"] >= 1
    assert {row["key_id"] for row in mine["rows"]} == {mine["key_id"]}
    assert any(row["route"] == "keyword" for row in mine["rows"])
    assert set(mine["totals"]) >= {
        "prompt_tokens",
        "cached_tokens",
        "completion_tokens",
        "cost_usd",
        "cache_hits",
    }
    everyone = HTTP.get(f"{server}/v1/usage", headers=owner).json()
    assert everyone["totals"]["requests"] > mine["totals"]["requests"]
    assert HTTP.get(f"{server}/v1/usage", params={"key_id": 1}, headers=reader).status_code in {403}
    other = HTTP.get(f"{server}/v1/usage", headers=_auth(world["keys"]["other"])).json()
    assert other["project"] == "other" and other["totals"]["requests"] == 0

    rid = asked["request_id"]
    sent = HTTP.post(
        f"{server}/v1/feedback",
        json={"request_id": rid, "helpful": False, "comment": "wrong passage", "correct_evidence": [1]},
        headers=reader,
    )
    assert sent.status_code == 201 and sent.json()["id"] >= 1
    # Another project cannot comment on it; an evidence number the answer did not have is a 4xx.
    foreign = {"request_id": rid, "helpful": True}
    assert (
        HTTP.post(f"{server}/v1/feedback", json=foreign, headers=_auth(world["keys"]["other"])).status_code
        == 404
    )
    bad = {"request_id": rid, "helpful": True, "correct_evidence": [99]}
    assert HTTP.post(f"{server}/v1/feedback", json=bad, headers=reader).status_code == 400
    with open_pool(module_settings) as pool, pool.connection() as conn:
        found = labels(conn, "small")
    assert found.questions[rid] == "When are invoices sent?"
    assert found.qrels[rid] == {asked["evidence"][0]["document_id"]: 1}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _serve(settings: Settings, port: int) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "RAG_DATABASE_URL": settings.database_url.get_secret_value(),  # type: ignore[union-attr]
        "RAG_DATA_DIR": str(settings.data_dir),
        "RAG_DEFAULT_DOMAIN": "small",
        "RAG_AUTH_DISABLED": "0",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "rag_server", "serve", "--port", str(port)],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_rate_limit_holds_across_two_server_processes(
    world: dict[str, Any], module_settings: Settings
) -> None:
    with open_pool(module_settings) as pool, pool.connection() as conn:
        key = create_key(conn, "acme", "limited", "reader", requests_per_minute=6).key
    ports = [_free_port(), _free_port()]
    servers = [_serve(module_settings, port) for port in ports]
    try:
        assert wait_until(lambda: all(_healthy(port) for port in ports), timeout=180), "servers did not start"
        # Not across a minute's boundary: the windows are per minute.
        while time.gmtime().tm_sec > 45:
            time.sleep(1)

        def call(number: int) -> httpx.Response:
            port = ports[number % 2]
            return HTTP.get(f"http://127.0.0.1:{port}/v1/domains", headers=_auth(key), timeout=30)

        with concurrent.futures.ThreadPoolExecutor(16) as pool_:
            responses = list(pool_.map(call, range(16)))
    finally:
        for process in servers:
            process.send_signal(signal.SIGTERM)
        for process in servers:
            process.wait(timeout=30)
    statuses = sorted(response.status_code for response in responses)
    assert statuses.count(200) == 6 and statuses.count(429) == 10, statuses
    limited = [response for response in responses if response.status_code == 429]
    assert all(1 <= int(response.headers["retry-after"]) <= 60 for response in limited)
    assert "6 of 6 requests per minute" in limited[0].json()["error"]["message"]
    # Both processes refused some: the count is shared, not per process.
    assert {response.url.port for response in limited} == set(ports)


def _priced(settings: Settings, llm: ScriptedLLM) -> Settings:
    """Settings whose answers come from the scripted model, priced, with nothing else calling it."""
    return settings.model_copy(
        update={
            "auth_disabled": False,
            "default_domain": "small",
            "openai_base_url": llm.base_url,
            "openai_model": MODEL,
            "model_prices": {MODEL: PRICE},
            "answerer": "llm",
            "router_llm": "off",
            "sql_generator": "deterministic",
            "answer_cache": "off",
            "abstention": "never",
        }
    )


@pytest.fixture(scope="module")
def priced(world: dict[str, Any], module_settings: Settings) -> Iterator[tuple[str, ScriptedLLM]]:
    """A server whose answers come from a priced model (a scripted one on loopback)."""
    with ScriptedLLM(lambda body: ANSWER) as llm:
        settings = _priced(module_settings, llm)
        with LiveServer(settings) as live:
            yield f"http://127.0.0.1:{live.port}", llm


def _spend(settings: Settings, project: str) -> tuple[float, float, float]:
    """Spent and reserved this month, and the sum of the request log's costs."""
    with open_pool(settings) as pool, pool.connection() as conn:
        pid = get_project(conn, project).id
        row = conn.execute(
            "SELECT coalesce(sum(spent_usd), 0), coalesce(sum(reserved_usd), 0) FROM project_spend WHERE project_id = %s",
            (pid,),
        ).fetchone()
        logged = conn.execute(
            "SELECT coalesce(sum(cost_usd), 0) FROM requests WHERE project_id = %s", (pid,)
        ).fetchone()
    assert row is not None and logged is not None
    return float(row[0]), float(row[1]), float(logged[0])


def test_budget_holds_under_20_concurrent_requests(
    priced: tuple[str, ScriptedLLM], world: dict[str, Any], module_settings: Settings
) -> None:
    server, _ = priced
    with open_pool(module_settings) as pool, pool.connection() as conn:
        create_project(conn, "capped", budget_usd=10.0, alert=0.5)
        assign_domain(conn, "small", get_project(conn, "capped").id)
        key = create_key(conn, "capped", "spender", "reader").key
    try:

        def ask(number: int) -> httpx.Response:
            body = {"question": f"Within how many days are refunds approved? ({number})", "route": "hybrid"}
            return HTTP.post(f"{server}/v1/ask", json=body, headers=_auth(key), timeout=120)

        with concurrent.futures.ThreadPoolExecutor(20) as pool_:
            responses = list(pool_.map(ask, range(20)))
        statuses = [response.status_code for response in responses]
        assert set(statuses) == {200, 402} and statuses.count(200) >= 2, statuses
        refusal = next(response for response in responses if response.status_code == 402).json()["error"]
        assert refusal["code"] == "budget_exceeded" and "budget" in refusal["message"]
        spent, reserved, logged = _spend(module_settings, "capped")
        assert 0 < spent <= 10.0 and reserved == 0
        assert abs(spent - logged) < 1e-6
        assert (
            abs(spent - sum(r.json()["usage"]["cost_usd"] for r in responses if r.status_code == 200)) < 1e-6
        )
        # Near the line, usage says so; past it, every priced request is refused.
        with open_pool(module_settings) as pool, pool.connection() as conn:
            set_budget(conn, "capped", spent + 0.01)
        usage = HTTP.get(f"{server}/v1/usage", headers=_auth(key)).json()["budget"]
        assert usage["alert"] and usage["budget_usd"] == pytest.approx(spent + 0.01)
        assert ask(99).status_code == 402
        metrics = HTTP.get(f"{server}/metrics").text
        assert 'rag_budget_alert{project="capped"} 1.0' in metrics
        assert 'rag_errors_total{code="budget_exceeded"}' in metrics
    finally:
        with open_pool(module_settings) as pool, pool.connection() as conn:
            assign_domain(conn, "small", get_project(conn, "acme").id)


def test_a_client_that_disconnects_is_settled_to_what_was_spent(
    world: dict[str, Any], module_settings: Settings
) -> None:
    slow = (
        "Refunds are approved within 14 days of a request, as the policy says in its first section [1]. " * 8
    )
    with ScriptedLLM(lambda body: slow, faults=[Fault(sleep=0.5)]) as llm:
        settings = _priced(module_settings, llm)
        with LiveServer(settings) as live:
            body = {
                "question": "Within how many days are refunds approved?",
                "route": "hybrid",
                "stream": True,
            }
            url = f"http://127.0.0.1:{live.port}/v1/ask"
            with httpx.stream(
                "POST", url, json=body, headers=_auth(world["keys"]["reader"]), timeout=60
            ) as response:
                rid = response.headers["x-request-id"]
                # Away after the first token: the model call is under way, its prompt is paid for.
                next(line for line in response.iter_lines() if line == "event: token")

            def settled() -> bool:
                with open_pool(module_settings) as pool, pool.connection() as conn:
                    row = conn.execute(
                        "SELECT status, cost_usd FROM requests WHERE id = %s", (rid,)
                    ).fetchone()
                return row is not None

            assert wait_until(settled, timeout=30), "the abandoned request was never settled"
    with open_pool(module_settings) as pool, pool.connection() as conn:
        status, cost = conn.execute("SELECT status, cost_usd FROM requests WHERE id = %s", (rid,)).fetchone()  # type: ignore[misc]
        reserved = conn.execute(
            "SELECT sum(reserved_usd) FROM project_spend WHERE project_id = %s",
            (get_project(conn, "acme").id,),
        ).fetchone()
    assert status == 499
    assert float(cost) > 0  # the prompt was sent: it is paid for
    assert reserved is not None and float(reserved[0] or 0) == 0
