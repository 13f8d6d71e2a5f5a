"""The ingestion pipeline against the embedded Postgres and the real embedding model."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pypdf
import pytest
from psycopg_pool import ConnectionPool

from ingest.pipeline import Ingestion, IngestOptions, IngestSummary
from rag_server.config import Settings
from rag_server.embedding import SentenceTransformerEmbedder
from rag_server.errors import IngestError
from rag_server.retrieval.analyzer import Analyzer
from tests.conftest import REPO, run_cli

DOMAIN = "kb"


def _ingestion(pool: ConnectionPool, embedder: SentenceTransformerEmbedder, **overrides: object) -> Ingestion:
    settings = Settings(_env_file=None)
    options = IngestOptions.from_settings(settings, **overrides)
    return Ingestion(pool, embedder, Analyzer(), options)


def _pdf(path: Path, text: str) -> None:
    # A one-page PDF with a text object, written by hand: pypdf reads it back.
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    path.write_bytes(bytes(out))
    assert "Refunds" in pypdf.PdfReader(path).pages[0].extract_text()


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """One document of every format, plus a BEIR folder."""
    root = tmp_path / "corpus"
    (root / "notes").mkdir(parents=True)
    (root / "notes" / "plain.txt").write_text("Plain text about password resets.\n\nA second paragraph.")
    (root / "guide.md").write_text(
        "# Guide\n\n## Install\n\nRun the installer.\n\n## Upgrade\n\nRun it again."
    )
    (root / "page.html").write_text(
        "<html><head><title>Page</title><style>p{color:red}</style></head>"
        "<body><p>Visible text about ERR-4012.</p><script>var hidden = 1;</script></body></html>"
    )
    _pdf(root / "policy.pdf", "Refunds are issued within 14 days.")
    (root / "records.jsonl").write_text(
        json.dumps({"id": "r1", "title": "One", "text": "First record."})
        + "\n"
        + json.dumps({"id": "r2", "text": "Second record."})
        + "\n"
    )
    beir = root / "beir"
    beir.mkdir()
    (beir / "corpus.jsonl").write_text(
        json.dumps({"_id": "b1", "title": "BEIR title", "text": "BEIR body."}) + "\n"
    )
    (beir / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "not a document"}) + "\n")
    return root


def _documents(pool: ConnectionPool) -> dict[str, tuple[int, int, str | None]]:
    with pool.connection() as conn:
        rows = conn.execute("SELECT external_id, id, chunk_count, title FROM documents ORDER BY external_id")
        return {external_id: (doc_id, count, title) for external_id, doc_id, count, title in rows}


def _chunk_texts(pool: ConnectionPool, external_id: str) -> list[str]:
    with pool.connection() as conn:
        rows = conn.execute(
            "SELECT c.text FROM chunks c JOIN documents d ON d.id = c.document_id"
            " WHERE d.external_id = %s ORDER BY c.ordinal",
            (external_id,),
        )
        return [row[0] for row in rows]


def test_every_format_lands_with_its_chunks(
    pool: ConnectionPool, embedder: SentenceTransformerEmbedder, corpus: Path
) -> None:
    summary = _ingestion(pool, embedder).run([corpus], DOMAIN)
    documents = _documents(pool)
    assert set(documents) == {"notes/plain.txt", "guide.md", "page.html", "policy.pdf", "r1", "r2", "b1"}
    assert summary.documents_added == 7 and summary.documents_failed == 0
    assert documents["b1"][2] == "BEIR title"
    assert documents["page.html"][2] == "Page"
    html = " ".join(_chunk_texts(pool, "page.html"))
    assert "ERR-4012" in html and "hidden" not in html and "color" not in html
    assert "Refunds are issued" in " ".join(_chunk_texts(pool, "policy.pdf"))
    # Markdown chunks keep their heading path.
    with pool.connection() as conn:
        paths = {
            tuple(row[0])
            for row in conn.execute(
                "SELECT heading_path FROM chunks c JOIN documents d ON d.id = c.document_id"
                " WHERE d.external_id = 'guide.md'"
            )
        }
        assert ("Guide", "Install") in paths or ("Guide",) in paths
        stored, expected = conn.execute(
            "SELECT count(*), (SELECT sum(chunk_count) FROM documents) FROM chunks"
        ).fetchone()  # type: ignore[misc]
        assert stored == expected == summary.chunks_written
        # Vectors are unit length (normalized) and keyword terms were analyzed at ingest.
        norm, terms = conn.execute(
            "SELECT vector_norm(embedding), terms FROM chunks c JOIN documents d ON d.id = c.document_id"
            " WHERE d.external_id = 'page.html'"
        ).fetchone()  # type: ignore[misc]
        assert abs(norm - 1.0) < 1e-4
        assert "err-4012" in terms


def test_reingest_unchanged_computes_no_embeddings(
    pool: ConnectionPool, embedder: SentenceTransformerEmbedder, corpus: Path
) -> None:
    first = _ingestion(pool, embedder).run([corpus], DOMAIN)
    before = _documents(pool)
    second = _ingestion(pool, embedder).run([corpus], DOMAIN)
    assert second.chunks_embedded == 0 and second.chunks_written == 0
    assert second.documents_unchanged == first.documents_added == 7
    assert _documents(pool) == before


def test_changed_document_is_replaced_whole(
    pool: ConnectionPool, embedder: SentenceTransformerEmbedder, corpus: Path
) -> None:
    _ingestion(pool, embedder).run([corpus], DOMAIN)
    before = _documents(pool)
    (corpus / "notes" / "plain.txt").write_text("Completely new text about invoices and billing cycles.")
    summary = _ingestion(pool, embedder).run([corpus], DOMAIN)
    assert (summary.documents_updated, summary.documents_unchanged, summary.documents_added) == (1, 6, 0)
    after = _documents(pool)
    assert after["notes/plain.txt"][0] == before["notes/plain.txt"][0]  # same document, new chunks
    texts = _chunk_texts(pool, "notes/plain.txt")
    assert len(texts) == after["notes/plain.txt"][1] == summary.chunks_written
    assert all("password" not in text for text in texts) and "invoices" in texts[0]


def test_changed_chunking_reprocesses(
    pool: ConnectionPool, embedder: SentenceTransformerEmbedder, corpus: Path
) -> None:
    _ingestion(pool, embedder).run([corpus], DOMAIN)
    summary = _ingestion(pool, embedder, chunker="fixed", chunk_size=32, chunk_overlap=0).run(
        [corpus], DOMAIN
    )
    assert summary.documents_updated == 7 and summary.chunks_embedded > 0


def test_prune_removes_documents_no_longer_present(
    pool: ConnectionPool, embedder: SentenceTransformerEmbedder, corpus: Path
) -> None:
    _ingestion(pool, embedder).run([corpus], DOMAIN)
    (corpus / "guide.md").unlink()
    kept = _ingestion(pool, embedder).run([corpus], DOMAIN)
    assert kept.documents_pruned == 0 and "guide.md" in _documents(pool)  # no --prune: kept
    pruned = _ingestion(pool, embedder, prune=True).run([corpus], DOMAIN)
    assert pruned.documents_pruned == 1
    assert "guide.md" not in _documents(pool) and len(_documents(pool)) == 6


def test_prune_keeps_documents_of_files_that_failed(
    pool: ConnectionPool, embedder: SentenceTransformerEmbedder, corpus: Path
) -> None:
    _ingestion(pool, embedder).run([corpus], DOMAIN)
    (corpus / "records.jsonl").write_text('{"id": "r1", "text": "First record."}\n{broken json\n')
    summary = _ingestion(pool, embedder, prune=True).run([corpus], DOMAIN)
    assert summary.documents_failed == 1
    # r2 was not seen this time, but its file failed to load: a broken file must not delete documents.
    assert {"r1", "r2"} <= set(_documents(pool))


def test_bad_files_are_reported_and_skipped(
    pool: ConnectionPool, embedder: SentenceTransformerEmbedder, corpus: Path, tmp_path: Path
) -> None:
    (corpus / "empty.txt").write_text("")
    (corpus / "binary.txt").write_bytes(b"\x00\x01\x02\xff" * 100)
    (corpus / "broken.pdf").write_bytes(b"%PDF-1.4 not really a pdf")
    (corpus / "bad.jsonl").write_text("{not json}\n")
    # In a folder, files of unknown types are not documents and are passed over; named explicitly, they fail.
    (corpus / "image.png").write_bytes(b"\x89PNG\r\n")
    (tmp_path / "named.png").write_bytes(b"\x89PNG\r\n")
    summary = _ingestion(pool, embedder).run([corpus, tmp_path / "named.png"], DOMAIN)
    reasons = {Path(error["path"]).name: error["reason"] for error in summary.errors}
    assert set(reasons) == {"empty.txt", "binary.txt", "broken.pdf", "bad.jsonl", "named.png"}
    assert reasons["empty.txt"] == "empty" and "JSON" in reasons["bad.jsonl"]
    assert reasons["named.png"] == "unsupported file type"
    assert summary.documents_failed == 5 and summary.documents_added == 7  # the rest landed
    with pool.connection() as conn:
        status, errors = conn.execute(
            "SELECT status, errors FROM ingestion_runs WHERE id = %s", (summary.run_id,)
        ).fetchone()  # type: ignore[misc]
    assert status == "finished" and len(errors) == 5
    with pool.connection() as conn:
        assert conn.execute("SELECT count(*) FROM documents").fetchone()[0] == 7  # type: ignore[index]


def test_a_document_id_given_twice_keeps_the_first_and_reports_the_second(
    pool: ConnectionPool, embedder: SentenceTransformerEmbedder, tmp_path: Path
) -> None:
    # One upload (POST .../documents writes one such file) or two files naming the same id.
    (tmp_path / "a.jsonl").write_text(
        '{"id": "dup", "text": "Refunds take five days."}\n{"id": "dup", "text": "Refunds take a year."}\n'
    )
    (tmp_path / "b.jsonl").write_text(
        '{"id": "dup", "text": "Never."}\n{"id": "other", "text": "Invoices."}\n'
    )
    summary = _ingestion(pool, embedder).run([tmp_path], DOMAIN)
    assert summary.documents_added == 2 and summary.documents_failed == 2
    assert all("'dup' again" in error["reason"] for error in summary.errors)
    assert _chunk_texts(pool, "dup") == ["Refunds take five days."]


def test_missing_path_is_an_error(
    pool: ConnectionPool, embedder: SentenceTransformerEmbedder, tmp_path: Path
) -> None:
    with pytest.raises(IngestError, match="no such file"):
        _ingestion(pool, embedder).run([tmp_path / "nope"], DOMAIN)


def test_memory_stays_bounded_by_batches(
    pool: ConnectionPool, embedder: SentenceTransformerEmbedder, tmp_path: Path
) -> None:
    # Many small batches: progress arrives batch by batch, not at the end.
    (tmp_path / "docs").mkdir()
    for number in range(40):
        (tmp_path / "docs" / f"{number:03}.txt").write_text(
            f"Document {number} talks about topic {number % 7}."
        )
    seen: list[int] = []

    def progress(summary: IngestSummary) -> None:
        seen.append(summary.chunks_written)

    summary = _ingestion(pool, embedder, batch_chunks=4).run([tmp_path / "docs"], DOMAIN, progress)
    assert summary.chunks_written == 40
    written = sorted(set(seen))
    assert len(written) >= 10 and written[-1] == 40


def _bulk_corpus(root: Path, count: int) -> None:
    root.mkdir()
    for number in range(count):
        body = " ".join(
            f"Paragraph {number}.{line} explains setting {number * 7 + line}." for line in range(6)
        )
        (root / f"doc-{number:04}.md").write_text(f"# Doc {number}\n\n{body}\n")


@pytest.mark.slow
def test_kill_mid_run_then_resume_loses_nothing_and_duplicates_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    corpus = tmp_path / "bulk"
    _bulk_corpus(corpus, 300)
    env = {"DATABASE_URL": settings.database_url.get_secret_value(), "RAG_INGEST_BATCH_CHUNKS": "8"}  # type: ignore[union-attr]
    args = [sys.executable, "-m", "rag_server", "ingest", str(corpus), "--domain", DOMAIN, "--json"]
    process = subprocess.Popen(
        args,
        env={**__import__("os").environ, **env},
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    url = env["DATABASE_URL"]

    import psycopg

    def committed() -> int:
        try:
            with psycopg.connect(url) as conn:
                return conn.execute("SELECT count(*) FROM documents").fetchone()[0]  # type: ignore[index]
        except psycopg.Error:
            return 0

    deadline = time.monotonic() + 240
    while committed() < 30 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait()
    partial = committed()
    assert 30 <= partial < 300, "the run should have been killed part-way"

    resumed = run_cli("ingest", str(corpus), "--domain", DOMAIN, "--json", env=env)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["documents_unchanged"] == partial
    assert summary["documents_added"] == 300 - partial
    with psycopg.connect(url) as conn:
        documents, chunks, expected, duplicates = conn.execute(
            """SELECT (SELECT count(*) FROM documents), (SELECT count(*) FROM chunks),
                      (SELECT sum(chunk_count) FROM documents),
                      (SELECT count(*) FROM (SELECT document_id, ordinal FROM chunks
                                             GROUP BY 1, 2 HAVING count(*) > 1) d)"""
        ).fetchone()  # type: ignore[misc]
        statuses = [row[0] for row in conn.execute("SELECT status FROM ingestion_runs ORDER BY id")]
    assert (documents, chunks, duplicates) == (300, expected, 0)
    assert statuses == ["interrupted", "finished"]


def test_record_titles_lead_their_first_chunk(
    pool: ConnectionPool, embedder: SentenceTransformerEmbedder, tmp_path: Path
) -> None:
    (tmp_path / "corpus.jsonl").write_text(
        json.dumps({"_id": "t1", "title": "Ada Lovelace", "text": "She wrote the first program."})
        + "\n"
        + json.dumps({"_id": "t2", "title": "Only a title", "text": ""})
        + "\n"
    )
    _ingestion(pool, embedder).run([tmp_path], DOMAIN)
    assert _chunk_texts(pool, "t1") == ["Ada Lovelace\n\nShe wrote the first program."]
    assert _chunk_texts(pool, "t2") == ["Only a title"]


@pytest.mark.parametrize("content", ["", "  \n\t\n"])
def test_a_file_emptied_since_the_last_run_is_removed_from_the_index(
    pool: ConnectionPool, embedder: SentenceTransformerEmbedder, corpus: Path, content: str
) -> None:
    _ingestion(pool, embedder).run([corpus], DOMAIN)
    assert "notes/plain.txt" in _documents(pool)
    (corpus / "notes" / "plain.txt").write_text(content)

    summary = _ingestion(pool, embedder).run([corpus], DOMAIN)

    assert "notes/plain.txt" not in _documents(pool) and len(_documents(pool)) == 6
    assert (summary.documents_removed, summary.documents_failed, summary.documents_unchanged) == (1, 0, 6)
    assert summary.removed == [{"path": str(corpus / "notes" / "plain.txt"), "reason": "now empty"}]
    with pool.connection() as conn:
        left = conn.execute("SELECT count(*) FROM chunks WHERE text LIKE '%password resets%'").fetchone()
    assert left == (0,)
    # A file that was empty all along is still a failure: there was nothing to remove.
    (corpus / "new-empty.txt").write_text("")
    again = _ingestion(pool, embedder).run([corpus], DOMAIN)
    assert (again.documents_removed, again.documents_failed) == (0, 2)


def test_progress_moves_as_documents_are_read_and_chunks_embedded_before_the_first_commit(
    pool: ConnectionPool, embedder: SentenceTransformerEmbedder, tmp_path: Path
) -> None:
    (tmp_path / "docs").mkdir()
    count = 2 * embedder.batch_size + 10
    for number in range(count):
        # Of varied lengths: the chunks are embedded longest first, not in their order.
        sentence = f"Document {number} is about topic {number % 5}. "
        (tmp_path / "docs" / f"{number:03}.txt").write_text(sentence * (1 + number % 4))
    seen: list[tuple[int, int, int]] = []

    def progress(summary: IngestSummary) -> None:
        seen.append((summary.documents_processed, summary.chunks_embedded, summary.chunks_written))

    # One batch for the whole run: a single commit, at the end.
    summary = _ingestion(pool, embedder, batch_chunks=10_000).run([tmp_path / "docs"], DOMAIN, progress)

    before_commit = [(read, embedded) for read, embedded, written in seen if written == 0]
    embedded = sorted({embedded for _, embedded in before_commit if embedded})
    assert embedded == [embedder.batch_size, 2 * embedder.batch_size, count]  # one step per model batch
    assert max(read for read, _ in before_commit) == count
    assert seen[-1] == (count, count, count) and summary.chunks_written == count
    # Vectors went back to their own chunks although the chunks were embedded longest first.
    with pool.connection() as conn:
        rows = conn.execute(
            "SELECT c.text, c.embedding::text FROM chunks c JOIN documents d ON d.id = c.document_id"
            " WHERE d.external_id IN ('000.txt', '007.txt', '100.txt') ORDER BY d.external_id"
        ).fetchall()
    stored = np.array([json.loads(vector) for _, vector in rows])
    expected = embedder.embed([text for text, _ in rows])
    assert np.allclose(np.sum(stored * expected, axis=1), 1.0, atol=1e-4)


def test_a_plain_text_title_is_not_repeated_in_its_first_chunk(
    pool: ConnectionPool, embedder: SentenceTransformerEmbedder, tmp_path: Path
) -> None:
    long_line = " ".join(f"word{number}" for number in range(60))
    (tmp_path / "short.txt").write_text("Quarterly report\n\nRevenue grew.\n")
    (tmp_path / "long.txt").write_text(f"{long_line}\n\nBody.\n")
    _ingestion(pool, embedder).run([tmp_path], DOMAIN)
    documents = _documents(pool)
    assert documents["short.txt"][2] == "Quarterly report"
    assert documents["long.txt"][2].endswith("…")  # type: ignore[union-attr]
    assert _chunk_texts(pool, "short.txt")[0].startswith("Quarterly report\n\nRevenue")
    assert _chunk_texts(pool, "long.txt")[0].startswith(long_line)
