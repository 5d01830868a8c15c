#!/usr/bin/env bash
# Schema-based fuzz of the admin API: starts the real binary with fixtures/admin/fuzz.yaml and an
# owner key, then runs schemathesis (from PyPI, in a venv cached under ~/.cache) against
# /openapi.json, checking that no response is a 5xx and that every response conforms to the
# document (status code, content type, headers, body schema). Bounded in time (FUZZ_SECONDS,
# default 90). Exit status: schemathesis's.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/canarist-target}"
VENV="${CANARIST_FUZZ_VENV:-$HOME/.cache/canarist-fuzz-venv}"
SECONDS_BUDGET="${FUZZ_SECONDS:-90}"

if [ ! -x "$VENV/bin/schemathesis" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet "schemathesis>=4,<5"
fi

cargo build --quiet --bin canarist
BIN="$CARGO_TARGET_DIR/debug/canarist"
WORK="$(mktemp -d)"
cleanup() {
  if [ -n "${PID:-}" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

cp fixtures/admin/fuzz.yaml "$WORK/canarist.yaml"
printf 'storage:\n  url: sqlite://%s/canarist.db\n' "$WORK" >> "$WORK/canarist.yaml"
KEY="$("$BIN" keys create --role owner --name fuzz --config "$WORK/canarist.yaml" 2>/dev/null)"

CANARIST_LOG=warn "$BIN" serve --config "$WORK/canarist.yaml" \
  --with-mock-upstream 127.0.0.1:19090 >"$WORK/serve.log" 2>&1 &
PID=$!
for _ in $(seq 1 100); do
  curl -fs http://127.0.0.1:18080/healthz >/dev/null 2>&1 && break
  sleep 0.1
done

status=0
"$VENV/bin/schemathesis" run http://127.0.0.1:18080/openapi.json \
  --header "Authorization: Bearer $KEY" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
  --max-examples "${FUZZ_MAX_EXAMPLES:-25}" \
  --max-time "$SECONDS_BUDGET" \
  --request-timeout 10 \
  --workers 2 \
  --seed "${FUZZ_SEED:-1}" || status=$?
if [ "$status" -ne 0 ]; then
  echo "--- gateway log (tail) ---"
  tail -50 "$WORK/serve.log"
fi
exit "$status"
