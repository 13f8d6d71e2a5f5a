"""`rag-server tune` and `rag-server tunings list`: a domain's retrieval settings, eval-gated."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from psycopg_pool import ConnectionPool
from tqdm import tqdm

from rag_server.cli._common import database, print_json, reports_errors, settings
from rag_server.domains import Domain, get_domain
from rag_server.embedding import get_embedder
from rag_server.errors import RagError

app = typer.Typer(help="Per-domain tunings of the retrieval settings: their decisions.", no_args_is_help=True)


def _values(raw: str, kind: type) -> list:
    """A comma-separated option as a list of `kind`."""
    try:
        return [kind(part.strip()) for part in raw.split(",") if part.strip()]
    except ValueError:
        raise RagError(f"not a comma-separated list of {kind.__name__}: {raw!r}") from None


@reports_errors
def tune(
    domain: str = typer.Option(..., "--domain", "-d", help="The domain to tune (its corpus ingested)."),
    dataset: Path = typer.Option(
        ...,
        "--dataset",
        exists=True,
        file_okay=False,
        help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv.",
    ),
    split: str = typer.Option(
        None, help="Labeled questions to tune on (default: train if qrels/train.tsv exists, else test)."
    ),
    folds: int = typer.Option(5, min=2, max=20, help="Folds of the held-out eval (without --eval-split)."),
    margin: float = typer.Option(
        0.005, min=0.0, help="nDCG@10 gain over the current settings needed (and a paired test at p < 0.05)."
    ),
    eval_split: str = typer.Option(
        None,
        "--eval-split",
        help="Decide on this split (configuration chosen on --split) instead of k folds.",
    ),
    test_split: str = typer.Option(
        None, "--test-split", help="Also report both nDCG@10 on this split (not used for the decision)."
    ),
    max_questions: int = typer.Option(
        None, "--max-questions", min=10, help="Use at most this many questions of a split (a fixed sample)."
    ),
    expansions: str = typer.Option("none,rm3", help="Keyword expansions to try (none, rm3)."),
    fusions: str = typer.Option("rrf,convex", help="Fusion kinds to try (rrf, convex)."),
    weights: str = typer.Option("0.5,0.7,0.9", help="Convex weights (of the semantic side) to try."),
    depths: str = typer.Option("50,100", help="Candidate depths (chunks per route before fusion) to try."),
    chunk_sizes: str = typer.Option(
        None,
        "--chunk-sizes",
        help="Also tune the chunk size (tokens), first: each size is ingested from the data set's corpus into a "
        "scratch domain (deleted after); a promoted one re-chunks the domain. Off by default.",
    ),
    chunk_overlaps: str = typer.Option(
        None,
        "--chunk-overlaps",
        help="Chunk overlaps (tokens) to try with --chunk-sizes (default: the current).",
    ),
    ingest: bool = typer.Option(
        True, "--ingest/--no-ingest", help="Ingest the data set's corpus into the domain first (incremental)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the decision as JSON."),
) -> None:
    """Grid-search a domain's retrieval settings (keyword expansion, fusion and weight, candidate depth) on
    its labeled questions; promote the best only if it beats the domain's current settings on held-out
    questions by the margin with p < 0.05 (every run is recorded; a refusal keeps what served). With
    --chunk-sizes, the chunking is decided first, by the same gate, as a run of its own."""
    from evals.tune import grid
    from evals.tune import tune as run_tuning
    from evals.tune_chunks import ChunkTuningRun, chunk_grid, tune_chunks
    from ingest.pipeline import Ingestion
    from rag_server.retrieval.search import Searcher

    if split is None:
        split = "train" if (dataset / "qrels" / "train.tsv").is_file() else "test"
    if eval_split is not None and eval_split == split:
        raise RagError("--eval-split must differ from --split (the decision needs held-out questions)")
    try:
        configs = grid(
            _values(expansions, str), _values(fusions, str), _values(weights, float), _values(depths, int)
        )
    except ValueError as error:
        raise RagError(f"bad grid: {error}") from None
    if chunk_sizes is not None and not (dataset / "corpus.jsonl").is_file():
        raise RagError(
            f"--chunk-sizes re-chunks the documents, but {dataset} has no corpus.jsonl to re-ingest; "
            "tune without --chunk-sizes"
        )
    if chunk_overlaps is not None and chunk_sizes is None:
        raise RagError("--chunk-overlaps goes with --chunk-sizes")
    current = settings()
    chunking: ChunkTuningRun | None = None
    with database(current) as pool:
        if ingest:
            if not (dataset / "corpus.jsonl").is_file():
                raise RagError(
                    f"no corpus.jsonl in {dataset}; ingest the domain yourself and pass --no-ingest"
                )
            summary = Ingestion.from_settings(pool, current).run([dataset], domain)
            typer.echo(
                f"corpus: {summary.documents_added} added, {summary.documents_updated} updated, "
                f"{summary.documents_unchanged} unchanged, {summary.documents_failed} failed",
                err=True,
            )
        searcher = Searcher(pool, get_embedder(current), current)
        if chunk_sizes is not None:
            effective = searcher.tunings.for_domain(_domain(pool, domain)).apply(current)
            try:
                chunk_configs = chunk_grid(
                    _values(chunk_sizes, int),
                    _values(chunk_overlaps, int) if chunk_overlaps else [effective.chunk_overlap],
                )
            except ValueError as error:
                raise RagError(f"bad chunk grid: {error}") from None
            typer.echo(f"{len(chunk_configs)} chunk configurations (one corpus ingest each)", err=True)
            with tqdm(desc="chunking: questions", unit=" q", disable=not sys.stderr.isatty()) as bar:
                try:
                    chunking = tune_chunks(
                        searcher,
                        dataset,
                        domain,
                        split,
                        chunk_configs,
                        folds,
                        margin,
                        eval_split,
                        max_questions,
                        bar.update,
                        lambda message: typer.echo(message, err=True),
                    )
                except ValueError as error:
                    raise RagError(str(error)) from None
        typer.echo(f"{len(configs)} configurations per question (hybrid searches)", err=True)
        with tqdm(desc="questions", unit=" q", disable=not sys.stderr.isatty()) as bar:
            try:
                run = run_tuning(
                    searcher,
                    dataset,
                    domain,
                    split,
                    folds,
                    margin,
                    eval_split,
                    test_split,
                    max_questions,
                    configs,
                    bar.update,
                )
            except ValueError as error:
                raise RagError(str(error)) from None
    decision = run.decision
    if as_json:
        chunked = {"chunking": {"id": chunking.tuning_id, **chunking.decision}} if chunking else {}
        print_json({"id": run.tuning_id, "domain": domain, **decision, **chunked})
        return
    if chunking is not None:
        chosen = chunking.decision
        scores = ", ".join(f"{c['label']} {c['train_ndcg@10']:.4f}" for c in chosen["configurations"])
        typer.echo(
            f"{domain} chunking: {'PROMOTED' if chosen['promoted'] else 'refused'} {chosen['chosen']} "
            f"(tuning {chunking.tuning_id}); held-out nDCG@10 {chosen['current_settings']['chunk_size']}/"
            f"{chosen['current_settings']['chunk_overlap']} {chosen['baseline_ndcg@10']:.4f} -> tuned "
            f"{chosen['tuned_ndcg@10']:.4f} over {chosen['questions']} questions; {chosen['reason']}; "
            f"all questions, size/overlap: {scores}"
        )
        if chunking.rechunked is not None:
            typer.echo(
                f"{domain} re-chunked: {chunking.rechunked.documents_updated} documents, "
                f"{chunking.rechunked.chunks_written} chunks"
            )
    typer.echo(
        f"{domain}: {'PROMOTED' if decision['promoted'] else 'refused'} {decision['chosen']} "
        f"(tuning {run.tuning_id}); held-out nDCG@10 {decision['current']} {decision['baseline_ndcg@10']:.4f}"
        f" -> tuned {decision['tuned_ndcg@10']:.4f} over {decision['questions']} questions "
        f"({decision['protocol']}); {decision['reason']}"
    )
    if "test" in decision:
        test = decision["test"]
        typer.echo(
            f"{test['split']} ({test['questions']} questions): current {test['current_ndcg@10']:.4f}, "
            f"tuned {test['tuned_ndcg@10']:.4f}"
        )


def _domain(pool: ConnectionPool, name: str) -> Domain:
    with pool.connection() as conn:
        return get_domain(conn, name)


@app.command("list")
@reports_errors
def list_tunings(
    domain: str = typer.Option(None, "--domain", "-d", help="Only this domain's decisions."),
    as_json: bool = typer.Option(False, "--json", help="Print the decisions as JSON."),
) -> None:
    """Every domain's tuning runs: promoted or refused, with the held-out scores and the settings chosen."""
    from rag_server.retrieval import tuning

    current = settings()
    with database(current) as pool, pool.connection() as conn:
        found = tuning.decisions(conn, domain)
    serving = {row.domain: row.id for row in found if row.promoted}
    if as_json:
        print_json([{**row.as_dict(), "serving": serving.get(row.domain) == row.id} for row in found])
        return
    if not found:
        typer.echo("no domain tuned yet (rag-server tune --domain D --dataset FOLDER)")
        return
    typer.echo("| id | domain | decision | chosen | current nDCG@10 | tuned nDCG@10 | p | questions | date |")
    typer.echo("|---|---|---|---|---|---|---|---|---|")
    for row in found:
        d = row.decision
        state = (
            "serving" if serving.get(row.domain) == row.id else ("promoted" if row.promoted else "refused")
        )
        typer.echo(
            f"| {row.id} | {row.domain} | {state} | {d.get('chosen')} | {d.get('baseline_ndcg@10')} "
            f"| {d.get('tuned_ndcg@10')} | {d.get('p_value', float('nan')):.3g} | {d.get('questions')} "
            f"| {row.tuned_at:%Y-%m-%d %H:%M} |"
        )
