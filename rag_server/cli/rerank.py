"""`rag-server train-reranker` and `rag-server rerankers list`: a domain's feature reranker, eval-gated."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from tqdm import tqdm

from rag_server.cli._common import database, print_json, reports_errors, settings
from rag_server.config import Settings
from rag_server.embedding import get_embedder
from rag_server.errors import RagError

app = typer.Typer(help="Per-domain rerankers: their promotion decisions.", no_args_is_help=True)


@reports_errors
def train_reranker(
    domain: str = typer.Option(..., "--domain", "-d", help="The domain to train for (its corpus ingested)."),
    dataset: Path = typer.Option(
        None,
        "--dataset",
        exists=True,
        file_okay=False,
        help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv.",
    ),
    from_feedback: bool = typer.Option(
        False,
        "--from-feedback",
        help="Train on the API's feedback on the domain's answers (POST /v1/feedback) instead of --dataset.",
    ),
    split: str = typer.Option(
        None, help="Labeled questions to train on (default: train if qrels/train.tsv exists, else test)."
    ),
    folds: int = typer.Option(5, min=2, max=20, help="Folds of the held-out eval (without --eval-split)."),
    depth: int = typer.Option(50, min=5, max=500, help="Hybrid candidates per question."),
    margin: float = typer.Option(
        0.005, min=0.0, help="nDCG@10 gain over hybrid needed (and a paired test at p < 0.05)."
    ),
    eval_split: str = typer.Option(
        None, "--eval-split", help="Decide on this split (a model trained on --split) instead of k folds."
    ),
    test_split: str = typer.Option(
        None, "--test-split", help="Also report both nDCG@10 on this split (not used for the decision)."
    ),
    max_questions: int = typer.Option(
        None, "--max-questions", min=10, help="Use at most this many questions of a split (a fixed sample)."
    ),
    ingest: bool = typer.Option(
        True, "--ingest/--no-ingest", help="Ingest the data set's corpus into the domain first (incremental)."
    ),
    kind: str = typer.Option(
        "features",
        "--kind",
        help="features (LightGBM lambdarank, seconds) or cross-encoder (fine-tuned MiniLM, minutes on a CPU).",
    ),
    model: Path = typer.Option(
        None,
        "--model",
        exists=True,
        file_okay=False,
        help="With --kind cross-encoder: a local pretrained cross-encoder to judge as it is (no fine-tuning).",
    ),
    epochs: int = typer.Option(1, min=1, max=10, help="With --kind cross-encoder: passes over the pairs."),
    held_out: float = typer.Option(
        0.25,
        "--held-out",
        min=0.05,
        max=0.5,
        help="With --kind cross-encoder: the share of questions judged.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the decision as JSON."),
) -> None:
    """Train a reranker on a domain's labeled questions; promote it only if it beats the hybrid order on
    held-out questions by the margin with p < 0.05 (a refusal is recorded, and what served the domain before
    keeps serving). --kind features: LightGBM lambdarank over retrieval features, k folds; --kind
    cross-encoder: the packaged MiniLM fine-tuned on the domain's relevant chunks against its hard negatives,
    judged on a held-out part."""
    from evals.rerank import CrossEncoderTraining, train, train_cross_encoder
    from ingest.pipeline import Ingestion
    from rag_server.rerank.cross_encoder import FineTuning
    from rag_server.retrieval.search import Searcher

    if (dataset is None) == (not from_feedback):
        raise RagError("give either --dataset FOLDER or --from-feedback")
    if kind not in ("features", "cross-encoder"):
        raise RagError(f"unknown --kind {kind!r}: features or cross-encoder")
    if model is not None and kind != "cross-encoder":
        raise RagError("--model is a cross-encoder's folder: use it with --kind cross-encoder")
    current = settings()
    if from_feedback:
        dataset, split, ingest = _feedback_dataset(current, domain), "train", False
    if split is None:
        split = "train" if (dataset / "qrels" / "train.tsv").is_file() else "test"
    if eval_split is not None and eval_split == split:
        raise RagError("--eval-split must differ from --split (the decision needs held-out questions)")
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
        with tqdm(desc="questions", unit=" q", disable=not sys.stderr.isatty()) as bar:
            if kind == "cross-encoder":
                training = CrossEncoderTraining(
                    current.data_dir / "rerankers", model, FineTuning(epochs=epochs), held_out
                )
                run = train_cross_encoder(
                    searcher,
                    dataset,
                    domain,
                    split,
                    training,
                    depth,
                    margin,
                    eval_split,
                    test_split,
                    max_questions,
                    bar.update,
                    lambda line: typer.echo(line, err=True),
                )
            else:
                run = train(
                    searcher,
                    dataset,
                    domain,
                    split,
                    folds,
                    depth,
                    margin,
                    eval_split,
                    test_split,
                    max_questions,
                    bar.update,
                )
    if as_json:
        print_json({"id": run.reranker_id, "domain": domain, **run.decision})
        return
    verdict = run.verdict
    typer.echo(
        f"{domain}: {'PROMOTED' if verdict.promoted else 'refused'} (reranker {run.reranker_id}); "
        f"held-out nDCG@10 hybrid {verdict.baseline_ndcg:.4f} -> reranked {verdict.reranked_ndcg:.4f} "
        f"over {verdict.questions} questions ({run.decision['protocol']}); {verdict.reason}"
    )
    if "test" in run.decision:
        test = run.decision["test"]
        typer.echo(
            f"{test['split']} ({test['questions']} questions): hybrid {test['baseline_ndcg@10']:.4f}, "
            f"reranked {test['reranked_ndcg@10']:.4f}"
        )


# Fewer labeled questions than this cannot fill the folds of a held-out decision.
MIN_FEEDBACK_QUESTIONS = 10


def _feedback_dataset(current: Settings, domain: str) -> Path:
    """The domain's feedback as a BEIR folder (queries and train judgements) in a temporary directory."""
    import tempfile

    from rag_server.feedback import labels, write_beir

    with database(current) as pool, pool.connection() as conn:
        found = labels(conn, domain)
    if len(found.questions) < MIN_FEEDBACK_QUESTIONS:
        raise RagError(
            f"domain {domain!r} has feedback naming the right evidence on {len(found.questions)} questions; "
            f"training needs at least {MIN_FEEDBACK_QUESTIONS} (POST /v1/feedback with correct_evidence or helpful)"
        )
    folder = Path(tempfile.mkdtemp(prefix="rag-feedback-"))
    write_beir(found, folder)
    typer.echo(f"feedback: {len(found.questions)} labeled questions of domain {domain!r}", err=True)
    return folder


@app.command("list")
@reports_errors
def list_rerankers(
    domain: str = typer.Option(None, "--domain", "-d", help="Only this domain's decisions."),
    as_json: bool = typer.Option(False, "--json", help="Print the decisions as JSON."),
) -> None:
    """Every domain's reranker training runs: promoted or refused, with the held-out scores behind it."""
    from rag_server.rerank import store

    current = settings()
    with database(current) as pool, pool.connection() as conn:
        found = store.decisions(conn, domain)
        serving = {row.domain: row.id for row in found if row.promoted}
    if as_json:
        print_json([{**row.as_dict(), "serving": serving.get(row.domain) == row.id} for row in found])
        return
    if not found:
        typer.echo("no reranker trained yet (rag-server train-reranker --domain D --dataset FOLDER)")
        return
    typer.echo(
        "| id | domain | decision | hybrid nDCG@10 | reranked nDCG@10 | p | questions | protocol | date |"
    )
    typer.echo("|---|---|---|---|---|---|---|---|---|")
    for row in found:
        d = row.decision
        state = (
            "serving" if serving.get(row.domain) == row.id else ("promoted" if row.promoted else "refused")
        )
        typer.echo(
            f"| {row.id} | {row.domain} | {state} | {d.get('baseline_ndcg@10')} | {d.get('reranked_ndcg@10')} "
            f"| {d.get('p_value', float('nan')):.3g} | {d.get('questions')} | {d.get('protocol')} "
            f"| {row.trained_at:%Y-%m-%d %H:%M} |"
        )
