"""`rag-server ingest PATH... --domain NAME`."""

from __future__ import annotations

import logging
import sys
import threading
import time
from pathlib import Path
from typing import Any

import typer
from tqdm import tqdm

from ingest.chunkers import CHUNKER_NAMES
from ingest.pipeline import Ingestion, IngestSummary, Progress
from ingest.tables import find_table_files, import_table_files, parse_type_overrides
from rag_server.cli._common import EXIT_PARTIAL, database, print_json, reports_errors, settings

log = logging.getLogger("rag_server.ingest")

# Without a terminal, a progress line at most this often; on one, the bar redrawn at most this often.
_LOG_EVERY_S = 10.0
_REFRESH_S = 0.2


@reports_errors
def ingest(
    paths: list[Path] = typer.Argument(..., help="Files or folders (walked recursively; BEIR folders too)."),
    domain: str = typer.Option(..., "--domain", "-d", help="The domain to ingest into (created if new)."),
    chunker: str = typer.Option(
        None, help=f"Chunker: auto (Markdown-aware for .md) or one of {', '.join(CHUNKER_NAMES)}."
    ),
    chunk_size: int = typer.Option(None, min=16, help="Chunk size in embedding-model tokens."),
    chunk_overlap: int = typer.Option(None, min=0, help="Overlap between chunks in tokens."),
    prune: bool = typer.Option(False, "--prune", help="Delete the domain's documents not found under PATHS."),
    tables_only: bool = typer.Option(
        False,
        "--tables",
        help="PATHS are tables only: import JSON-lines files as tables too, ingest no documents.",
    ),
    types: list[str] = typer.Option(
        [],
        "--type",
        help="Column type for imported tables, COLUMN=TYPE (repeatable), e.g. amount=numeric(12,2).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
) -> None:
    """Load, chunk, embed and store documents; import CSV/Parquet files (and JSON-lines with --tables) as tables.

    Unchanged documents are skipped and changed ones replaced; a table is replaced whole on re-import. A
    `catalog.json` beside table files adds descriptions and joins.
    """
    current = settings()
    if chunker is not None and chunker != "auto" and chunker not in CHUNKER_NAMES:
        raise typer.BadParameter(f"unknown chunker {chunker!r}; use auto, {', '.join(CHUNKER_NAMES)}")
    overrides = parse_type_overrides(types)
    table_files = find_table_files(paths, include_jsonl=tables_only)
    document_paths = [] if tables_only else [path for path in paths if path not in table_files]
    summary: IngestSummary | None = None
    with database(current) as pool:
        ingestion = Ingestion.from_settings(
            pool, current, chunker=chunker, chunk_size=chunk_size, chunk_overlap=chunk_overlap, prune=prune
        )
        if document_paths:
            with _progress(bar=sys.stderr.isatty() and not as_json) as progress:
                summary = ingestion.run(document_paths, domain, progress)
        tables = None
        if table_files:
            tables = import_table_files(pool, ingestion.domain(domain), table_files, overrides)
    report = {**(summary.as_dict() if summary else {}), **({"tables": tables} if tables else {})}
    if as_json:
        print_json(report)
    else:
        if summary:
            _print_summary(summary)
        if tables:
            _print_tables(tables)
    if (summary and summary.documents_failed) or (tables and tables["failed"]):
        raise typer.Exit(EXIT_PARTIAL)


def _print_tables(tables: dict[str, Any]) -> None:
    for failure in tables["failed"]:
        typer.echo(f"skipped {failure['path']}: {failure['reason']}", err=True)
    for table in tables["imported"]:
        typer.echo(
            f"table {table['table']}: {_count(table['rows'], 'row')}, {_count(len(table['columns']), 'column')}"
            f" from {table['source']}"
        )


class _progress:
    """A tqdm bar on stderr when `bar` (a terminal, no --json), a log line every few seconds otherwise.

    The bar counts documents as they are read; its postfix shows chunks as they are embedded and, beside
    them, as they are committed (a batch at a time).
    """

    def __init__(self, bar: bool) -> None:
        self.want_bar = bar
        self.bar: tqdm[None] | None = None
        self.started = self.last_shown = time.monotonic()
        # The pipeline reports from its loader, embedding and writer threads.
        self.lock = threading.Lock()

    def __enter__(self) -> Progress:
        if self.want_bar:
            self.bar = tqdm(desc="ingest", unit=" doc", dynamic_ncols=True, file=sys.stderr)
        return self.update

    def update(self, summary: IngestSummary) -> None:
        now = time.monotonic()
        with self.lock:
            if self.bar is not None:
                self.bar.n = summary.documents_processed
                self.bar.set_postfix_str(_postfix(summary), refresh=False)
                if now - self.last_shown >= _REFRESH_S:
                    self.last_shown = now
                    self.bar.refresh()
                return
            if now - self.last_shown >= _LOG_EVERY_S:
                self.last_shown = now
                log.info(
                    "%s read (%d unchanged, %d failed), %s embedded, %d committed, %.0f chunks/s",
                    _count(summary.documents_processed, "document"),
                    summary.documents_unchanged,
                    summary.documents_failed,
                    _count(summary.chunks_embedded, "chunk"),
                    summary.chunks_written,
                    summary.chunks_embedded / max(now - self.started, 1e-9),
                )

    def __exit__(self, *exc_info: object) -> None:
        if self.bar is not None:
            self.bar.refresh()
            self.bar.close()


def _postfix(summary: IngestSummary) -> str:
    failed = f", failed={summary.documents_failed}" if summary.documents_failed else ""
    return f"chunks embedded={summary.chunks_embedded}, committed={summary.chunks_written}{failed}"


def _count(number: int, noun: str) -> str:
    """`1 chunk`, `2 chunks`."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _print_summary(summary: IngestSummary) -> None:
    for error in summary.errors:
        typer.echo(f"skipped {error['path']}: {error['reason']}", err=True)
    for removed in summary.removed:
        typer.echo(f"removed {removed['path']} from the index: {removed['reason']}")
    rate = summary.chunks_written / summary.seconds if summary.seconds else 0.0
    # Emptied files are rare: their count is only shown when there are some.
    removed = f", {summary.documents_removed} removed (emptied)" if summary.documents_removed else ""
    typer.echo(
        f"{summary.domain}: {summary.documents_added} added, {summary.documents_updated} updated, "
        f"{summary.documents_unchanged} unchanged, {summary.documents_failed} failed, "
        f"{summary.documents_pruned} pruned{removed}; {_count(summary.chunks_written, 'chunk')} in {summary.seconds:.1f}s "
        f"({rate:.0f} chunks/s)"
    )
