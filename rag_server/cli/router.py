"""`rag-server train-router`: fit the query router on labeled questions, store it versioned per domain."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from rag_server.cli._common import database, print_json, reports_errors, settings
from rag_server.domains import get_domain
from rag_server.embedding import get_embedder
from rag_server.errors import RagError

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

    from rag_server.config import Settings
    from rag_server.domains import Domain
    from rag_server.routing.features import Vocabulary
    from rag_server.routing.model import LabeledQuestion, RouterModel


@reports_errors
def train_router(
    data: list[Path] = typer.Option(
        None,
        "--data",
        exists=True,
        dir_okay=False,
        help='JSON-lines {"text", "route", "schema"?} (repeatable).',
    ),
    domain: str = typer.Option(
        None,
        "--domain",
        "-d",
        help="Store the model as this domain's next version (rows without schema use its tables).",
    ),
    with_default: bool = typer.Option(
        True, "--with-default/--without-default", help="Also train on the built-in labeled questions."
    ),
    c: float = typer.Option(
        1.0, min=1e-4, help="Inverse regularization strength of the logistic regression."
    ),
    from_feedback: bool = typer.Option(
        False,
        "--from-feedback",
        help="Also train on the domain's questions whose answers were marked helpful (POST /v1/feedback), "
        "labeled with the route that answered them (needs --domain).",
    ),
    gate: bool = typer.Option(
        True,
        "--gate/--no-gate",
        help="With --domain, store the model only if, trained on 75%% of the domain's questions, it routes the "
        "other 25%% better than the domain's current router by --margin with p < 0.05.",
    ),
    margin: float = typer.Option(0.02, min=0.0, help="Held-out routing accuracy gain the gate needs."),
    output: Path = typer.Option(None, "--out", help="Also write the model as JSON here."),
    as_json: bool = typer.Option(False, "--json", help="Print the training metrics as JSON."),
) -> None:
    """Train the router (logistic regression over question features and the query embedding)."""
    from rag_server.routing.model import load_labeled, save_model, train, train_with_default
    from rag_server.routing.router import QueryRouter

    rows = [row for path in data or [] for row in load_labeled(path)]
    current = settings()
    if from_feedback:
        if not domain:
            raise RagError("--from-feedback needs --domain (the feedback on that domain's answers)")
        from rag_server.feedback import route_labels

        with database(current) as pool, pool.connection() as conn:
            found_rows = route_labels(conn, domain)
        typer.echo(f"feedback: {len(found_rows)} helpful answers of domain {domain!r}", err=True)
        rows += found_rows
    if not rows and not with_default:
        raise RagError("nothing to train on: give --data FILE, --from-feedback or keep --with-default")
    embedder = get_embedder(current)
    with database(current) as pool:
        vocabulary = None
        found = None
        if domain:
            with pool.connection() as conn:
                found = get_domain(conn, domain)
            vocabulary = QueryRouter(pool, embedder, current).vocabulary(found)
            _warn_without_tables(rows, domain, vocabulary.empty)

        def fit(labeled: list[LabeledQuestion]) -> RouterModel:
            if with_default:
                return train_with_default(labeled, embedder, c, vocabulary)
            return train(labeled, embedder, c, vocabulary)

        verdict = None
        if found is not None and gate:
            verdict = _judged(pool, found, rows, fit, current, vocabulary, margin)
        model = fit(rows)
        model.metrics["source"] = "train-router"
        if verdict is not None:
            model.metrics["gate"] = verdict
        if found is not None and (not gate or (verdict is not None and verdict["promoted"])):
            with pool.connection() as conn, conn.transaction():
                model.metrics["version"] = save_model(conn, found.id, model)
    if output:
        output.write_text(json.dumps(model.to_json()))
    if as_json:
        print_json(model.metrics)
        return
    metrics = model.metrics
    if "gate" in metrics:
        gated = metrics["gate"]
        typer.echo(
            f"gate: {'PROMOTED' if gated['promoted'] else 'refused'}, held-out routing accuracy "
            f"{gated['current_accuracy']} -> {gated['candidate_accuracy']} over {gated['questions']} questions; "
            f"{gated['reason']}"
        )
    cv = metrics.get("cv_accuracy")
    typer.echo(
        f"trained on {metrics['rows']} questions {metrics['per_route']}; cross-validated accuracy "
        f"{cv:.3f}" + (f"; stored as {domain} v{metrics['version']}" if "version" in metrics else "")
        if cv is not None
        else f"trained on {metrics['rows']} questions"
    )


def _judged(
    pool: ConnectionPool,
    domain: Domain,
    rows: list[LabeledQuestion],
    fit: Callable[[list[LabeledQuestion]], RouterModel],
    current: Settings,
    vocabulary: Vocabulary | None,
    margin: float,
) -> dict[str, Any]:
    """The gate's decision on the domain's own labeled questions (the built-in ones train, never judge)."""
    from rag_server.routing import gate
    from rag_server.routing.model import FEATURE_VERSION, default_model, latest_version, load_model

    embedder = get_embedder(current)
    with pool.connection() as conn:
        version = latest_version(conn, domain.id)
        stored = load_model(conn, domain.id, version) if version is not None else None
    serving = stored if stored is not None and stored.feature_version == FEATURE_VERSION else None
    baseline = serving or default_model(embedder, current.data_dir)
    training, held_out = gate.split(rows)
    verdict = (
        gate.decide(fit(training), baseline, held_out, embedder, vocabulary, margin) if training else None
    )
    against = f"v{version}" if serving is not None else "builtin"
    if verdict is None:
        return {
            "promoted": False,
            "against": against,
            "questions": len(held_out),
            "current_accuracy": None,
            "candidate_accuracy": None,
            "reason": f"{len(held_out)} held-out questions are too few to judge (the gate needs "
            f"{gate.MIN_HELD_OUT}, so {len(rows)} labeled questions are not enough; --no-gate stores it anyway)",
        }
    return {
        "promoted": verdict.promoted,
        "against": against,
        "questions": verdict.questions,
        "current_accuracy": round(verdict.baseline_ndcg, 4),
        "candidate_accuracy": round(verdict.reranked_ndcg, 4),
        "p_value": verdict.p_value,
        "reason": verdict.reason,
    }


def _warn_without_tables(rows: list[LabeledQuestion], domain: str, no_tables: bool) -> None:
    """Rows without a schema are featurized against the domain's tables: trained before they are imported,
    the router never learns what mentioning them means (the demo's own set fell from 0.911 to 0.856)."""
    analytical = sum(row.schema is None and row.route == "sql" for row in rows)
    if no_tables and analytical:
        typer.echo(
            f"warning: domain {domain!r} has no tables, so the questions labeled sql ({analytical}) are featurized"
            f" without them; import them first (rag-server ingest TABLES_FOLDER --domain {domain})",
            err=True,
        )
