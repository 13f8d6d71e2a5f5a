"""`rag-server questions generate`: synthetic training questions for a domain with no labels."""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

import typer
from tqdm import tqdm

from rag_server.cli._common import database, print_json, reports_errors, settings
from rag_server.errors import RagError

app = typer.Typer(help="Synthetic training questions, for a domain with no labels.", no_args_is_help=True)

GENERATORS = ("heuristic", "llm")


@app.command("generate")
@reports_errors
def generate(
    domain: str = typer.Option(..., "--domain", "-d", help="The domain whose chunks to ask about."),
    out: Path = typer.Option(
        ..., "--out", file_okay=False, help="A new (or empty) folder for the BEIR files."
    ),
    questions: int = typer.Option(300, "--questions", "-n", min=1, max=100_000, help="How many questions."),
    generator: str = typer.Option(
        "heuristic",
        "--generator",
        help="heuristic (offline: a key sentence's rarest words) or llm (the configured chat model).",
    ),
    seed: int = typer.Option(0, "--seed", min=0, help="Which chunks are sampled (the same seed, the same)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Sample chunks of a domain (spread over its documents), write one question per chunk, each judged
    relevant to its chunk's document, as a BEIR folder (queries.jsonl, qrels/train.tsv) for train-reranker
    and tune with --no-ingest."""
    from rag_server.domains import get_domain
    from rag_server.llm import OpenAIChatModel
    from rag_server.rerank.synthetic import (
        HeuristicGenerator,
        ModelGenerator,
        QuestionGenerator,
        write_folder,
    )
    from rag_server.rerank.synthetic import generate as generate_questions

    if generator not in GENERATORS:
        raise RagError(f"unknown --generator {generator!r}: {' or '.join(GENERATORS)}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RagError(f"{out} exists and is not an empty folder: give a new one")
    current = settings()
    with database(current) as pool, pool.connection() as conn:
        found = get_domain(conn, domain)
        chosen: QuestionGenerator = (
            ModelGenerator(OpenAIChatModel(current))
            if generator == "llm"
            else HeuristicGenerator.for_domain(conn, found, current, seed)
        )
        with tqdm(
            total=questions,
            desc="questions",
            unit=" q",
            disable=generator != "llm" or not sys.stderr.isatty(),
        ) as bar:
            made = generate_questions(conn, found, chosen, questions, seed, bar.update)
    written = write_folder(made, out, domain)
    summary = {
        "domain": domain,
        "folder": str(out),
        "generator": made.generator,
        "seed": seed,
        "questions": written,
        "asked_for": questions,
        "skipped_chunks": made.skipped,
        "usage": asdict(made.usage),
    }
    if as_json:
        print_json(summary)
        return
    note = f" (the domain gave only {written})" if written < questions else ""
    typer.echo(f"{domain}: {written} {made.generator} questions written to {out}{note}")
    if made.calls:
        usage = made.usage
        typer.echo(
            f"model: {usage.model_calls} calls, {usage.prompt_tokens} prompt + {usage.completion_tokens} "
            f"completion tokens, ${usage.cost_usd:.4f}"
        )
    typer.echo(f"next: rag-server train-reranker --domain {domain} --dataset {out} --no-ingest")
    typer.echo(
        "note: a gate on synthetic questions judges those questions, not your users' (on cranfield a reranker "
        "promoted on them lost on the real ones: docs/rerankers.md); check it on a few real judgements",
        err=True,
    )
