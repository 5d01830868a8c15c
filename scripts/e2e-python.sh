#!/usr/bin/env bash
# End-to-end test with the official OpenAI Python SDK as canarist's client: starts
# `canarist demo --keep-running --fast --scenario good`, reads the connection details from its
# last output line, and runs tests/python/test_openai_sdk.py against the gateway (plain and
# streaming chat completions, an error case, the variant header of the raw response).
# The SDK comes from PyPI into a virtual environment cached under ~/.cache (reused when present).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/canarist-target}"
VENV="${CANARIST_E2E_VENV:-$HOME/.cache/canarist-e2e-venv}"

if ! "$VENV/bin/python" -c "import openai" >/dev/null 2>&1; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet "openai>=1.40,<3"
fi
"$VENV/bin/python" -c "import openai; print('openai SDK', openai.__version__)"

cargo build --quiet --bin canarist
BIN="$CARGO_TARGET_DIR/debug/canarist"
WORK="$(mktemp -d)"
cleanup() {
  if [ -n "${PID:-}" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

CANARIST_LOG=warn "$BIN" demo --keep-running --fast --scenario good --dir "$WORK/demo" \
  >"$WORK/demo.out" 2>"$WORK/demo.err" &
PID=$!
DETAILS=""
for _ in $(seq 1 360); do
  DETAILS="$(grep '^{' "$WORK/demo.out" | tail -1 || true)"
  [ -n "$DETAILS" ] && break
  if ! kill -0 "$PID" 2>/dev/null; then
    echo "canarist demo exited before printing its connection details:"
    tail -20 "$WORK/demo.out" "$WORK/demo.err"
    exit 1
  fi
  sleep 0.5
done
if [ -z "$DETAILS" ]; then
  echo "canarist demo did not print its connection details in time"
  tail -20 "$WORK/demo.out" "$WORK/demo.err"
  exit 1
fi
grep '^outcome:' "$WORK/demo.out" || true
echo "demo: $DETAILS"

status=0
CANARIST_DEMO="$DETAILS" "$VENV/bin/python" tests/python/test_openai_sdk.py || status=$?
if [ "$status" -ne 0 ]; then
  echo "--- demo stderr (tail) ---"
  tail -30 "$WORK/demo.err"
fi
exit "$status"
