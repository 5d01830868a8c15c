#!/usr/bin/env bash
# End-to-end test of the dashboard at /ui in headless Chromium. Installs Debian's `chromium`
# (apt-get, only when /usr/bin/chromium is missing) and `playwright-core` from npm into
# ~/.cache/canarist-ui, starts the real binary with fixtures/ui/dashboard.yaml and its mock
# upstream, starts a rollout and promotes it once through the admin API, sends a little traffic,
# then runs tests/ui/dashboard.mjs: the page loads, an admin key is entered, the deployment is
# listed (its URL names it), the summary card names both upstream models and the rollout's state,
# the ramp chart has every stage of the ramp, shadow drawn as a 0%-served band and "you are here"
# on the current stage, the forest plot draws exactly the gate's evidence intervals (in the
# dashboard and in the report; unbounded ones dashed and labelled), the chart over time ends on
# each cell's evidence interval (and the controller recorded the stage's evaluations), at 1200 px
# the gate table is one line per row and fits (dashboard and report), the shadow split reads
# "mirrored 100% / served 0%", switching from a viewer to an admin key shows the action buttons
# without reselecting, a stage report opens under its signed URL, a rollback click (with
# a reason) changes the state shown and the summary card and leaves Promote and Approve disabled
# with the reason on hover, and the rollback's alert (received by
# the test on 127.0.0.1:18282) links to the deployment's stage and report, which open in a fresh
# tab. Screenshots of the report and of the dashboard are saved as report.png and dashboard.png
# in $CANARIST_UI_ARTIFACTS (default $CARGO_TARGET_DIR/ui-artifacts; never committed). Exit
# status: the browser test's.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/canarist-target}"
CACHE="${CANARIST_UI_CACHE:-$HOME/.cache/canarist-ui}"
ARTIFACTS="${CANARIST_UI_ARTIFACTS:-$CARGO_TARGET_DIR/ui-artifacts}"
BASE=http://127.0.0.1:18181

if [ ! -x /usr/bin/chromium ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
fi
if [ ! -d "$CACHE/node_modules/playwright-core" ]; then
  mkdir -p "$CACHE"
  [ -f "$CACHE/package.json" ] || echo '{"private": true}' > "$CACHE/package.json"
  npm install --prefix "$CACHE" --no-audit --no-fund --silent "playwright-core@^1"
fi

WORK="$(mktemp -d)"
cleanup() {
  if [ -n "${PID:-}" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
# A private copy: the shared target dir's binary may be rebuilt from another checkout meanwhile.
cargo build --quiet --bin canarist
cp "$CARGO_TARGET_DIR/debug/canarist" "$WORK/canarist"
BIN="$WORK/canarist"

cp fixtures/ui/dashboard.yaml "$WORK/canarist.yaml"
printf 'storage:\n  url: sqlite://%s/canarist.db\n' "$WORK" >> "$WORK/canarist.yaml"
ADMIN_KEY="$("$BIN" keys create --role admin --name e2e-admin --config "$WORK/canarist.yaml" 2>/dev/null)"
VIEWER_KEY="$("$BIN" keys create --role viewer --name e2e-viewer --config "$WORK/canarist.yaml" 2>/dev/null)"

CANARIST_LOG=warn "$BIN" serve --config "$WORK/canarist.yaml" \
  --with-mock-upstream 127.0.0.1:19191 >"$WORK/serve.log" 2>&1 &
PID=$!
for _ in $(seq 1 100); do
  curl -fs "$BASE/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done

admin() { curl -fsS -X POST -H "Authorization: Bearer $ADMIN_KEY" -H 'Content-Type: application/json' \
  -d "{\"reason\": \"$2\"}" "$BASE/v1/deployments/support/rollout$1" >/dev/null; }
chat() {
  for i in $(seq 1 "$1"); do
    curl -fsS -H 'Content-Type: application/json' -H "x-canarist-unit: $2$i" \
      -d '{"model": "support", "messages": [{"role": "user", "content": "My order has not arrived."}]}' \
      "$BASE/v1/chat/completions" >/dev/null
  done
}
admin "" "e2e: start the ramp"
chat 40 shadow-user-
admin /promote "e2e: shadow looks fine"
chat 20 canary-user-

mkdir -p "$ARTIFACTS"
status=0
BASE="$BASE" ADMIN_KEY="$ADMIN_KEY" VIEWER_KEY="$VIEWER_KEY" PLAYWRIGHT_DIR="$CACHE" \
  ARTIFACTS="$ARTIFACTS" node tests/ui/dashboard.mjs || status=$?
if [ "$status" -ne 0 ]; then
  echo "--- gateway log (tail) ---"
  tail -50 "$WORK/serve.log"
fi
exit "$status"
