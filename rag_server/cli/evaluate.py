"""`rag-server eval retrieval|report`: accuracy and latency of the routes on BEIR-format data sets."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import typer
from tqdm import tqdm

from rag_server.cli._common import EXIT_PARTIAL, database, reports_errors, settings, write_json
from rag_server.embedding import get_embedder
from rag_server.errors import RagError
from rag_server.local_llm import local_model
from rag_server.retrieval.types import CHUNK_ROUTES

app = typer.Typer(
    help="Evals: retrieval accuracy and latency per route, generated SQL.", no_args_is_help=True
)


@app.command("retrieval")
@reports_errors
def eval_retrieval(
    dataset: Path = typer.Option(
        ..., exists=True, file_okay=False, help="BEIR folder: queries.jsonl, qrels/test.tsv."
    ),
    domain: str = typer.Option(
        None, "--domain", "-d", help="Domain to ingest into and search (default: folder name)."
    ),
    route: str = typer.Option(
        "all", "--route", "-r", help=f"One of {', '.join(CHUNK_ROUTES)}, auto (routed), or all (the three)."
    ),
    corpus: Path = typer.Option(
        None, exists=True, help="The documents (default: the data set's corpus.jsonl)."
    ),
    depth: int = typer.Option(
        200, min=10, max=1000, help="Chunks retrieved per query (deduplicated to documents)."
    ),
    output: Path = typer.Option(
        None, "--json", help="Write the report (with per-query results) as JSON here."
    ),
    report_dir: Path = typer.Option(None, "--report", help="Write report.md and chart.png into this folder."),
    thresholds: Path = typer.Option(
        None, exists=True, help="Fail (exit 1) below the thresholds in this JSON."
    ),
    threshold_set: str = typer.Option(None, help="Key of the thresholds to use (default: the folder name)."),
) -> None:
    """Ingest the data set's corpus (incrementally) and score each route on its judged queries."""
    from evals.report import markdown_table, write_chart, write_markdown
    from evals.retrieval import check_thresholds, run_retrieval_eval
    from ingest.pipeline import Ingestion
    from rag_server.retrieval.search import Searcher

    routes = list(CHUNK_ROUTES) if route == "all" else [route]
    if any(name not in (*CHUNK_ROUTES, "auto") for name in routes):
        raise RagError(f"unknown route {route!r}; use one of {', '.join(CHUNK_ROUTES)}, auto or all")
    domain = domain or _domain_name(dataset)
    current = settings()
    with database(current) as pool:
        _ingest_corpus(Ingestion.from_settings(pool, current), dataset, corpus, domain)
        searcher = Searcher(pool, get_embedder(current), current)
        with tqdm(desc="queries", unit=" q", disable=not sys.stderr.isatty()) as bar:
            report = run_retrieval_eval(searcher, dataset, domain, routes, depth, bar.update)
    result = report.as_dict()
    typer.echo(markdown_table([result]))
    if output:
        write_json(output, result)
    if report_dir:
        write_markdown([result], report_dir / "report.md")
        write_chart([result], report_dir / "chart.png")
    if thresholds:
        failures = check_thresholds(report, thresholds, threshold_set or dataset.name)
        for failure in failures:
            typer.echo(f"below threshold: {failure}", err=True)
        if failures:
            raise typer.Exit(EXIT_PARTIAL)
        typer.echo(f"all thresholds in {thresholds} hold", err=True)


@app.command("report")
@reports_errors
def eval_report(
    runs: list[Path] = typer.Argument(
        ..., exists=True, help="JSON files written by `eval retrieval --json`."
    ),
    out: Path = typer.Option(Path("reports"), help="Folder for report.md and chart.png."),
) -> None:
    """Combine eval runs into one Markdown table and one chart comparing routes per data set."""
    from evals.report import write_chart, write_markdown

    loaded = [json.loads(path.read_text()) for path in runs]
    write_markdown(loaded, out / "report.md")
    write_chart(loaded, out / "chart.png")
    typer.echo((out / "report.md").read_text())


@app.command("routing")
@reports_errors
def eval_routing(
    dataset: Path = typer.Option(
        ..., exists=True, file_okay=False, help="BEIR folder: queries.jsonl, qrels/test.tsv."
    ),
    domain: str = typer.Option(
        None, "--domain", "-d", help="Domain to ingest into and search (default: folder name)."
    ),
    corpus: Path = typer.Option(
        None, exists=True, help="The documents (default: the data set's corpus.jsonl)."
    ),
    labels: Path = typer.Option(
        None,
        exists=True,
        dir_okay=False,
        help="Hand labels (query-id TAB route); default DATASET/routes.tsv, else oracle.",
    ),
    tables: Path = typer.Option(
        None,
        exists=True,
        file_okay=False,
        help="Table files to import into the domain (for sql-labeled questions).",
    ),
    output: Path = typer.Option(
        None, "--json", help="Write the report (with per-query results) as JSON here."
    ),
    write_labels: Path = typer.Option(
        None, help="Write the oracle labels as training rows (JSON lines) for `rag-server train-router`."
    ),
    min_accuracy: float = typer.Option(None, min=0, max=1, help="Fail (exit 1) below this routing accuracy."),
) -> None:
    """Routing accuracy (against hand or oracle labels), confusion matrix, and routed nDCG@10 and latency
    against always-keyword, -semantic, -hybrid and the oracle."""
    from evals.routing import LABELS_FILE, load_labels, oracle_training_rows, run_routing_eval
    from ingest.pipeline import Ingestion
    from ingest.tables import find_table_files, import_table_files
    from rag_server.retrieval.search import Searcher

    labels = labels or (dataset / LABELS_FILE if (dataset / LABELS_FILE).is_file() else None)
    domain = domain or _domain_name(dataset)
    current = settings()
    with database(current) as pool:
        ingestion = Ingestion.from_settings(pool, current)
        _ingest_corpus(ingestion, dataset, corpus, domain)
        if tables:
            imported = import_table_files(
                pool, ingestion.domain(domain), find_table_files([tables], True), {}
            )
            if imported["failed"]:
                raise RagError(f"cannot import the tables: {imported['failed']}")
        searcher = Searcher(pool, get_embedder(current), current)
        with tqdm(desc="queries", unit=" q", disable=not sys.stderr.isatty()) as bar:
            report = run_routing_eval(
                searcher, dataset, domain, load_labels(labels) if labels else None, progress=bar.update
            )
    if output:
        write_json(output, report)
    if write_labels:
        write_labels.write_text("".join(json.dumps(row) + "\n" for row in oracle_training_rows(report)))
    typer.echo(_routing_table(report))
    if min_accuracy is not None and (report["routing_accuracy"] or 0) < min_accuracy:
        typer.echo(
            f"below threshold: routing accuracy {report['routing_accuracy']} < {min_accuracy}", err=True
        )
        raise typer.Exit(EXIT_PARTIAL)


def _routing_table(report: dict[str, Any]) -> str:
    ndcg, latency = report["ndcg@10"], report["latency_ms"]
    lines = [
        f"{report['dataset']}: {report['queries']} queries; routing accuracy {report['routing_accuracy']} "
        f"against {report['labels']} labels ({report['labeled_questions']} questions)"
        + (
            f"; sql-labeled routed to sql {report['sql_recall']}, reaching sql {report['sql_reached']}"
            if report.get("sql_recall") is not None
            else ""
        ),
        "| | routed | keyword | semantic | hybrid | oracle |",
        "|---|---|---|---|---|---|",
        "| nDCG@10 | "
        + " | ".join(f"{ndcg[k]:.4f}" for k in ("routed", "keyword", "semantic", "hybrid", "oracle"))
        + " |",
        "| mean latency ms | "
        + " | ".join(f"{latency[k]:.2f}" for k in ("routed", "keyword", "semantic", "hybrid"))
        + " | |",
        f"router p50 {report['router_ms']['p50']} ms, p95 {report['router_ms']['p95']} ms; routed to {report['routed_to']}; "
        f"oracle {report['oracle_routes']}",
        "confusion (label -> routed): " + json.dumps(report["confusion"]),
    ]
    return "\n".join(lines)


@app.command("sql")
@reports_errors
def eval_sql(
    dataset: Path = typer.Option(
        ...,
        exists=True,
        file_okay=False,
        help="A folder laid out like defog's sql-eval (databases/NAME/NAME.sql + questions CSV), or with "
        "sql_questions.jsonl and table files.",
    ),
    gold: bool = typer.Option(
        False, "--gold", help="Check the validator and sandbox on the gold queries instead of generating SQL."
    ),
    questions: str = typer.Option(
        None, help="Questions CSV inside DATASET (default questions_gen_postgres.csv)."
    ),
    tables: Path = typer.Option(
        None,
        exists=True,
        file_okay=False,
        help="Table files for a sql_questions.jsonl set (default DATASET/tables).",
    ),
    output: Path = typer.Option(None, "--json", help="Write the full report as JSON here."),
    min_accuracy: float = typer.Option(
        None, min=0, max=1, help="Fail (exit 1) when execution accuracy is below this (the CI gate)."
    ),
) -> None:
    """No false rejections (--gold), or execution accuracy of the configured generator per category.

    Without a model configured, the deterministic generator runs: its coverage (questions it accepts) and its
    accuracy are reported. Exit 1 when a gold query is rejected or returns other rows.
    """
    from evals.sql import run_accuracy, run_gold_check
    from rag_server.sql.route import SqlRoute

    current = settings()
    with database(current) as pool:
        embedder = get_embedder(current)
        if gold:
            report = run_gold_check(pool, current, embedder, dataset, questions, tables)
        else:
            route = SqlRoute(pool, embedder, current)
            report = run_accuracy(
                pool,
                current,
                embedder,
                dataset,
                lambda question, database: _generated_sql(route, question, database.domain.name),
                route.generator_name,
                questions,
                tables,
            )
    if output:
        write_json(output, report)
    if gold:
        typer.echo(
            f"gold queries: {report['gold_passed']} of {report['gold_total']} pass the validator and sandbox"
        )
        for failure in report["failures"]:
            typer.echo(f"  {failure['id']} [{failure['stage']}] {failure['error']}", err=True)
        if report["failures"]:
            raise typer.Exit(EXIT_PARTIAL)
        return
    typer.echo(_accuracy_table(report))
    if min_accuracy is not None and report["accuracy"] < min_accuracy:
        typer.echo(f"below threshold: accuracy {report['accuracy']:.3f} < {min_accuracy}", err=True)
        raise typer.Exit(EXIT_PARTIAL)


def _generated_sql(route: Any, question: str, domain: str) -> str:
    return route.answer(question, domain).sql


def _accuracy_table(report: dict[str, Any]) -> str:
    lines = [
        f"generator: {report['generator']}",
        "| category | questions | accepted | correct | coverage | accuracy | accuracy on accepted |",
        "|---|---|---|---|---|---|---|",
    ]
    rows = [*report["by_category"].items(), ("all", report)]
    for name, summary in rows:
        lines.append(
            f"| {name} | {summary['total']} | {summary['accepted']} | {summary['correct']} | "
            f"{summary['coverage']:.3f} | {summary['accuracy']:.3f} | {summary['accuracy_on_accepted']:.3f} |"
        )
    return "\n".join(lines)


@app.command("answers")
@reports_errors
def eval_answers(
    squad: Path = typer.Option(
        None,
        exists=True,
        dir_okay=False,
        help="A SQuAD 2.0 JSON file: its paragraphs become the domain's documents.",
    ),
    dataset: Path = typer.Option(
        None, exists=True, file_okay=False, help="A folder with answers.jsonl (the project's layout)."
    ),
    corpus: Path = typer.Option(None, exists=True, help="The documents of --dataset's questions."),
    tables: Path = typer.Option(
        None, exists=True, file_okay=False, help="Table files to import for --dataset's analytical questions."
    ),
    domain: str = typer.Option(
        None, "--domain", "-d", help="Domain to ingest into and ask (default: from the file)."
    ),
    offset: int = typer.Option(
        0, min=0, help="Skip this many questions first (e.g. to calibrate on others)."
    ),
    limit: int = typer.Option(None, min=1, help="Ask at most this many questions."),
    output: Path = typer.Option(
        None, "--json", help="Write the report (with per-question results) as JSON here."
    ),
    calibrate_out: Path = typer.Option(
        None,
        help="Fit the abstention calibration on this run and write it here (for RAG_ANSWER_CALIBRATION).",
    ),
    minimums: list[str] = typer.Option(
        [],
        "--min",
        help="METRIC=VALUE: fail (exit 1) below it at the configured operating point (repeatable).",
    ),
) -> None:
    """Answer accuracy, abstention and citations: exact match, F1, containment, abstention precision and
    recall, citation accuracy, tokens, cost and latency, at every abstention operating point."""
    from evals.answers import fit_calibration, load_answer_set, load_squad, run_answer_eval, score
    from ingest.pipeline import Ingestion
    from ingest.tables import find_table_files, import_table_files
    from rag_server.pipeline import Pipeline
    from rag_server.retrieval.search import Searcher

    if (squad is None) == (dataset is None):
        raise RagError("give one of --squad FILE or --dataset FOLDER")
    current = settings()
    checks = _minimums(minimums)
    with local_model(current) as current, database(current) as pool:
        ingestion = Ingestion.from_settings(pool, current)
        if squad is not None:
            domain = domain or _domain_name(squad.with_suffix(""))
            documents, questions = load_squad(squad)
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / "corpus.jsonl"
                path.write_text("".join(json.dumps(d) + "\n" for d in documents))
                _ingest_corpus(ingestion, Path(folder), None, domain)
        else:
            domain = domain or _domain_name(dataset)
            questions = load_answer_set(dataset / "answers.jsonl")
            _ingest_corpus(ingestion, dataset, corpus, domain)
            if tables:
                imported = import_table_files(
                    pool, ingestion.domain(domain), find_table_files([tables], True), {}
                )
                if imported["failed"]:
                    raise RagError(f"cannot import the tables: {imported['failed']}")
        questions = questions[offset : offset + limit if limit else None]
        # Abstention is applied after, from the recorded signals, at every operating point; every question is
        # answered afresh (no answer cache).
        unabstaining = current.model_copy(update={"abstention": "never", "answer_cache": "off"})
        pipeline = Pipeline(Searcher(pool, get_embedder(current), unabstaining), unabstaining)
        with tqdm(total=len(questions), desc="questions", unit=" q", disable=not sys.stderr.isatty()) as bar:
            report = run_answer_eval(pipeline, questions, domain, bar.update)
        calibration = pipeline.calibration
        if calibrate_out:
            calibration = fit_calibration(
                report, pipeline.lexicon(domain), f"{squad or dataset} [{offset}:{offset + len(questions)}]"
            )
            calibration.save(calibrate_out)
            typer.echo(f"calibration written to {calibrate_out}", err=True)
    points = {point: score(report, calibration, point) for point in ("cautious", "balanced", "never")}
    chosen = points[current.abstention]
    summary = {
        "dataset": str(squad or dataset),
        "domain": domain,
        "answerer": pipeline.answerer().name,
        **chosen,
    }
    typer.echo(json.dumps({**summary, "operating_points": points}, indent=2))
    if output:
        rows = [
            {
                "id": o.question.id,
                "question": o.question.question,
                "kind": o.question.kind,
                "gold": list(o.question.answers),
                "answer": o.response.answer,
                "abstained": o.response.abstained,
                "answerable": o.response.answerable,
                "signals": o.response.signals,
                "citations": [c.ref for c in o.response.citations],
                "latency_ms": round(o.latency_ms, 2),
            }
            for o in report.outcomes
        ]
        write_json(output, {**summary, "operating_points": points, "per_question": rows})
    failures = [
        f"{metric} = {chosen.get(metric)} < {minimum}"
        for metric, minimum in checks.items()
        if chosen.get(metric) is None or chosen[metric] < minimum
    ]
    for failure in failures:
        typer.echo(f"below threshold: {failure}", err=True)
    if failures:
        raise typer.Exit(EXIT_PARTIAL)


@app.command("squad-passages")
@reports_errors
def eval_squad_passages(
    squad: Path = typer.Argument(..., exists=True, dir_okay=False, help="A SQuAD 2.0 JSON file."),
    out: Path = typer.Option(
        ..., "--out", "-o", file_okay=False, help="The BEIR folder to write (new or empty)."
    ),
) -> None:
    """SQuAD 2.0 as passage retrieval: write a BEIR folder (paragraphs as documents, answerable questions,
    each judged against its own paragraph) for `eval retrieval`, `train-reranker` and `tune`."""
    from evals.answers import squad_passages

    documents, questions = squad_passages(squad, out)
    typer.echo(f"{out}: {documents} paragraphs, {questions} answerable questions (qrels/test.tsv)")


@app.command("cache")
@reports_errors
def eval_cache(
    pairs: Path = typer.Option(
        None, exists=True, dir_okay=False, help="Question pairs (default: the demo set's paraphrases.jsonl)."
    ),
    margin: float = typer.Option(0.02, min=0, max=0.5, help="Added to the highest negative cosine served."),
    output: Path = typer.Option(
        None, "--json", help="Write the report (with per-pair results) as JSON here."
    ),
    write: Path = typer.Option(
        None,
        help="Write the threshold file here (rag_server/pipeline/semantic_cache.json is the packaged one).",
    ),
) -> None:
    """Calibrate the semantic answer cache: the cosine threshold with no false hit on the calibration half's
    negative pairs (those the guard lets through), plus a margin; hit precision and recall on both halves."""
    from evals.cache import PAIRS_FILE, load_pairs, run_cache_eval, threshold_file

    pairs = pairs or PAIRS_FILE
    report = run_cache_eval(get_embedder(settings()), load_pairs(pairs), margin)
    summary = {key: value for key, value in report.items() if key != "per_pair"}
    typer.echo(json.dumps(summary, indent=2))
    if output:
        write_json(output, report)
    if write:
        write_json(write, threshold_file(report, pairs))
        typer.echo(f"threshold {report['threshold']} written to {write}", err=True)


def _minimums(raw: list[str]) -> dict[str, float]:
    checks = {}
    for item in raw:
        metric, _, value = item.partition("=")
        try:
            checks[metric.strip()] = float(value)
        except ValueError:
            raise RagError(f"--min takes METRIC=VALUE, not {item!r}") from None
    return checks


def _ingest_corpus(ingestion: Any, dataset: Path, corpus: Path | None, domain: str) -> None:
    """Ingest the eval corpus (the data set's corpus.jsonl unless given) into the domain, incrementally."""
    corpus = corpus or dataset
    if corpus == dataset and not (dataset / "corpus.jsonl").is_file():
        raise RagError(f"no corpus.jsonl in {dataset}; pass --corpus PATH")
    summary = ingestion.run([corpus], domain)
    typer.echo(
        f"corpus: {summary.documents_added} added, {summary.documents_updated} updated, "
        f"{summary.documents_unchanged} unchanged, {summary.documents_failed} failed ({summary.seconds:.1f}s)",
        err=True,
    )


def _domain_name(dataset: Path) -> str:
    name = "".join(char if char.isalnum() or char in "-_" else "-" for char in dataset.resolve().name.lower())
    return f"eval-{name}"[:63]
