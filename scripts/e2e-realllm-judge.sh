#!/usr/bin/env bash
# End-to-end test of the judge against a real model server: llama.cpp's OpenAI-compatible server
# with SmolLM2-135M-Instruct (../shared/realllm). Installs it (once; later runs reuse
# ~/.cache/realllm), starts it on a free port, runs the ignored Rust test
# `judge::realllm::judge_realllm_*` with its URL in CANARIST_REALLLM_URL, and stops the server on
# exit. Only the real path is checked (prompts, strict JSON-schema output parsed into stamped
# judgments); the tiny model's verdicts are not.
#
# Env: REALLLM_DIR (where setup.sh and serve.sh live), REALLLM_HOME (install dir, see setup.sh),
# REALLLM_SKIP_GEMMA (default 1 here: the judge needs only smollm2).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/canarist-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export REALLLM_SKIP_GEMMA="${REALLLM_SKIP_GEMMA:-1}"

if [ -z "${REALLLM_DIR:-}" ]; then
  for d in "$PWD/../shared/realllm" "$PWD/../../shared/realllm" /work/shared/realllm; do
    if [ -x "$d/serve.sh" ]; then REALLLM_DIR="$(cd "$d" && pwd)"; break; fi
  done
fi
[ -n "${REALLLM_DIR:-}" ] || { echo "e2e-realllm-judge: realllm not found (set REALLLM_DIR)" >&2; exit 1; }

"$REALLLM_DIR/setup.sh"

# Build first so that the server does not sit idle while the test compiles.
cargo test --test it --no-run --quiet

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
log="$(mktemp -t canarist-realllm.XXXXXX)"
"$REALLLM_DIR/serve.sh" "$port" smollm2 >"$log" 2>&1 &
server=$!
stop() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -f "$log"
}
trap stop EXIT

url=""
for _ in $(seq 1 120); do
  url="$(sed -n 's/^REALLLM READY .*url=\([^ ]*\).*/\1/p' "$log" | head -1)"
  [ -n "$url" ] && break
  kill -0 "$server" 2>/dev/null || { cat "$log" >&2; echo "e2e-realllm-judge: the server exited" >&2; exit 1; }
  sleep 0.5
done
[ -n "$url" ] || { cat "$log" >&2; echo "e2e-realllm-judge: the server did not start" >&2; exit 1; }
echo "e2e-realllm-judge: smollm2 at $url"

out="$(mktemp -t canarist-realllm-test.XXXXXX)"
trap 'stop; rm -f "$out"' EXIT
CANARIST_REALLLM_URL="$url" cargo test --test it judge_realllm -- --ignored --nocapture 2>&1 | tee "$out"
# A filter that matches nothing also "passes": make sure the test ran.
grep -q "test result: ok. 1 passed" "$out" || { echo "e2e-realllm-judge: the test did not run" >&2; exit 1; }
