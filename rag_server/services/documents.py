"""Adding documents given as records (the API's upload) to a domain of a project."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from psycopg_pool import ConnectionPool

from ingest.pipeline import Ingestion, IngestSummary
from rag_server.config import Settings
from rag_server.domains import HnswOptions, ensure_domain


def add_documents(
    pool: ConnectionPool,
    settings: Settings,
    domain: str,
    records: Iterable[dict[str, Any]],
    batch: str,
    project_id: int | None = None,
) -> IngestSummary:
    """Chunk, embed and store records {id, text, title?, metadata?} in `domain` (created in `project_id` if new;
    a record whose id exists replaces that document). `batch` names the upload: it becomes the documents'
    source, so that two uploads never count as one file."""
    ingestion = Ingestion.from_settings(pool, settings)
    with pool.connection() as conn:
        ensure_domain(
            conn,
            domain,
            ingestion.embedder.name,
            ingestion.embedder.dimension,
            HnswOptions.from_settings(settings),
            project_id,
        )
    with tempfile.TemporaryDirectory(prefix="rag-upload-") as folder:
        # The JSON-lines loader reads them, as it reads any corpus: one document per line.
        path = Path(folder) / f"{batch}.jsonl"
        with path.open("w", encoding="utf-8") as out:
            for record in records:
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
        return ingestion.run([Path(folder)], domain)
