"""`rag-server bench ingest|retrieval|router|answer|rerank|domains|api`: printed ratios, written as JSON."""

from __future__ import annotations

from pathlib import Path

import typer

from rag_server.cli._common import database, reports_errors, settings, write_json
from rag_server.domains import delete_domain
from rag_server.embedding import get_embedder

app = typer.Typer(help="Benchmarks: measured side by side in one run, written as JSON.", no_args_is_help=True)


@app.command("ingest")
@reports_errors
def bench_ingest(
    corpus: Path = typer.Option(
        ..., exists=True, help="A folder or file to ingest (any format ingest takes)."
    ),
    domain: str = typer.Option("bench-ingest", help="Scratch domain; dropped and re-created."),
    keep: bool = typer.Option(False, help="Keep the scratch domain afterwards."),
    output: Path = typer.Option(Path("reports/bench-ingest.json"), "--json", help="Where to write the JSON."),
) -> None:
    """End-to-end ingestion chunks/s against raw SentenceTransformer.encode chunks/s, and peak RSS."""
    from evals.bench_ingest import run_ingest_bench
    from ingest.pipeline import IngestOptions
    from rag_server.retrieval.analyzer import configured_analyzer

    current = settings()
    analyzer = configured_analyzer(current)
    with database(current) as pool:
        result = run_ingest_bench(
            pool, get_embedder(current), analyzer, IngestOptions.from_settings(current), corpus, domain
        )
        if not keep:
            with pool.connection() as conn:
                delete_domain(conn, domain, missing_ok=True)
    write_json(output, result.as_dict())
    typer.echo(
        f"{result.documents} documents, {result.chunks} chunks\n"
        f"ingest end-to-end : {result.ingest_chunks_per_s:8.1f} chunks/s ({result.ingest_seconds:.1f} s)\n"
        f"raw encode        : {result.encode_chunks_per_s:8.1f} chunks/s ({result.encode_seconds:.1f} s)\n"
        f"ratio             : {result.ratio:.1%} of raw encode (target >= 85%)\n"
        f"peak RSS          : {result.peak_rss_mb:.0f} MB; by quarter of the run: {result.rss_mb_by_quarter}\n"
        f"written to {output}"
    )


@app.command("router")
@reports_errors
def bench_router(
    domain: str = typer.Option(
        "demo", "--domain", "-d", help="Domain to route for (demo: ingested if missing)."
    ),
    questions: list[Path] = typer.Option(
        None,
        "--questions",
        exists=True,
        help="JSON-lines files with a text field (default: the demo's labeled questions).",
    ),
    rounds: int = typer.Option(3, min=1, help="Passes over the questions."),
    output: Path = typer.Option(Path("reports/bench-router.json"), "--json", help="Where to write the JSON."),
) -> None:
    """Router latency p50/p95 next to the embedding and a hybrid search on the same questions."""
    from evals.bench_router import load_questions, run_router_bench
    from rag_server.demo import DEMO_DOMAIN, routing_data
    from rag_server.domains import get_domain
    from rag_server.errors import NotFound
    from rag_server.retrieval.search import Searcher
    from rag_server.services.demo import setup_demo

    current = settings()
    with database(current) as pool:
        with pool.connection() as conn:
            try:
                found = get_domain(conn, domain)
            except NotFound:
                if domain != DEMO_DOMAIN:
                    raise
                found = None
        if found is None:
            setup_demo(current)
            with pool.connection() as conn:
                found = get_domain(conn, domain)
        texts = load_questions(questions or [routing_data()])
        result = run_router_bench(Searcher(pool, get_embedder(current), current), found, texts, rounds)
    write_json(output, result)
    by_route = ", ".join(
        f"{route} {share:.0%}" for route, share in result["routed_before_embedding_by_route"].items()
    )
    typer.echo(
        f"router p50 {result['router_ms']['p50']} ms (p95 {result['router_ms']['p95']}; target p50 < 5 ms); "
        f"embedding p50 {result['embed_ms']['p50']} ms; hybrid search p50 {result['hybrid_search_ms']['p50']} ms; "
        f"router / hybrid = {result['router_over_hybrid_p50']}; routed before embedding "
        f"{result['routed_before_embedding']:.0%} ({by_route or 'none'}) over {result['samples']} samples -> {output}"
    )


@app.command("retrieval")
@reports_errors
def bench_retrieval(
    chunks: int = typer.Option(100_000, "--chunks", min=1000, max=5_000_000, help="Synthetic corpus size."),
    queries: int = typer.Option(200, min=10, max=10_000, help="Queries per route."),
    rank_bm25_limit: int = typer.Option(
        200_000, help="Compare with rank-bm25 up to this many chunks (it needs minutes and GBs beyond)."
    ),
    domain: str = typer.Option("bench-retrieval", help="Scratch domain; dropped and re-created."),
    keep: bool = typer.Option(False, help="Keep the scratch domain afterwards."),
    output: Path = typer.Option(
        None, "--json", help="Where to write the JSON (default reports/bench-retrieval-N.json)."
    ),
) -> None:
    """Per-route latency on N synthetic chunks; BM25 vs rank-bm25; HNSW recall and speed vs brute force."""
    import sys

    from tqdm import tqdm

    from evals.bench_retrieval import run_retrieval_bench
    from rag_server.retrieval.search import Searcher

    current = settings()
    output = output or Path(f"reports/bench-retrieval-{chunks}.json")
    with database(current) as pool:
        searcher = Searcher(pool, get_embedder(current), current)
        with tqdm(total=chunks, desc="load", unit=" chunk", disable=not sys.stderr.isatty()) as bar:
            result = run_retrieval_bench(
                pool, current, searcher, domain, chunks, queries, rank_bm25_limit, bar.update
            )
        if not keep:
            with pool.connection() as conn:
                delete_domain(conn, domain, missing_ok=True)
    write_json(output, result.as_dict())
    lines = [
        f"{result.chunks} chunks (load {result.load_seconds:.0f}s, HNSW build {result.index_seconds:.0f}s)"
    ]
    for route, latency in result.routes.items():
        lines.append(f"{route:<9} p50 {latency.p50_ms:7.2f} ms   p95 {latency.p95_ms:7.2f} ms")
    lines.append(
        f"semantic recall@10 vs exact: {result.semantic_recall_at_10:.3f}; numpy brute force p50 "
        f"{result.brute_force_ms_p50:.2f} ms -> HNSW {result.hnsw_speedup_vs_brute_force:.1f}x faster"
    )
    if result.rank_bm25_ms_p50 is not None:
        lines.append(
            f"BM25 index p50 {result.bm25_index_ms_p50:.2f} ms vs rank-bm25 {result.rank_bm25_ms_p50:.1f} ms -> "
            f"{result.bm25_speedup_vs_rank_bm25:.0f}x faster; same scores: {result.bm25_scores_equal_rank_bm25}"
        )
    else:
        lines.append(
            f"BM25 index p50 {result.bm25_index_ms_p50:.2f} ms (rank-bm25 skipped above {rank_bm25_limit} chunks)"
        )
    lines.append(f"written to {output}")
    typer.echo("\n".join(lines))


@app.command("domains")
@reports_errors
def bench_domains(
    domains: int = typer.Option(4, "--domains", min=2, max=50, help="Scratch domains sharing one model."),
    chunks: int = typer.Option(
        5_000, "--chunks", min=1000, max=1_000_000, help="Synthetic chunks per domain."
    ),
    queries: int = typer.Option(50, min=5, max=10_000, help="Queries per domain and round."),
    rounds: int = typer.Option(2, min=1, max=10, help="Times the two index layouts are alternated."),
    keep: bool = typer.Option(False, help="Keep the scratch domains afterwards."),
    output: Path = typer.Option(
        Path("reports/bench-domains.json"), "--json", help="Where to write the JSON."
    ),
) -> None:
    """Semantic search with one HNSW index per domain against one per model, on domains sharing a model."""
    import sys

    from tqdm import tqdm

    from evals.bench_domains import drop_domains, run_domains_bench

    current = settings()
    with database(current) as pool:
        try:
            with tqdm(
                total=domains * chunks, desc="load", unit=" chunk", disable=not sys.stderr.isatty()
            ) as bar:
                result = run_domains_bench(pool, current, domains, chunks, queries, rounds, bar.update)
        finally:
            if not keep:
                drop_domains(pool, domains)
    write_json(output, result)
    per_domain, per_model = result["per_domain"], result["per_model"]
    typer.echo(
        f"{domains} domains x {chunks} chunks, {result['searches']} searches a layout at depth {result['depth']}:\n"
        f"one index per domain  p50 {per_domain['p50_ms']:7.2f} ms  p95 {per_domain['p95_ms']:7.2f} ms  "
        f"recall@10 {per_domain['recall_at_10']:.3f}\n"
        f"one index per model   p50 {per_model['p50_ms']:7.2f} ms  p95 {per_model['p95_ms']:7.2f} ms  "
        f"recall@10 {per_model['recall_at_10']:.3f}\n"
        f"per model / per domain p50 = {result['per_model_over_per_domain_p50']}x -> {output}"
    )


@app.command("answer")
@reports_errors
def bench_answer(
    domain: str = typer.Option("demo", "--domain", "-d", help="Domain to ask (demo: ingested if missing)."),
    questions: Path = typer.Option(
        None,
        exists=True,
        dir_okay=False,
        help='JSON lines with a "question" field (default: the demo\'s answer set).',
    ),
    depths: list[int] = typer.Option([20, 50], "--depth", help="Rerank depths to measure (repeatable)."),
    rounds: int = typer.Option(2, min=1, help="Passes over the questions."),
    output: Path = typer.Option(Path("reports/bench-answer.json"), "--json", help="Where to write the JSON."),
) -> None:
    """Pre-generation latency (route + retrieve + rerank + assess) next to the bare search, and the model's
    time to first token and tokens/s when one is configured, at each rerank depth."""
    import json
    from importlib.resources import files

    from evals.bench_answer import run_answer_bench
    from rag_server.demo import DEMO_DOMAIN
    from rag_server.domains import get_domain
    from rag_server.errors import NotFound
    from rag_server.local_llm import local_model
    from rag_server.pipeline import Pipeline
    from rag_server.retrieval.search import Searcher
    from rag_server.services.demo import setup_demo

    text = (
        questions.read_text() if questions else files("evals").joinpath("sets/demo/answers.jsonl").read_text()
    )
    texts = [json.loads(line)["question"] for line in text.splitlines() if line.strip()]
    # RAG_LOCAL_LLM: the packaged local model, served on loopback for the run, gives the TTFT and tokens/s.
    with local_model(settings()) as current, database(current) as pool:
        with pool.connection() as conn:
            try:
                get_domain(conn, domain)
            except NotFound:
                if domain != DEMO_DOMAIN:
                    raise
                setup_demo(current)
        embedder = get_embedder(current)
        pipelines = {}
        for depth in depths:
            at_depth = current.model_copy(update={"rerank_depth": depth, "answer_cache": "off"})
            pipelines[depth] = Pipeline(Searcher(pool, embedder, at_depth), at_depth)
        result = run_answer_bench(pipelines, domain, texts, rounds)
    write_json(output, result)
    for depth, figures in result["depths"].items():
        pre, bare = figures["pre_generation_ms"], figures["search_ms"]
        rate = figures["tokens_per_s"]
        typer.echo(
            f"depth {depth:>3}: pre-generation p50 {pre['p50']:.1f} ms (p95 {pre['p95']:.1f}) against bare search "
            f"p50 {bare['p50']:.1f} ms (p95 {bare['p95']:.1f}): {figures['overhead_ratio_p50']}x; "
            f"ttft p50 {figures['ttft_ms']['p50']:.1f} ms; "
            + (f"{rate['p50']:.1f} tokens/s" if rate else "no model configured (extractive answers)")
        )
    typer.echo(f"written to {output}")


@app.command("rerank")
@reports_errors
def bench_rerank(
    domain: str = typer.Option(
        "demo", "--domain", "-d", help="Domain searched (demo: ingested if missing; else --dataset's corpus)."
    ),
    dataset: Path = typer.Option(
        None,
        "--dataset",
        exists=True,
        file_okay=False,
        help="BEIR folder whose labeled questions are searched and fit the feature model (default: the demo's "
        "set); its corpus.jsonl is ingested into --domain when the domain does not exist.",
    ),
    split: str = typer.Option("test", help="The labeled questions' split."),
    questions: int = typer.Option(30, "--questions", min=1, help="Questions measured (the split's first)."),
    depths: list[int] = typer.Option(
        [20, 50, 100], "--depth", min=1, max=1000, help="Candidates reranked (repeatable)."
    ),
    rounds: int = typer.Option(1, min=1, help="Passes over the questions."),
    cross_encoder: Path = typer.Option(
        None, "--cross-encoder", exists=True, file_okay=False, help="A cross-encoder's folder to measure too."
    ),
    output: Path = typer.Option(Path("reports/bench-rerank.json"), "--json", help="Where to write the JSON."),
) -> None:
    """Each reranker's latency (p50/p95 ms) and candidates/s at each depth, on the same real candidates:
    none, features (fitted here on the labeled questions), remote (RAG_RERANK_URL) and a cross-encoder
    (--cross-encoder); one not configured is listed as skipped."""
    from importlib.resources import files

    from evals.beir import load_queries
    from evals.bench_rerank import BenchInputs, build_rerankers, run_rerank_bench, table
    from ingest.pipeline import Ingestion
    from rag_server.demo import DEMO_DOMAIN
    from rag_server.domains import get_domain
    from rag_server.errors import NotFound, RagError
    from rag_server.retrieval.search import Searcher
    from rag_server.services.demo import setup_demo

    if dataset is None and domain != DEMO_DOMAIN:
        raise RagError("give --dataset FOLDER (labeled questions of the domain) for a domain other than demo")
    folder = dataset or Path(str(files("evals").joinpath("sets/demo")))
    current = settings()
    with database(current) as pool:
        with pool.connection() as conn:
            try:
                get_domain(conn, domain)
                missing = False
            except NotFound:
                missing = True
        if missing and dataset is None:
            setup_demo(current)
        elif missing:
            if not (folder / "corpus.jsonl").is_file():
                raise RagError(f"domain {domain!r} does not exist and {folder} has no corpus.jsonl to ingest")
            Ingestion.from_settings(pool, current).run([folder], domain)
        searcher = Searcher(pool, get_embedder(current), current)
        texts = [query.text for query in load_queries(folder, split)][:questions]
        rerankers = build_rerankers(BenchInputs(searcher, domain, folder, split, cross_encoder))
        result = run_rerank_bench(searcher, domain, texts, rerankers, depths, rounds)
    write_json(output, result)
    typer.echo(f"domain '{domain}', {result['questions']} questions x {rounds} round(s)\n")
    typer.echo(table(result))
    typer.echo(f"written to {output}")


@app.command("api")
@reports_errors
def bench_api(
    domain: str = typer.Option("demo", "--domain", "-d", help="Domain to query (demo: ingested if missing)."),
    workers: int = typer.Option(2, min=1, max=64, help="Worker processes of the server measured."),
    clients: list[int] = typer.Option(
        [1, 8, 32], "--clients", min=1, max=1000, help="Concurrent clients of a level (repeatable)."
    ),
    requests: int = typer.Option(3000, min=1, help="Requests per level and endpoint, at most."),
    seconds: float = typer.Option(20.0, min=0.1, help="Seconds per level and endpoint, at most."),
    question: str = typer.Option(
        None,
        help="The question asked again and again for cached /v1/ask (default: the demo answer set's first).",
    ),
    output: Path = typer.Option(Path("reports/bench-api.json"), "--json", help="Where to write the JSON."),
) -> None:
    """/v1/search and cached /v1/ask under 1, 8, 32 concurrent clients (requests/s, p50, p95) against
    `serve --workers N` on loopback, next to the same calls in-process; then /v1/search again with the server's
    query-vector cache off (every query embedded)."""
    import json
    from importlib.resources import files

    from evals.bench_api import request_headers, run_api_bench, search_levels, served_api, table
    from rag_server.demo import DEMO_DOMAIN
    from rag_server.domains import get_domain
    from rag_server.errors import NotFound
    from rag_server.keys import create_key, revoke_key
    from rag_server.pipeline import Pipeline
    from rag_server.retrieval.search import Searcher
    from rag_server.services.demo import setup_demo

    current = settings()
    text = files("evals").joinpath("sets/demo/answers.jsonl").read_text()
    queries = [json.loads(line)["question"] for line in text.splitlines() if line.strip()]
    with database(current) as pool:
        with pool.connection() as conn:
            try:
                get_domain(conn, domain)
            except NotFound:
                if domain != DEMO_DOMAIN:
                    raise
                setup_demo(current)
        searcher = Searcher(pool, get_embedder(current), current)
        pipeline = Pipeline(searcher, current)
        # Measured as deployed: keys on, a reader key of the domain's project (revoked after the run).
        with pool.connection() as conn:
            owner = conn.execute(
                "SELECT p.name FROM domains d JOIN projects p ON p.id = d.project_id WHERE d.name = %s",
                (domain,),
            ).fetchone()
            assert owner is not None  # the domain was found above
            created = create_key(conn, owner[0], "bench api", "reader", [domain])
        headers = request_headers(created.key)
        try:
            with served_api(workers, {"RAG_AUTH_DISABLED": "0"}) as base_url:
                result = run_api_bench(
                    base_url,
                    searcher,
                    pipeline,
                    domain,
                    queries,
                    question or queries[0],
                    clients,
                    requests,
                    seconds,
                    headers,
                )
            # The same searches once more, each query embedded again: what a stream of new queries costs.
            with served_api(workers, {"RAG_AUTH_DISABLED": "0", "RAG_EMBEDDING_CACHE_SIZE": "0"}) as base_url:
                levels = search_levels(base_url, domain, queries, clients, requests, seconds, headers)
            result["search_uncached"] = {"path": "/v1/search", "embedding_cache": "off", "levels": levels}
        finally:
            with pool.connection() as conn:
                revoke_key(conn, created.info.id)
    result["workers"] = workers
    write_json(output, result)
    typer.echo(f"serve --workers {workers} on loopback, keys on, domain '{domain}'; load from this process\n")
    typer.echo(table(result))
    typer.echo(f"written to {output}")
