"""Migrations, the embedded server's lifecycle, and embedding models of several dimensions side by side."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import psycopg
import pytest
from psycopg_pool import ConnectionPool

from rag_server.db import list_migrations, migrate
from rag_server.domains import HnswOptions, ensure_domain, ensure_embedding_model
from rag_server.errors import DatabaseError, EmbeddingModelMismatch
from tests.conftest import wait_until


def _applied(url: str) -> list[tuple[int, str]]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()


def test_migrations_apply_once_in_order(database_url: str) -> None:
    first = migrate(database_url)
    assert [m.version for m in first] == [m.version for m in list_migrations()]
    assert migrate(database_url) == []  # idempotent: nothing left to do
    assert _applied(database_url) == [(m.version, m.name) for m in list_migrations()]


def _migrate_in_process(url: str) -> int:
    return len(migrate(url))


def test_migrations_from_several_processes_at_once(database_url: str) -> None:
    with multiprocessing.get_context("spawn").Pool(4) as workers:
        counts = workers.map(_migrate_in_process, [database_url] * 4)
    # Exactly one process applied everything; the others waited on the lock and found nothing to do.
    assert sorted(counts) == [0, 0, 0, len(list_migrations())]
    assert len(_applied(database_url)) == len(list_migrations())


def test_a_failing_migration_leaves_nothing_behind(database_url: str, tmp_path: Path) -> None:
    (tmp_path / "001_good.sql").write_text("CREATE TABLE good (id int);")
    (tmp_path / "002_bad.sql").write_text("CREATE TABLE half (id int); SELECT no_such_function();")
    with pytest.raises(DatabaseError, match=r"002_bad\.sql"):
        migrate(database_url, tmp_path)
    with psycopg.connect(database_url) as conn:
        tables = {
            row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
    assert "good" in tables and "half" not in tables
    assert [version for version, _ in _applied(database_url)] == [1]


def test_misnamed_or_gapped_migrations_are_refused(tmp_path: Path) -> None:
    (tmp_path / "001_a.sql").write_text("")
    (tmp_path / "003_c.sql").write_text("")
    with pytest.raises(DatabaseError, match="without gaps"):
        list_migrations(tmp_path)
    (tmp_path / "2-b.sql").write_text("")
    with pytest.raises(DatabaseError, match="NNN_name"):
        list_migrations(tmp_path)


def test_models_of_other_dimensions_live_side_by_side(pool: ConnectionPool) -> None:
    with pool.connection() as conn:
        small = ensure_domain(conn, "small", "model-384", 384, HnswOptions())
        large = ensure_domain(conn, "large", "model-768", 768, HnswOptions())
        rng = np.random.default_rng(0)
        for domain, dim in ((small, 384), (large, 768)):
            conn.execute(
                "INSERT INTO documents (domain_id, external_id, source, content_hash, ingest_signature)"
                " VALUES (%s, 'doc', 'test', '\\x00', 'sig')",
                (domain.id,),
            )
            for ordinal in range(20):
                conn.execute(
                    "INSERT INTO chunks (document_id, domain_id, ordinal, text, token_count, embedding_model_id,"
                    " embedding) SELECT id, %s, %s, 't', 1, %s, %s FROM documents WHERE domain_id = %s",
                    (
                        domain.id,
                        ordinal,
                        domain.model.id,
                        rng.standard_normal(dim).astype(np.float32),
                        domain.id,
                    ),
                )
        indexes = {
            row[0] for row in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'chunks'")
        }
        assert {small.index_name(), large.index_name()} <= indexes
        with pytest.raises(EmbeddingModelMismatch, match="model-384"):
            ensure_domain(conn, "small", "model-768", 768, HnswOptions())
        with pytest.raises(EmbeddingModelMismatch, match="dimensions"):
            ensure_embedding_model(conn, "model-384", 512)


def test_each_domain_gets_its_own_index_and_older_databases_are_moved_to_them(
    database_url: str, tmp_path: Path
) -> None:
    """Before 004 a model had one HNSW index for all its domains, so a domain's search walked the others'
    neighbours; 004 gives every existing domain its own and drops the model's."""
    for migration in list_migrations()[:3]:
        (tmp_path / migration.path.name).write_text(migration.path.read_text())
    migrate(database_url, tmp_path)
    with psycopg.connect(database_url, autocommit=True) as conn:
        model_id = conn.execute(
            "INSERT INTO embedding_models (name, dimension) VALUES ('old-model', 3) RETURNING id"
        ).fetchone()[0]  # type: ignore[index]
        old_ids = [
            conn.execute(
                "INSERT INTO domains (name, embedding_model_id) VALUES (%s, %s) RETURNING id",
                (name, model_id),
            ).fetchone()[0]  # type: ignore[index]
            for name in ("old-a", "old-b")
        ]
        conn.execute(
            f"CREATE INDEX chunks_embedding_model_{model_id}_hnsw ON chunks USING hnsw"
            f" ((embedding::vector(3)) vector_cosine_ops) WHERE embedding_model_id = {model_id}"
        )
    migrate(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        indexes = {
            row[0] for row in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'chunks'")
        }
    assert {f"chunks_domain_{domain_id}_hnsw" for domain_id in old_ids} <= indexes
    assert not any(name.startswith("chunks_embedding_model_") for name in indexes)
    with psycopg.connect(database_url, autocommit=True) as conn:
        new = ensure_domain(conn, "new", "model-3", 3, HnswOptions())
        conn.execute("SET enable_sort = off")  # an empty table: any plan is cheap, ask for the ordered scan
        plan = "\n".join(
            row[0]
            for row in conn.execute(
                f"EXPLAIN SELECT id FROM chunks WHERE domain_id = {new.id}"
                " ORDER BY embedding::vector(3) <=> '[1,0,0]'::vector(3) LIMIT 5"
            )
        )
    assert new.index_name() in plan


EMBEDDED_CHILD = textwrap.dedent(
    """
    import faulthandler, signal, sys, time
    from pathlib import Path
    from rag_server.db import EmbeddedServer
    faulthandler.register(signal.SIGUSR1)  # the test asks for the stack of a child that does not exit
    # Ctrl-C raises KeyboardInterrupt even where the test runs in the background (`cmd &` ignores SIGINT).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    server = EmbeddedServer.attach(Path(sys.argv[1]))
    print(server.url, flush=True)
    time.sleep(600)
    """
)


def _postmaster_pid(pgdata: Path) -> int | None:
    pid_file = pgdata / "postmaster.pid"
    return int(pid_file.read_text().split()[0]) if pid_file.exists() else None


def _exits(process: subprocess.Popen[str], pgdata: Path, timeout: float = 60) -> None:
    """Wait for a child to exit; if it does not, fail with its stack and the server's log (a stop that hangs
    says why)."""
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGUSR1)
        time.sleep(1)
        process.kill()
        process.wait()
        stack = Path(f"{pgdata}.{process.pid}.stderr").read_text()
        log = (pgdata / "log").read_text()[-3000:] if (pgdata / "log").exists() else "(no log)"
        pytest.fail(f"the child did not exit in {timeout} s\n{stack}\nserver log:\n{log}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
def test_embedded_server_is_shared_and_stopped_by_its_last_user(data_dir: Path) -> None:
    pgdata = data_dir / "lifecycle" / "pgdata"

    def child() -> subprocess.Popen[str]:
        # stderr to a file, not a pipe nobody reads while the child runs
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        stderr = (pgdata.parent / "child.stderr").open("w")
        process = subprocess.Popen(
            [sys.executable, "-c", EMBEDDED_CHILD, str(pgdata)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        stderr.close()
        Path(stderr.name).rename(f"{pgdata}.{process.pid}.stderr")
        assert process.stdout is not None
        assert process.stdout.readline().startswith("postgresql://")
        return process

    first = child()
    postmaster = _postmaster_pid(pgdata)
    assert postmaster and _pid_alive(postmaster)
    second = child()
    assert _postmaster_pid(pgdata) == postmaster  # attached, not a second server
    # The first user is killed without a chance to clean up: the server stays up for the second.
    first.kill()
    first.wait()
    assert _pid_alive(postmaster)
    # The second (and last) user is stopped politely: it stops the server.
    second.send_signal(signal.SIGTERM)
    _exits(second, pgdata)
    assert wait_until(lambda: not _pid_alive(postmaster))
    # A new user starts it again on the same data.
    third = child()
    assert _postmaster_pid(pgdata) not in (None, postmaster)
    third.send_signal(signal.SIGINT)
    _exits(third, pgdata)
