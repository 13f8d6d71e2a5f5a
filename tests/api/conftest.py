"""The API's fixtures: the real app over a real pool, on a database holding a small corpus or the demo."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi.testclient import TestClient

from ingest.pipeline import Ingestion, IngestOptions
from rag_server.api.app import SERVER_OPTIONS, create_app
from rag_server.config import Settings
from rag_server.db import open_pool
from rag_server.demo import DEMO_DOMAIN, corpus_dir
from rag_server.embedding import SentenceTransformerEmbedder
from rag_server.retrieval.analyzer import Analyzer

SMALL_DOMAIN = "small"


def ingest(settings: Settings, embedder: SentenceTransformerEmbedder, root: Path, domain: str) -> None:
    """Ingest the files under `root` into `domain`."""
    with open_pool(settings) as pool:
        options = IngestOptions.from_settings(settings)
        Ingestion(pool, embedder, Analyzer(), options).run([root], domain)


@pytest.fixture(scope="module")
def client(module_settings: Settings, embedder: SentenceTransformerEmbedder) -> Iterator[TestClient]:
    """The app over a database holding the demo corpus in domain 'demo'."""
    ingest(module_settings, embedder, corpus_dir(), DEMO_DOMAIN)
    with TestClient(create_app(module_settings)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def small_client(
    module_settings: Settings, embedder: SentenceTransformerEmbedder, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    """The app over a database holding three small documents in domain 'small' (quick to ingest)."""
    root = tmp_path_factory.mktemp("small")
    (root / "refunds.md").write_text("# Refunds\n\nRefunds are approved within 14 days of a request.\n")
    (root / "errors.md").write_text("# ERR-4012\n\nERR-4012 means the API token has expired.\n")
    (root / "notes.txt").write_text("Invoices are sent on the first day of each month.\n")
    ingest(module_settings, embedder, root, SMALL_DOMAIN)
    settings = module_settings.model_copy(update={"default_domain": SMALL_DOMAIN})
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


class LiveServer:
    """The app served by uvicorn on a loopback port, in a thread, as `rag-server serve` runs it."""

    def __init__(self, settings: Settings) -> None:
        config = uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=0, log_level="warning", **SERVER_OPTIONS
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        return self

    @property
    def port(self) -> int:
        return self.server.servers[0].sockets[0].getsockname()[1]

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture(scope="module")
def live_server(small_client: TestClient, module_settings: Settings) -> Iterator[LiveServer]:
    """A real HTTP server on the database of `small_client`."""
    settings = module_settings.model_copy(update={"default_domain": SMALL_DOMAIN})
    with LiveServer(settings) as server:
        yield server
