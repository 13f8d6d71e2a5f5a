"""Reports of eval runs: a Markdown table and a PNG chart comparing routes per data set."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10", "latency_ms_p50", "latency_ms_p95")


def markdown_table(runs: Sequence[dict[str, Any]]) -> str:
    """One row per data set and route, from the `as_dict()` of eval reports."""
    lines = [
        "| dataset | route | queries | " + " | ".join(METRICS) + " |",
        "|---|---|---:|" + "---:|" * len(METRICS),
    ]
    for run in runs:
        name = Path(run["dataset"]).name
        for route, summary in run["routes"].items():
            cells = " | ".join(f"{summary[metric]:.3f}" if metric in summary else "" for metric in METRICS)
            lines.append(f"| {name} | {route} | {run['queries']} | {cells} |")
    return "\n".join(lines) + "\n"


def write_markdown(runs: Sequence[dict[str, Any]], path: Path) -> None:
    """The table, and per query kind where a set labels kinds."""
    parts = ["# Retrieval eval\n", markdown_table(runs)]
    for run in runs:
        by_kind = run.get("by_kind") or {}
        if not by_kind:
            continue
        parts.append(f"\n## {Path(run['dataset']).name}: nDCG@10 by query kind\n")
        kinds = sorted({kind for per_route in by_kind.values() for kind in per_route})
        parts.append("| route | " + " | ".join(kinds) + " |\n|---|" + "---:|" * len(kinds) + "\n")
        for route, per_kind in by_kind.items():
            parts.append(
                f"| {route} | " + " | ".join(f"{per_kind[k]['ndcg@10']:.3f}" for k in kinds) + " |\n"
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(parts))


def write_chart(runs: Sequence[dict[str, Any]], path: Path, metric: str = "ndcg@10") -> None:
    """Grouped bars: `metric` per route, one group per data set."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    datasets = [Path(run["dataset"]).name for run in runs]
    routes = list(dict.fromkeys(route for run in runs for route in run["routes"]))
    width = 0.8 / max(len(routes), 1)
    figure, axes = plt.subplots(figsize=(max(6, 1.8 * len(datasets)), 4))
    for number, route in enumerate(routes):
        values = [run["routes"].get(route, {}).get(metric, 0.0) for run in runs]
        positions = [index + number * width for index in range(len(runs))]
        axes.bar(positions, values, width, label=route)
    axes.set_xticks([index + width * (len(routes) - 1) / 2 for index in range(len(runs))], datasets)
    axes.set_ylabel(metric)
    axes.set_ylim(0, 1)
    axes.set_title(f"{metric} by route")
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
