"""`rag-server bench ingest|retrieval`: benchmarks that print ratios and write JSON."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from rag_server.cli._common import database, reports_errors, settings
from rag_server.embedding import get_embedder

app = typer.Typer(help="Benchmarks: measured side by side in one run, written as JSON.", no_args_is_help=True)


@app.command("ingest")
@reports_errors
def bench_ingest(
    corpus: Path = typer.Option(..., exists=True, help="A folder or file to ingest (any format ingest takes)."),
    domain: str = typer.Option("bench-ingest", help="Scratch domain; dropped and re-created."),
    keep: bool = typer.Option(False, help="Keep the scratch domain afterwards."),
    output: Path = typer.Option(Path("reports/bench-ingest.json"), "--json", help="Where to write the JSON."),
) -> None:
    """End-to-end ingestion chunks/s against raw SentenceTransformer.encode chunks/s, and peak RSS."""
    from evals.bench_ingest import drop_domain_if_exists, run_ingest_bench
    from ingest.pipeline import IngestOptions
    from rag_server.retrieval.analyzer import Analyzer

    current = settings()
    analyzer = Analyzer(stemmer=current.bm25_stemmer, stopwords=current.bm25_stopwords)
    with database(current) as pool:
        result = run_ingest_bench(
            pool, get_embedder(current), analyzer, IngestOptions.from_settings(current), corpus, domain
        )
        if not keep:
            with pool.connection() as conn:
                drop_domain_if_exists(conn, domain)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result.as_dict(), indent=2))
    typer.echo(
        f"{result.documents} documents, {result.chunks} chunks\n"
        f"ingest end-to-end : {result.ingest_chunks_per_s:8.1f} chunks/s ({result.ingest_seconds:.1f} s)\n"
        f"raw encode        : {result.encode_chunks_per_s:8.1f} chunks/s ({result.encode_seconds:.1f} s)\n"
        f"ratio             : {result.ratio:.1%} of raw encode (target >= 85%)\n"
        f"peak RSS          : {result.peak_rss_mb:.0f} MB; by quarter of the run: {result.rss_mb_by_quarter}\n"
        f"written to {output}"
    )
