#!/usr/bin/env bash
# The official `openai` (Responses API) and `anthropic` (Messages API) Python SDKs against
# `canarist mock-upstream` directly: runs tests/python/test_apis_sdk.py (plain and streaming
# answers, count_tokens, errors). The gateway does not route these paths yet.
# The SDKs come from PyPI into a virtual environment cached under ~/.cache (reused when present).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/canarist-target}"
VENV="${CANARIST_E2E_VENV:-$HOME/.cache/canarist-e2e-venv}"

if ! "$VENV/bin/python" -c "import openai, anthropic" >/dev/null 2>&1; then
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet "openai>=1.66,<3" "anthropic>=0.40,<1"
fi
"$VENV/bin/python" -c "import openai, anthropic; print('openai SDK', openai.__version__, '/ anthropic SDK', anthropic.__version__)"

# The binary the integration tests build (`cargo build --bin` alone resolves other features).
BIN="${CANARIST_BIN:-$CARGO_TARGET_DIR/debug/canarist}"
[ -x "$BIN" ] || cargo build --quiet --bin canarist
PORT="${CANARIST_MOCK_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}"
CANARIST_LOG=warn "$BIN" mock-upstream --listen "127.0.0.1:$PORT" &
PID=$!
trap 'kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$PORT/v1/models" >/dev/null && break
  sleep 0.1
done
CANARIST_MOCK_URL="http://127.0.0.1:$PORT" "$VENV/bin/python" tests/python/test_apis_sdk.py
