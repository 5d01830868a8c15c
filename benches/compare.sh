#!/usr/bin/env bash
# The proxy hop compared in one run: the same closed-loop load (wrk) sent directly to the mock
# upstream, through a plain nginx reverse proxy, and through canarist (live 5% and shadow 10%,
# capture on to the default SQLite store), each proxy pinned to one core with the mock and wrk
# on the other. Prints, per path: requests/s, the proxy's CPU per request (user + system, from
# /proc), p50/p99 latency and what the hop adds over the direct call, peak resident memory, and
# for SSE streams the CPU per stream and the first-event overhead (sequential curl, at one
# connection and under 32 concurrent streams) for each streaming API: Chat Completions, the
# Responses API and Anthropic's Messages API. Two interleaved rounds, so drift shows.
#
# Run on a quiet machine with two cores or more:  benches/compare.sh
# Env: SECS (per measurement, default 8), ROUNDS (default 2), NGINX (default /usr/sbin/nginx),
#      PROXY_CPU / LOAD_CPU (cores for the proxy and for mock + wrk, default 0 and 1),
#      CANARIST_BIN (default: a release build under $CARGO_TARGET_DIR),
#      LOADS (default "instant32 instant128 50ms sse-chat sse-responses sse-messages": which
#      loads to run; e.g. LOADS="sse-chat sse-responses sse-messages" for the streams only),
#      FIRST_EVENTS (sequential streamed calls per first-event figure, default 200).
# Needs: wrk, nginx, curl, taskset (Debian: wrk nginx curl util-linux).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/canarist-target}"
SECS="${SECS:-8}"
ROUNDS="${ROUNDS:-2}"
NGINX="${NGINX:-/usr/sbin/nginx}"
PROXY_CPU="${PROXY_CPU:-0}"
LOAD_CPU="${LOAD_CPU:-1}"
FIRST_EVENTS="${FIRST_EVENTS:-200}"
LOADS="${LOADS:-instant32 instant128 50ms sse-chat sse-responses sse-messages}"

for tool in wrk curl taskset "$NGINX"; do
  command -v "$tool" >/dev/null || { echo "compare.sh: $tool is not installed" >&2; exit 2; }
done
if [ -z "${CANARIST_BIN:-}" ]; then
  cargo build --quiet --release --locked --bin canarist
  CANARIST_BIN="$CARGO_TARGET_DIR/release/canarist"
fi

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 200); do curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }
# CPU seconds (user + system) a process has used, from /proc/PID/stat fields 14 and 15.
cpu_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
peak_rss_mb() { awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }
hz=$(getconf CLK_TCK)

# --- the mock upstream, on the load core -------------------------------------------------------
MOCK_PORT=$(free_port)
CANARIST_LOG=warn taskset -c "$LOAD_CPU" "$CANARIST_BIN" mock-upstream --listen "127.0.0.1:$MOCK_PORT" \
  >"$WORK/mock.log" 2>&1 &
MOCK_PID=$!
PIDS+=($MOCK_PID)
wait_port "$MOCK_PORT"
MOCK="http://127.0.0.1:$MOCK_PORT"

# --- nginx: a proxy hop that does nothing else ---------------------------------------------------
NGINX_PORT=$(free_port)
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<EOF
daemon off; master_process off; worker_processes 1; pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off; client_body_temp_path $WORK/nginx; proxy_temp_path $WORK/nginx;
  upstream mock { server 127.0.0.1:$MOCK_PORT; keepalive 256; }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / { proxy_pass http://mock; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; }
  }
}
EOF
taskset -c "$PROXY_CPU" "$NGINX" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" &
NGINX_PID=$!
PIDS+=($NGINX_PID)

# --- canarist, one process per mode, capture to its own SQLite store -----------------------------
start_canarist() { # name mode percent -> sets GW_PORT, GW_PID
  local name=$1 mode=$2 percent=$3
  GW_PORT=$(free_port)
  mkdir -p "$WORK/$name"
  cat >"$WORK/$name/canarist.yaml" <<EOF
listen: 127.0.0.1:$GW_PORT
providers:
  mock: { base_url: "$MOCK/v1", timeout: 30s }
  mock-anthropic: { base_url: "$MOCK/v1", api: anthropic, timeout: 30s }
prices:
  mock-fast: { input_per_mtok: 0.15, output_per_mtok: 0.6 }
  mock-50ms: { input_per_mtok: 0.15, output_per_mtok: 0.6 }
storage: { url: "sqlite://$WORK/$name/canarist.db" }
deployments:
$(for m in mock-fast mock-50ms; do cat <<D
  - slug: $m
    model: $m
    mode: $mode
    stable: { provider: mock, model: $m }
    candidates: [ { name: candidate, provider: mock, model: $m, percent: $percent } ]
D
done)
  - slug: claude-fast
    model: mock-fast-messages
    mode: $mode
    stable: { provider: mock-anthropic, model: mock-fast }
    candidates: [ { name: candidate, provider: mock-anthropic, model: mock-fast, percent: $percent } ]
EOF
  (cd "$WORK/$name" && CANARIST_LOG=warn exec taskset -c "$PROXY_CPU" "$CANARIST_BIN" serve --config canarist.yaml) \
    >"$WORK/$name/out.log" 2>&1 &
  GW_PID=$!
  PIDS+=($GW_PID)
  wait_port "$GW_PORT"
}
start_canarist live live 5
LIVE_PORT=$GW_PORT LIVE_PID=$GW_PID
start_canarist shadow shadow 10
SHADOW_PORT=$GW_PORT SHADOW_PID=$GW_PID
wait_port "$NGINX_PORT"

# wrk posts from 5,000 sticky users with Zipf-like volumes (a few send most), in the API that API
# names: chat (Chat Completions), responses (the Responses API) or messages (Anthropic Messages).
cat >"$WORK/post.lua" <<'EOF'
local model, stream, api = os.getenv("MODEL"), os.getenv("STREAM") == "1", os.getenv("API") or "chat"
local n = 0
request = function()
  n = n + 1
  local user = math.floor(5000 ^ math.random()) -- log-uniform: heavy-tailed volumes per user
  local s = stream and "true" or "false"
  local system, question = "You are a helpful support agent.", string.format("Where is my order #%d? It was due yesterday.", n)
  if api == "responses" then
    return wrk.format("POST", "/v1/responses", {["Content-Type"] = "application/json"}, string.format(
      '{"model":"%s","stream":%s,"user":"user-%d","instructions":"%s","input":"%s"}', model, s, user, system, question))
  elseif api == "messages" then
    return wrk.format("POST", "/v1/messages", {["Content-Type"] = "application/json", ["anthropic-version"] = "2023-06-01"},
      string.format('{"model":"%s","stream":%s,"max_tokens":256,"metadata":{"user_id":"user-%d"},"system":"%s","messages":[{"role":"user","content":"%s"}]}',
        model, s, user, system, question))
  end
  return wrk.format("POST", "/v1/chat/completions", {["Content-Type"] = "application/json"}, string.format(
    '{"model":"%s","stream":%s,"user":"user-%d","messages":[{"role":"system","content":"%s"},{"role":"user","content":"%s"}]}',
    model, s, user, system, question))
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %d %d\n", summary.requests,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), summary.duration))
end
EOF

# One measurement: wrk against URL with CONNS connections for SECS; the CPU of PID (the hop).
# Prints: rps cpu_us_per_req p50_us p99_us errors
measure() { # url model conns pid stream api
  local url=$1 model=$2 conns=$3 pid=$4 stream=${5:-0} api=${6:-chat}
  local before after line
  before=$(cpu_ticks "$pid")
  line=$(MODEL=$model STREAM=$stream API=$api taskset -c "$LOAD_CPU" wrk -t1 -c"$conns" -d"${SECS}s" --timeout 10s \
    -s "$WORK/post.lua" "$url" | grep '^RESULT')
  after=$(cpu_ticks "$pid")
  # shellcheck disable=SC2086
  set -- $line
  local requests=$2 errors=$3 p50=$4 p99=$5 duration_us=$6
  awk -v r="$requests" -v d="$duration_us" -v b="$before" -v a="$after" -v hz="$hz" -v p50="$p50" -v p99="$p99" -v e="$errors" \
    'BEGIN { printf "%d %.1f %d %d %d\n", r / (d / 1e6), (a - b) / hz * 1e6 / (r > 0 ? r : 1), p50, p99, e }'
}

# First-event latency (µs, median and p99 of sequential curl calls) of a streamed request.
first_event() { # url model api
  local url=$1 model=$2 api=${3:-chat} path body
  for i in $(seq 1 "$FIRST_EVENTS"); do
    case $api in
      responses) path=/v1/responses body="{\"model\":\"$model\",\"stream\":true,\"user\":\"u$i\",\"input\":\"hi\"}" ;;
      messages) path=/v1/messages body="{\"model\":\"$model\",\"stream\":true,\"max_tokens\":256,\"metadata\":{\"user_id\":\"u$i\"},\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}" ;;
      *) path=/v1/chat/completions body="{\"model\":\"$model\",\"stream\":true,\"user\":\"u$i\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}" ;;
    esac
    taskset -c "$LOAD_CPU" curl -s -o /dev/null -w '%{time_starttransfer}\n' "$url$path" \
      -H 'content-type: application/json' -H 'anthropic-version: 2023-06-01' -d "$body"
  done | sort -n | awk '{ v[NR] = $1 * 1e6 } END { printf "%d %d\n", v[int(NR * 0.5)], v[int(NR * 0.99)] }'
}

# The Messages deployment's alias on canarist; direct and nginx name the mock's model itself.
model_for() { # path-name model api
  case $1-$3 in canarist*-messages) echo "$2-messages" ;; *) echo "$2" ;; esac
}

paths=(
  "direct|$MOCK|$MOCK_PID"
  "nginx|http://127.0.0.1:$NGINX_PORT|$NGINX_PID"
  "canarist-live-5%|http://127.0.0.1:$LIVE_PORT|$LIVE_PID"
  "canarist-shadow-10%|http://127.0.0.1:$SHADOW_PORT|$SHADOW_PID"
)

echo "proxy on core $PROXY_CPU; mock upstream and wrk on core $LOAD_CPU; $SECS s per measurement; $ROUNDS rounds"
echo "(direct: the CPU column is the mock upstream's own, for scale)"
for round in $(seq 1 "$ROUNDS"); do
  echo
  echo "== round $round"
  printf '%-22s %-28s %9s %11s %9s %9s %7s\n' path load rps "cpu µs/req" "p50 µs" "p99 µs" errors
  declare -A direct_p50=() direct_p99=()
  for lname in $LOADS; do
    case $lname in
      instant32) model=mock-fast conns=32 stream=0 api=chat label="instant upstream, 32 conns" ;;
      instant128) model=mock-fast conns=128 stream=0 api=chat label="instant upstream, 128 conns" ;;
      50ms) model=mock-50ms conns=128 stream=0 api=chat label="50ms upstream, 128 conns" ;;
      sse-chat | sse-responses | sse-messages)
        model=mock-fast conns=32 stream=1 api=${lname#sse-} label="SSE $api, 32 conns" ;;
      *) echo "compare.sh: unknown load $lname" >&2; exit 2 ;;
    esac
    for p in "${paths[@]}"; do
      IFS='|' read -r name url pid <<<"$p"
      read -r rps cpu p50 p99 errors <<<"$(measure "$url" "$(model_for "$name" "$model" "$api")" "$conns" "$pid" "$stream" "$api")"
      if [ "$name" = direct ]; then direct_p50[$lname]=$p50 direct_p99[$lname]=$p99; fi
      printf '%-22s %-28s %9s %11s %9s %9s %7s   added p50 %+d µs, p99 %+d µs\n' "$name" "$label" \
        "$rps" "$cpu" "$p50" "$p99" "$errors" $((p50 - ${direct_p50[$lname]})) $((p99 - ${direct_p99[$lname]}))
    done
  done
  echo
  printf '%-22s %-9s %22s %26s %14s\n' path api "first event, 1 conn" "first event, 32 streams" "peak RSS MB"
  for api in chat responses messages; do
    for p in "${paths[@]}"; do
      IFS='|' read -r name url pid <<<"$p"
      model=$(model_for "$name" mock-fast "$api")
      read -r one_p50 one_p99 <<<"$(first_event "$url" "$model" "$api")"
      (MODEL=$model STREAM=1 API=$api taskset -c "$LOAD_CPU" wrk -t1 -c31 -d600s -s "$WORK/post.lua" "$url" >/dev/null 2>&1) &
      bg=$!
      sleep 1
      read -r many_p50 many_p99 <<<"$(first_event "$url" "$model" "$api")"
      kill "$bg" 2>/dev/null || true; pkill -P "$bg" 2>/dev/null || true; wait "$bg" 2>/dev/null || true
      printf '%-22s %-9s %12s p50 %6s p99 %12s p50 %6s p99 %14s\n' "$name" "$api" "$one_p50" "$one_p99" "$many_p50" "$many_p99" "$(peak_rss_mb "$pid")"
    done
  done
done
