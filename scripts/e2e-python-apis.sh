#!/usr/bin/env bash
# The official `openai` (Responses API) and `anthropic` (Messages API) Python SDKs against
# `canarist mock-upstream` directly, then against `canarist serve` in front of that mock: runs
# tests/python/test_apis_sdk.py twice (plain and streaming answers, a tool call, count_tokens,
# errors; through the gateway also the variant header and the captured pairs), then
# tests/python/test_cross_api_sdk.py through the gateway: each SDK served by a candidate on the
# other API (openai chat ↔ an Anthropic candidate, anthropic messages ↔ a chat candidate), and
# tests/python/test_agents_sdk.py through the gateway: the OpenAI Agents SDK (`openai-agents`,
# which drives the Responses API) running an agent plain, streamed and with a tool.
# The SDKs come from PyPI into virtual environments cached under ~/.cache (reused when present);
# the Agents SDK has its own, as it needs a newer `openai` than the pin above.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/canarist-target}"
VENV="${CANARIST_E2E_VENV:-$HOME/.cache/canarist-e2e-venv}"

if ! "$VENV/bin/python" -c "import openai, anthropic" >/dev/null 2>&1; then
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet "openai>=1.66,<3" "anthropic>=0.40,<1"
fi
"$VENV/bin/python" -c "import openai, anthropic; print('openai SDK', openai.__version__, '/ anthropic SDK', anthropic.__version__)"
AGENTS_VENV="${CANARIST_AGENTS_VENV:-$HOME/.cache/canarist-agents-venv}"
if ! "$AGENTS_VENV/bin/python" -c "import agents" >/dev/null 2>&1; then
  [ -x "$AGENTS_VENV/bin/python" ] || python3 -m venv "$AGENTS_VENV"
  "$AGENTS_VENV/bin/pip" install --quiet "openai-agents>=0.24,<1"
fi
"$AGENTS_VENV/bin/python" -c "import agents, openai; from importlib.metadata import version; print('openai-agents', version('openai-agents'), 'on openai', openai.__version__)"

# The binary the integration tests build (`cargo build --bin` alone resolves other features).
BIN="${CANARIST_BIN:-$CARGO_TARGET_DIR/debug/canarist}"
[ -x "$BIN" ] || cargo build --quiet --bin canarist
PORT="${CANARIST_MOCK_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}"
CANARIST_LOG=warn "$BIN" mock-upstream --listen "127.0.0.1:$PORT" &
PID=$!
WORK="$(mktemp -d)"
GW_PID=""
cleanup() {
  [ -n "$GW_PID" ] && { kill "$GW_PID" 2>/dev/null || true; wait "$GW_PID" 2>/dev/null || true; }
  kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$PORT/v1/models" >/dev/null && break
  sleep 0.1
done
echo "--- the SDKs against the mock upstream"
CANARIST_MOCK_URL="http://127.0.0.1:$PORT" "$VENV/bin/python" tests/python/test_apis_sdk.py

# The gateway in front of the same mock: one deployment per API, shadowed to a candidate.
GW_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
cat >"$WORK/canarist.yaml" <<YAML
listen: 127.0.0.1:$GW_PORT
providers:
  mock: { base_url: "http://127.0.0.1:$PORT/v1", timeout: 30s }
  mock-anthropic: { base_url: "http://127.0.0.1:$PORT/v1", api: anthropic, timeout: 30s }
prices:
  mock-stable: { input_per_mtok: 0.15, output_per_mtok: 0.60 }
  mock-candidate-good: { input_per_mtok: 0.10, output_per_mtok: 0.40 }
deployments:
  - slug: responses-bot
    model: responses-bot
    mode: shadow
    stable: { provider: mock, model: mock-stable }
    candidates: [ { name: candidate, provider: mock, model: mock-candidate-good, percent: 100 } ]
  - slug: claude-bot
    model: claude-bot
    mode: shadow
    stable: { provider: mock-anthropic, model: mock-stable }
    candidates: [ { name: candidate, provider: mock-anthropic, model: mock-candidate-good, percent: 100 } ]
  - slug: claude-tools
    model: claude-tools
    mode: shadow
    stable: { provider: mock-anthropic, model: mock-tools }
    candidates: [ { name: candidate, provider: mock-anthropic, model: mock-tools-broken, percent: 100 } ]
  - { slug: responses-tools, model: responses-tools, mode: off, stable: { provider: mock, model: mock-tools } }
  - { slug: claude-tools-broken, model: claude-tools-broken, mode: off, stable: { provider: mock-anthropic, model: mock-tools-broken } }
  - { slug: responses-429, model: responses-429, mode: off, stable: { provider: mock, model: mock-429 } }
  - { slug: claude-429, model: claude-429, mode: off, stable: { provider: mock-anthropic, model: mock-429 } }
  # A candidate on the other API, serving every request through a translation.
  - slug: gpt-to-claude
    mode: live
    stable: { provider: mock, model: mock-stable }
    candidates: [ { name: claude, provider: mock-anthropic, model: mock-candidate-good, percent: 100 } ]
  - slug: gpt-to-claude-tools
    mode: live
    stable: { provider: mock, model: mock-tools }
    candidates: [ { name: claude, provider: mock-anthropic, model: mock-tools, percent: 100 } ]
  - slug: claude-to-gpt
    mode: live
    stable: { provider: mock-anthropic, model: mock-stable }
    candidates: [ { name: gpt, provider: mock, model: mock-candidate-good, percent: 100 } ]
  - slug: claude-to-gpt-tools
    mode: live
    stable: { provider: mock-anthropic, model: mock-tools }
    candidates: [ { name: gpt, provider: mock, model: mock-tools, percent: 100 } ]
storage: { url: "sqlite://$WORK/canarist.db" }
capture: { sink: "jsonl:$WORK/captures.jsonl", flush_interval: 10ms }
YAML
CANARIST_LOG=warn "$BIN" serve --config "$WORK/canarist.yaml" >"$WORK/serve.out" 2>"$WORK/serve.err" &
GW_PID=$!
for _ in $(seq 1 200); do
  curl -sf "http://127.0.0.1:$GW_PORT/healthz" >/dev/null && break
  sleep 0.1
done
echo "--- the SDKs against canarist in front of the mock upstream"
status=0
CANARIST_GATEWAY_URL="http://127.0.0.1:$GW_PORT" "$VENV/bin/python" tests/python/test_apis_sdk.py || status=$?
echo "--- the SDKs against candidates on the other API (Chat Completions <-> Messages)"
CANARIST_GATEWAY_URL="http://127.0.0.1:$GW_PORT" "$VENV/bin/python" tests/python/test_cross_api_sdk.py || status=$?
echo "--- the OpenAI Agents SDK (Responses API) through the gateway"
CANARIST_GATEWAY_URL="http://127.0.0.1:$GW_PORT" "$AGENTS_VENV/bin/python" tests/python/test_agents_sdk.py || status=$?
# Both APIs' requests were mirrored and captured as pairs.
for endpoint in responses messages; do
  for _ in $(seq 1 100); do
    grep -q "\"kind\":\"pair\".*\"endpoint\":\"$endpoint\"" "$WORK/captures.jsonl" 2>/dev/null && break
    sleep 0.1
  done
  if ! grep -q "\"kind\":\"pair\".*\"endpoint\":\"$endpoint\"" "$WORK/captures.jsonl" 2>/dev/null; then
    echo "no captured $endpoint pair in $WORK/captures.jsonl"
    status=1
  fi
done
if [ "$status" -ne 0 ]; then
  echo "--- serve stderr (tail) ---"
  tail -30 "$WORK/serve.err"
fi
exit "$status"
