#!/usr/bin/env bash
# Instructions per proxied request, counted by valgrind's callgrind: a figure that stays the same
# on a loaded machine (unlike CPU time), so that a change to the request path can be measured
# while other builds run. The release gateway runs under callgrind in front of the mock upstream
# (which runs natively) and is sent REQUESTS_SMALL, then in a second run REQUESTS requests, from
# CONNS keep-alive connections (the body benches/compare.sh sends: heavy-tailed sticky users);
# the difference of the two runs' totals divided by the difference of the request counts is the
# cost of one more request, start-up, shutdown and idle timers cancelled out. Prints that figure
# and the functions of the larger run with the most instructions (self cost), for profiling.
#
# Usage: benches/callgrind.sh            (live 5%, capture to JSONL on /dev/null, log level info)
#        API=messages STREAM=1 benches/callgrind.sh   (instructions per streamed Messages answer)
# Env: MODE (off|live|shadow, default live), PERCENT (default 5), SINK (jsonl: /dev/null,
#      default; store: the default SQLite store, writer and SQLite included), STREAM (1: SSE),
#      API (chat, default: /v1/chat/completions; responses: /v1/responses; messages:
#      /v1/messages to a provider with `api: anthropic`; the body of benches/compare.sh),
#      REQUESTS (default 3000), REQUESTS_SMALL (default 1000), CONNS (default 8),
#      CANARIST_LOG (default info), TOP (functions listed, default 30),
#      CANARIST_BIN (default: a release build under $CARGO_TARGET_DIR), OUT (keep the
#      callgrind files in this directory).
# Needs: valgrind, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/canarist-target}"
MODE="${MODE:-live}"
PERCENT="${PERCENT:-5}"
SINK="${SINK:-jsonl}"
STREAM="${STREAM:-0}"
API="${API:-chat}"
case "$API" in
  chat|responses) provider=mock ;;
  messages) provider=mock-anthropic ;;
  *) echo "callgrind.sh: API is chat, responses or messages" >&2; exit 2 ;;
esac
REQUESTS="${REQUESTS:-3000}"
REQUESTS_SMALL="${REQUESTS_SMALL:-1000}"
CONNS="${CONNS:-8}"
TOP="${TOP:-30}"
export CANARIST_LOG="${CANARIST_LOG:-info}"

command -v valgrind >/dev/null || { echo "callgrind.sh: valgrind is not installed" >&2; exit 2; }
if [ -z "${CANARIST_BIN:-}" ]; then
  cargo build --quiet --release --locked --bin canarist
  CANARIST_BIN="$CARGO_TARGET_DIR/release/canarist"
fi

WORK="$(mktemp -d)"
OUT="${OUT:-$WORK}"
mkdir -p "$OUT"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 600); do curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }

MOCK_PORT=$(free_port)
CANARIST_LOG=warn "$CANARIST_BIN" mock-upstream --listen "127.0.0.1:$MOCK_PORT" >"$WORK/mock.log" 2>&1 &
PIDS+=($!)
wait_port "$MOCK_PORT"

case "$SINK" in
  jsonl) capture='capture: { sink: "jsonl:/dev/null" }' ;;
  store) capture="storage: { url: \"sqlite://$WORK/canarist.db\" }" ;;
  *) echo "callgrind.sh: SINK is jsonl or store" >&2; exit 2 ;;
esac

# Sends N requests from CONNS keep-alive connections; fails on any non-200 answer.
load() { # port n
  python3 - "$1" "$2" "$CONNS" "$STREAM" "$API" <<'EOF'
import http.client, json, math, random, sys, threading
port, n, conns, stream = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
api = sys.argv[5]
random.seed(7)
system = "You are a helpful support agent."
bodies = []
for i in range(n):
    user = math.floor(5000 ** random.random())
    question = f"Where is my order #{i}? It was due yesterday."
    if api == "responses":
        body = {"model": "mock-fast", "stream": stream, "user": f"user-{user}",
                "instructions": system, "input": question}
    elif api == "messages":
        body = {"model": "mock-fast", "stream": stream, "max_tokens": 256,
                "metadata": {"user_id": f"user-{user}"}, "system": system,
                "messages": [{"role": "user", "content": question}]}
    else:
        body = {"model": "mock-fast", "stream": stream, "user": f"user-{user}",
                "messages": [{"role": "system", "content": system},
                             {"role": "user", "content": question}]}
    bodies.append(json.dumps(body))
path = {"responses": "/v1/responses", "messages": "/v1/messages"}.get(api, "/v1/chat/completions")
headers = {"content-type": "application/json", "anthropic-version": "2023-06-01"}
failed = []
def worker(k):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for body in bodies[k::conns]:
        c.request("POST", path, body, headers)
        r = c.getresponse()
        r.read()
        if r.status != 200:
            failed.append(r.status)
threads = [threading.Thread(target=worker, args=(k,)) for k in range(conns)]
for t in threads: t.start()
for t in threads: t.join()
if failed:
    sys.exit(f"{len(failed)} requests failed: {failed[:5]}")
EOF
}

# One run under callgrind: N requests, then SIGTERM; prints the run's total instructions.
run() { # n label
  local n=$1 label=$2 port dir
  port=$(free_port)
  dir="$WORK/$label"
  mkdir -p "$dir"
  cat >"$dir/canarist.yaml" <<EOF
listen: 127.0.0.1:$port
providers:
  mock: { base_url: "http://127.0.0.1:$MOCK_PORT/v1", timeout: 60s }
  mock-anthropic: { base_url: "http://127.0.0.1:$MOCK_PORT/v1", api: anthropic, timeout: 60s }
prices:
  mock-fast: { input_per_mtok: 0.15, output_per_mtok: 0.6 }
$capture
deployments:
  - slug: mock-fast
    model: mock-fast
    mode: $MODE
    stable: { provider: $provider, model: mock-fast }
    candidates: [ { name: candidate, provider: $provider, model: mock-fast, percent: $PERCENT } ]
EOF
  (cd "$dir" && exec valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.$label" \
    "$CANARIST_BIN" serve --config canarist.yaml) >"$dir/out.log" 2>&1 &
  local pid=$!
  wait_port "$port"
  load "$port" "$n"
  kill -TERM "$pid"
  wait "$pid" || true
  awk '/^(summary|totals):/ { print $2; exit }' "$OUT/callgrind.$label"
}

small=$(run "$REQUESTS_SMALL" small)
large=$(run "$REQUESTS" large)
per=$(( (large - small) / (REQUESTS - REQUESTS_SMALL) ))
unit=request
[ "$STREAM" = 1 ] && unit=stream
echo "api $API, mode $MODE ${PERCENT}%, sink $SINK, stream $STREAM, log $CANARIST_LOG, $CONNS connections"
echo "instructions: $small for $REQUESTS_SMALL ${unit}s, $large for $REQUESTS"
echo "instructions per $unit: $per"
echo
callgrind_annotate --threshold=99 "$OUT/callgrind.large" 2>/dev/null \
  | awk -v top="$TOP" '/^ *[0-9,]+ \(/ && n < top { print; n++ }'
