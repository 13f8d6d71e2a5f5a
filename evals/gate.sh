#!/usr/bin/env bash
# The retrieval CI gate: every route must stay at or above evals/thresholds.json on the project's own set and,
# when ../shared/data/retrieval exists beside the checkout, on each of its data sets.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${RAG_EVAL_OUT:-reports/eval}
mkdir -p "$out"
runs=()

rag-server eval retrieval --dataset evals/sets/demo --corpus rag_server/demo/corpus --domain eval-demo \
    --route all --json "$out/demo.json" --thresholds evals/thresholds.json --threshold-set demo
runs+=("$out/demo.json")

shared=../shared/data/retrieval
if [ -d "$shared" ]; then
    for dataset in "$shared"/*/; do
        name=$(basename "$dataset")
        rag-server eval retrieval --dataset "$dataset" --route all --json "$out/$name.json" \
            --thresholds evals/thresholds.json --threshold-set "$name"
        runs+=("$out/$name.json")
    done
else
    echo "no $shared: the shared data sets are skipped" >&2
fi

rag-server eval report "${runs[@]}" --out "$out"
