"""The command line as a user runs it: subprocesses, exit codes, output."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from rag_server.config import Settings
from tests.conftest import REPO, run_cli, wait_until


def _env(settings: Settings) -> dict[str, str]:
    return {"DATABASE_URL": settings.database_url.get_secret_value()}  # type: ignore[union-attr]


def test_config_masks_secrets() -> None:
    done = run_cli(
        "config",
        "--json",
        env={
            "OPENAI_API_KEY": "sk-very-secret",
            "DATABASE_URL": "postgresql://u:hunter2@db/x",
            "RAG_CHUNK_SIZE": "300",
        },
    )
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["openai_api_key"] == "***" and shown["database_url"] == "***" and shown["chunk_size"] == 300
    assert "sk-very-secret" not in done.stdout + done.stderr and "hunter2" not in done.stdout + done.stderr


def test_invalid_settings_are_one_clear_line() -> None:
    done = run_cli("config", env={"RAG_CHUNK_SIZE": "-5"})
    assert done.returncode == 2
    assert "RAG_CHUNK_SIZE" in done.stderr and "Traceback" not in done.stderr


def test_ingest_list_show_delete(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# Alpha\n\nAlpha text about refunds.\n")
    (tmp_path / "b.txt").write_text("Beta text about invoices.\n")
    (tmp_path / "empty.txt").write_text("")
    env = _env(settings)
    done = run_cli("ingest", str(tmp_path), "--domain", "cli", "--json", env=env)
    assert done.returncode == 1, done.stderr  # one file failed: the exit code says so
    summary = json.loads(done.stdout)
    for key in (
        "documents_added",
        "documents_updated",
        "documents_unchanged",
        "documents_failed",
        "chunks_written",
        "seconds",
    ):
        assert key in summary
    assert (summary["documents_added"], summary["documents_failed"]) == (2, 1)
    assert summary["errors"][0]["reason"] == "empty"

    listed = json.loads(run_cli("documents", "list", "--domain", "cli", "--json", env=env).stdout)
    assert listed["total"] == 2 and [d["external_id"] for d in listed["documents"]] == ["a.md", "b.txt"]
    shown = json.loads(
        run_cli("documents", "show", "a.md", "--domain", "cli", "--chunks", "--json", env=env).stdout
    )
    assert shown["title"] == "Alpha" and "refunds" in shown["chunks"][0]["text"]

    found = run_cli("search", "refunds", "--domain", "cli", "--route", "keyword", "--json", env=env)
    assert json.loads(found.stdout)["results"][0]["external_id"] == "a.md"

    assert run_cli("documents", "delete", "a.md", "--domain", "cli", env=env).returncode == 0
    missing = run_cli("documents", "show", "a.md", "--domain", "cli", env=env)
    assert (
        missing.returncode == 2
        and "no document 'a.md'" in missing.stderr
        and "Traceback" not in missing.stderr
    )


def test_a_skipped_file_is_reported_once(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "good.txt").write_text("Text about refunds.\n")
    (tmp_path / "empty.txt").write_text("")
    done = run_cli("ingest", str(tmp_path), "--domain", "cli", env=_env(settings))
    assert done.returncode == 1, done.stderr
    mentions = [line for line in done.stderr.splitlines() if "empty.txt" in line]
    assert mentions == [f"skipped {tmp_path / 'empty.txt'}: empty"], done.stderr
    assert "cli: 1 added" in done.stdout and "1 failed" in done.stdout
    assert "; 1 chunk in " in done.stdout  # not "1 chunks"


def test_ingest_reads_legacy_encodings_and_repaired_pdfs_quietly(settings: Settings, tmp_path: Path) -> None:
    from tests.ingest.test_pipeline import _pdf

    _pdf(tmp_path / "ok.pdf", "Refunds are issued within 14 days.")
    pdf = (tmp_path / "ok.pdf").read_bytes()
    # A wrong startxref offset: pypdf repairs it, with warnings that must not reach the terminal.
    (tmp_path / "ok.pdf").write_bytes(pdf[: pdf.rindex(b"startxref")] + b"startxref\n99\n%%EOF\n")
    (tmp_path / "latin.txt").write_bytes("Crème brûlée, naïve façade.\n".encode("cp1252"))
    (tmp_path / "wide.txt").write_bytes("Zoë’s résumé.\n".encode("utf-16"))
    env = _env(settings)

    done = run_cli("ingest", str(tmp_path), "--domain", "cli", env=env)

    assert done.returncode == 0, done.stderr
    assert "pypdf" not in done.stderr and "startxref" not in done.stderr, done.stderr
    assert "cli: 3 added" in done.stdout
    shown = json.loads(run_cli("documents", "show", "latin.txt", "--domain", "cli", "--json", env=env).stdout)
    assert shown["title"] == "Crème brûlée, naïve façade." and shown["metadata"]["encoding"] == "cp1252"


def test_a_file_emptied_since_the_last_run_leaves_the_index(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("Text about invoices.\n")
    (tmp_path / "gone.txt").write_text("Text about refunds.\n")
    env = _env(settings)
    assert run_cli("ingest", str(tmp_path), "--domain", "cli", env=env).returncode == 0
    (tmp_path / "gone.txt").write_text("")

    done = run_cli("ingest", str(tmp_path), "--domain", "cli", env=env)

    assert done.returncode == 0, done.stderr
    assert f"removed {tmp_path / 'gone.txt'} from the index: now empty" in done.stdout
    assert "1 removed (emptied)" in done.stdout
    listed = json.loads(run_cli("documents", "list", "--domain", "cli", "--json", env=env).stdout)
    assert [document["external_id"] for document in listed["documents"]] == ["keep.txt"]
    found = run_cli("search", "refunds", "--domain", "cli", "--route", "keyword", "--json", env=env)
    assert found.returncode == 0 and "gone.txt" not in found.stdout and "about refunds" not in found.stdout


def _ingest_on_a_terminal(settings: Settings, *args: str) -> tuple[int, str, str]:
    """Run `rag-server ingest ARGS` with stderr on a pseudo-terminal; returns (exit code, stdout, stderr)."""
    import fcntl
    import pty
    import struct
    import termios
    import threading

    leader, follower = pty.openpty()
    # A terminal 160 columns wide (a new pseudo-terminal has none, and tqdm would draw nothing).
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "rag_server", "ingest", *args],
        env={**os.environ, **_env(settings)},
        stdout=subprocess.PIPE,
        stderr=follower,
        cwd=REPO,
    )
    os.close(follower)
    seen = bytearray()

    def read() -> None:
        while True:
            try:
                data = os.read(leader, 4096)
            except OSError:  # EIO: the process closed its end
                return
            if not data:
                return
            seen.extend(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    stdout, _ = process.communicate(timeout=300)
    reader.join(timeout=10)
    os.close(leader)
    return process.returncode, stdout.decode(), seen.decode(errors="replace")


def test_ingest_on_a_terminal_shows_a_bar_of_documents_and_chunks_but_not_with_json(
    settings: Settings, tmp_path: Path
) -> None:
    for number in range(3):
        (tmp_path / f"{number}.txt").write_text(f"Document {number} about refunds.\n")
    code, stdout, stderr = _ingest_on_a_terminal(settings, str(tmp_path), "--domain", "cli")
    assert code == 0, stderr
    assert "3 doc" in stderr and "chunks embedded=3, committed=3" in stderr, stderr
    assert "cli: 3 added" in stdout

    (tmp_path / "3.txt").write_text("One more.\n")
    code, stdout, stderr = _ingest_on_a_terminal(settings, str(tmp_path), "--domain", "cli", "--json")
    assert code == 0, stderr
    assert "chunks embedded" not in stderr and " doc" not in stderr, stderr
    assert json.loads(stdout)["documents_added"] == 1


def test_usage_errors_are_clear(settings: Settings, tmp_path: Path) -> None:
    env = _env(settings)
    missing = run_cli("ingest", str(tmp_path / "nope"), "--domain", "cli", env=env)
    assert missing.returncode == 2 and "no such file" in missing.stderr
    bad_domain = run_cli("ingest", str(tmp_path), "--domain", "Bad Name!", env=env)
    assert bad_domain.returncode == 2 and "invalid domain name" in bad_domain.stderr
    bad_filter = run_cli("search", "x", "--domain", "cli", "--filter", "[1]", env=env)
    assert bad_filter.returncode == 2 and "--filter" in bad_filter.stderr


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_serve_demo_answers_without_a_domain_and_stops_on_sigterm(settings: Settings) -> None:
    port = _free_port()
    env = {**os.environ, **_env(settings), "RAG_DATA_DIR": str(settings.data_dir)}
    env.pop("RAG_DEFAULT_DOMAIN", None)
    env.pop("RAG_AUTH_DISABLED", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "rag_server", "serve", "--demo", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert server.poll() is None, server.communicate()[1]
        try:
            return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        assert wait_until(up, timeout=240), "the demo server did not come up"
        found = httpx.post(f"{base}/v1/search", json={"query": "ERR-4012", "route": "auto"}, timeout=60)
        assert found.status_code == 200, found.text
        body = found.json()
        assert body["route"] == "keyword" and body["results"]
        assert "ERR-4012" in body["results"][0]["text"]
    finally:
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=60)
    # uvicorn shuts down gracefully, then re-raises the signal it caught (exit status -SIGTERM).
    assert server.returncode in (0, -signal.SIGTERM), stderr
    assert "Application shutdown complete" in stderr and "Traceback" not in stderr
    assert f"localhost:{port}/v1/ask" in stderr  # the printed examples name the port it listens on
    assert "auth is off (loopback only)" in stderr  # the demo on loopback needs no key, and says so
    # The first run says what takes its minutes (a fresh database: the corpus is embedded, the router trained).
    for step in ("demo: ingesting", "chunks embedded", "demo: training the demo router"):
        assert step in stderr


def test_serve_refuses_auth_off_beyond_loopback_and_asks_for_keys_otherwise(settings: Settings) -> None:
    open_to_all = run_cli("serve", "--host", "0.0.0.0", env={**_env(settings), "RAG_AUTH_DISABLED": "1"})
    assert open_to_all.returncode != 0
    assert "RAG_AUTH_DISABLED is for a server on loopback only" in open_to_all.stderr
    demo_everywhere = run_cli(
        "serve", "--demo", "--host", "0.0.0.0", env={**_env(settings), "RAG_AUTH_DISABLED": "1"}
    )
    assert demo_everywhere.returncode != 0 and "keys create" in demo_everywhere.stderr


def test_keys_and_projects_from_the_command_line(settings: Settings) -> None:
    env = _env(settings)
    assert run_cli("projects", "create", "team", "--budget", "25", env=env).returncode == 0
    made = run_cli(
        "keys", "create", "--project", "team", "--name", "ci", "--role", "owner", "--rpm", "60", env=env
    )
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("rk_") and "shown once" in made.stderr
    listed = run_cli("keys", "list", "--project", "team", "--json", env=env)
    rows = json.loads(listed.stdout)
    assert [(r["name"], r["role"], r["requests_per_minute"], r["key"]) for r in rows] == [
        ("ci", "owner", 60, None)
    ]
    assert key not in listed.stdout and key[:10] == rows[0]["prefix"]
    assert run_cli("keys", "revoke", str(rows[0]["id"]), env=env).returncode == 0
    assert json.loads(run_cli("keys", "list", "--json", env=env).stdout)[0]["revoked_at"]
    budget = json.loads(run_cli("projects", "list", "--json", env=env).stdout)
    assert {"name": "team", "budget_usd": 25.0}.items() <= next(
        p for p in budget if p["name"] == "team"
    ).items()
    bad_role = run_cli("keys", "create", "--name", "x", "--role", "admin", env=env)
    assert bad_role.returncode != 0 and "unknown role" in bad_role.stderr
    unknown = run_cli("keys", "create", "--project", "nope", "--name", "x", env=env)
    assert unknown.returncode != 0 and "no project 'nope'" in unknown.stderr


def test_ask_streams_an_answer_and_prints_the_api_body_with_json(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "refunds.md").write_text("# Refunds\n\nAnnual plans are refunded in full within 30 days.\n")
    (tmp_path / "sso.md").write_text("# SSO\n\nSAML single sign-on works with Okta and Azure AD.\n")
    env = _env(settings)
    assert run_cli("ingest", str(tmp_path), "--domain", "ask", env=env).returncode == 0
    question = "Within how many days are annual plans refunded?"
    streamed = run_cli("ask", question, "--domain", "ask", "--route", "hybrid", env=env)
    assert streamed.returncode == 0, streamed.stderr
    assert "30 days" in streamed.stdout and "[1]" in streamed.stdout
    assert "refunds.md#0" in streamed.stderr  # the sources, after the answer
    as_json = run_cli("ask", question, "--domain", "ask", "--route", "hybrid", "--json", env=env)
    body = json.loads(as_json.stdout)
    assert body["citations"][0]["document_id"] == "refunds.md" and body["answer"] in streamed.stdout
    missing = run_cli("ask", question, "--domain", "nosuch", env=env)
    assert missing.returncode == 2 and "nosuch" in missing.stderr and "Traceback" not in missing.stderr
