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

# The sql route: no gold query rejected (project set, and defog when present); the offline generator's accuracy
# on the project's analytical questions stays at its measured level (0.733 on 2026-11-25, minus 0.03).
rag-server eval sql --dataset evals/sets/demo --tables rag_server/demo/tables --gold --json "$out/sql-gold-demo.json"
rag-server eval sql --dataset evals/sets/demo --tables rag_server/demo/tables --json "$out/sql-demo.json" \
    --min-accuracy 0.7
# The router on the project's own set: hand labels, analytical questions included (0.911 here and in a
# clean-clone CI run on 2026-11-25, 0.900 in an earlier CI run; the floor is the lower one minus 0.01).
# Its tables first: the demo's labeled questions are featurized against the domain's tables (trained without
# them, on a fresh database, the router cross-validated 0.851 and routed 0.856 of the set right).
rag-server ingest rag_server/demo/tables --domain eval-demo
# --no-gate: stored whatever the held-out comparison says, since the routing eval right after is the check.
rag-server train-router --data rag_server/demo/routing.jsonl --domain eval-demo --no-gate
rag-server eval routing --dataset evals/sets/demo --corpus rag_server/demo/corpus --domain eval-demo \
    --tables rag_server/demo/tables --json "$out/routing-demo.json" --min-accuracy 0.89

# Answers on the project's own set (documents, analytical questions, unanswerable ones), offline answerer at the
# default operating point, after the router training above. Floors set one question below the figures measured
# on 2026-12-03 (containment 0.882, 15 of 17; citation accuracy 0.889; abstention precision and recall 0.833).
# Since the calibration refit of the same day (docs/answers.md): containment 0.824 (14 of 17, on the floor),
# citation accuracy 0.889, abstention precision 0.714 (5 of 7), recall 0.833; the floors were left where they were.
rag-server eval answers --dataset evals/sets/demo --corpus rag_server/demo/corpus --tables rag_server/demo/tables \
    --domain eval-demo --json "$out/answers-demo.json" \
    --min contains_answer=0.82 --min citation_accuracy=0.83 \
    --min abstention_precision=0.66 --min abstention_recall=0.66

defog=../shared/data/sql/defog
if [ -d "$defog" ]; then
    rag-server eval sql --dataset "$defog" --gold --json "$out/sql-gold-defog.json"
    # Measured 11 of 70 right, none wrong (0.157 on 2026-11-25); the floor is that minus 0.03.
    rag-server eval sql --dataset "$defog" --json "$out/sql-defog.json" --min-accuracy 0.12
else
    echo "no $defog: the defog gold check is skipped" >&2
fi
