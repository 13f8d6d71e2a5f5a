#!/usr/bin/env bash
# A new user's install, outside the checkout: build the wheel, install it with CPU torch in a fresh venv, start
# `rag-server serve --demo` until /healthz answers, search it over HTTP, and ingest a small folder with the CLI.
# Exits non-zero on any failure and always stops the server. The first `serve --demo` takes a few minutes: it
# embeds the demo corpus and trains the demo router.
#   usage: tools/check_wheel.sh     PORT=8765 by default; KEEP=1 keeps the scratch folder; REF=HEAD (or any
#                                   commit) builds from that commit instead of the working tree
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
port=${PORT:-8765}
work=$(mktemp -d /tmp/rag-wheel-XXXXXX)
server=

stop() {
    if [ -n "$server" ] && kill -0 "$server" 2>/dev/null; then
        kill -TERM "$server"
        # uvicorn stops gracefully, then the embedded PostgreSQL; give it a minute before killing it.
        for _ in $(seq 60); do kill -0 "$server" 2>/dev/null || break; sleep 1; done
        kill -KILL "$server" 2>/dev/null || true
    fi
    if [ "${KEEP:-0}" = 1 ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap stop EXIT

step() { echo "== $* ($(date +%T))" >&2; }

step "build the wheel from a copy of the sources (${REF:-working tree})"
mkdir "$work/src"
if [ -n "${REF:-}" ]; then
    git -C "$repo" archive "$REF" pyproject.toml README.md rag_server ingest evals sql | tar -x -C "$work/src"
else
    cp -a "$repo"/{pyproject.toml,README.md,rag_server,ingest,evals,sql} "$work/src/"
fi
python3 -m pip wheel --no-deps -q -w "$work/dist" "$work/src"
wheel=$(ls "$work"/dist/rag_server-*.whl)

step "install it in a fresh venv (CPU torch first)"
python3 -m venv "$work/venv"
. "$work/venv/bin/activate"
# The CPU build of torch from PyTorch's index; where that index is unreachable pip gives up at once
# (--retries 1) and takes torch from its configured find-links or indexes.
pip install -q --retries 1 --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
pip install -q "$wheel"

cd "$work"
export RAG_DATA_DIR="$work/data"
rag-server --version

step "serve --demo on port $port"
rag-server serve --demo --port "$port" >"$work/serve.log" 2>&1 &
server=$!
deadline=$((SECONDS + 900))
until curl -sf "http://127.0.0.1:$port/healthz" >/dev/null; do
    if ! kill -0 "$server" 2>/dev/null || [ "$SECONDS" -gt "$deadline" ]; then
        echo "the demo server did not come up:" >&2
        cat "$work/serve.log" >&2
        exit 1
    fi
    sleep 2
done

step "search the demo over HTTP"
curl -sf "http://127.0.0.1:$port/v1/search" -H 'content-type: application/json' \
    -d '{"query": "what does ERR-4012 mean"}' >"$work/search.json"
python3 - "$work/search.json" <<'PY'
import json, sys

body = json.load(open(sys.argv[1]))
assert body["results"], body
assert any("ERR-4012" in hit["text"] for hit in body["results"]), body
print(f"search: route {body['route']}, {len(body['results'])} results", file=sys.stderr)
PY

step "ask the demo over HTTP: a cited answer, and an abstention with its reason"
curl -sf "http://127.0.0.1:$port/v1/ask" -H 'content-type: application/json' \
    -d '{"question": "What does ERR-4013 mean?"}' >"$work/answer.json"
curl -sf "http://127.0.0.1:$port/v1/ask" -H 'content-type: application/json' \
    -d '{"question": "What is the CEO'"'"'s favourite colour?"}' >"$work/abstained.json"
python3 - "$work/answer.json" "$work/abstained.json" <<'PY'
import json, sys

answer, abstained = (json.load(open(path)) for path in sys.argv[1:3])
assert not answer["abstained"] and answer["citations"], answer
assert abstained["abstained"] and abstained["abstention_reason"], abstained
print(f"ask: {answer['answer']!r}; {abstained['answer']!r}", file=sys.stderr)
PY

step "ingest a small folder with the CLI"
mkdir -p "$work/docs/notes"
printf '# Kettle\n\nThe kettle descales with citric acid every month.\n' >"$work/docs/kettle.md"
printf 'Plants on the balcony need water twice a week in summer.\n' >"$work/docs/notes/plants.txt"
rag-server ingest "$work/docs" --domain smoke --json >"$work/ingest.json"
python3 - "$work/ingest.json" <<'PY'
import json, sys

summary = json.load(open(sys.argv[1]))
print(f"ingest: {summary}", file=sys.stderr)
assert summary["documents_added"] == 2, summary
PY
rag-server search "descale the kettle" --domain smoke | grep -q citric

step "stop the server"
kill -TERM "$server"
wait "$server" || true
server=
grep -q "Application shutdown complete" "$work/serve.log" || { cat "$work/serve.log" >&2; exit 1; }
step "the wheel installs, serves the demo, answers, searches and ingests"
