#!/usr/bin/env bash
# Routing across data sets: oracle labels from the TRAIN sets train a router that is stored for the TEST sets'
# domains, then routed retrieval on the TEST sets is compared with every fixed route and the oracle.
#   bash evals/routing_folds.sh "cranfield msmarco" "dbpedia business-reports"
set -euo pipefail
cd "$(dirname "$0")/.."
train=${1:?train sets}
test=${2:?test sets}
shared=${RAG_SHARED_RETRIEVAL:-../shared/data/retrieval}
out=${RAG_EVAL_OUT:-reports/routing}
mkdir -p "$out"
data=()
for name in $train; do
    rag-server eval routing --dataset "$shared/$name" --json "$out/oracle-$name.json" \
        --write-labels "$out/oracle-$name.jsonl" >/dev/null
    data+=(--data "$out/oracle-$name.jsonl")
done
for name in $test; do
    rag-server train-router "${data[@]}" --domain "eval-$name"
    rag-server eval routing --dataset "$shared/$name" --json "$out/routed-$name.json"
done
