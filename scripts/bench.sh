#!/usr/bin/env bash
# Call-path benchmark: `tools/call asana_list_workspaces` driven by wrk
# (one connection per client, unique ids) against, side by side in one run:
#   direct      the simulator's own Streamable HTTP server (the limit)
#   stdio       mcpvisor with the simulator as a stdio child
#   http        mcpvisor with the simulator over Streamable HTTP
#   cached      `stdio` with the result cache on: every call after the first a hit
#   bypass      the same daemon, every call asking to go around the cache
#               (the uncached path's cost with the cache on)
# each as a 2025 session and as 2026-07-28 stateless clients, at c=1, 16
# and 64. CPU per call counts the serving process only (mcpvisor, or the
# simulator for `direct`), from /proc. The upstream answers at once
# (--unit-latency-ms 0) so the bridge's own cost shows.
#
# usage: scripts/bench.sh [--duration 10s] [--out docs/performance.md]
# needs: wrk (Debian package), curl; builds mcpvisor with --release.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DURATION=10s
OUT="$ROOT/docs/performance.md"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --duration) DURATION="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    *) echo "bench.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
command -v wrk >/dev/null || { echo "bench.sh: wrk is needed (apt-get install wrk)" >&2; exit 2; }
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" --bin mcpvisor
BIN="$ROOT/target/release/mcpvisor"
LUA="$ROOT/benches/wrk/tools_call.lua"
WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 200); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK=$(getconf CLK_TCK)

# A 2025 session at URL: prints its Mcp-Session-Id.
session() {
  local url=$1 sid
  sid=$(curl -s -D - -o /dev/null "$url" -H 'content-type: application/json' \
    -H 'accept: application/json, text/event-stream' \
    -d '{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}' \
    | tr -d '\r' | awk -F': ' 'tolower($1)=="mcp-session-id"{print $2}')
  curl -s -o /dev/null "$url" -H 'content-type: application/json' -H "mcp-session-id: $sid" \
    -H 'mcp-protocol-version: 2025-06-18' -d '{"jsonrpc":"2.0","method":"notifications/initialized"}'
  echo "$sid"
}

# Direct: the simulator on its own.
SIM_PORT=$(free_port)
"$BIN" sim --http "127.0.0.1:$SIM_PORT" --unit-latency-ms 0 >/dev/null 2>&1 & PIDS+=($!); SIM_PID=$!
wait_port "$SIM_PORT"

start_mcpvisor() {
  local name=$1 transport=$2 cache=${3:-false} port
  port=$(free_port)
  if [[ $transport == stdio ]]; then
    cat > "$WORK/$name.toml" <<EOT
[server]
listen = "127.0.0.1:$port"
[cache]
enabled = $cache
[[services]]
name = "asana"
transport = "stdio"
command = "@self"
args = ["sim", "--stdio", "--unit-latency-ms", "0"]
manifest = "builtin:asana"
EOT
  else
    cat > "$WORK/$name.toml" <<EOT
[server]
listen = "127.0.0.1:$port"
[[services]]
name = "asana"
transport = "streamable_http"
url = "http://127.0.0.1:$SIM_PORT/mcp"
manifest = "builtin:asana"
EOT
  fi
  MCPVISOR_LOG=error "$BIN" serve --config "$WORK/$name.toml" >/dev/null 2>&1 & PIDS+=($!)
  eval "${name}_PID=$!"
  eval "${name}_PORT=$port"
  wait_port "$port"
  for _ in $(seq 1 100); do
    curl -s "127.0.0.1:$port/readyz" | grep -q '"ready":true' && return 0; sleep 0.1
  done
  echo "bench.sh: $name never ready" >&2; exit 1
}
start_mcpvisor stdio stdio
start_mcpvisor http http
start_mcpvisor cached stdio true

ROWS=()
run() {
  local target=$1 era=$2 c=$3 port pid sid="" before after out
  case $target in
    direct) port=$SIM_PORT; pid=$SIM_PID ;;
    stdio) port=$stdio_PORT; pid=$stdio_PID ;;
    http) port=$http_PORT; pid=$http_PID ;;
    cached|bypass) port=$cached_PORT; pid=$cached_PID ;;
  esac
  local nocache=""
  [[ $target == bypass ]] && nocache=1
  [[ $era == 2025 ]] && sid=$(session "http://127.0.0.1:$port/mcp")
  before=$(cpu_ticks "$pid")
  out=$(SESSION="$sid" NOCACHE="$nocache" wrk -t "$(( c < 2 ? 1 : 2 ))" -c "$c" -d "$DURATION" -s "$LUA" "http://127.0.0.1:$port/mcp" | grep '^RESULT')
  after=$(cpu_ticks "$pid")
  local req secs errs p50 p99 p999
  req=$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$out"); secs=$(sed -E 's/.*seconds=([0-9.]+).*/\1/' <<<"$out")
  errs=$(sed -E 's/.*errors=([0-9]+).*/\1/' <<<"$out")
  p50=$(sed -E 's/.*p50=([0-9]+).*/\1/' <<<"$out"); p99=$(sed -E 's/.*p99=([0-9]+) .*/\1/' <<<"$out")
  p999=$(sed -E 's/.*p999=([0-9]+).*/\1/' <<<"$out")
  local rps cpu
  rps=$(awk -v r="$req" -v s="$secs" 'BEGIN{printf "%.0f", r/s}')
  cpu=$(awk -v a="$after" -v b="$before" -v t="$TICK" -v r="$req" 'BEGIN{printf "%.3f", (a-b)/t*1000/r}')
  ROWS+=("| $target | $era | $c | $rps | $p50 | $p99 | $p999 | $cpu | $errs |")
  echo "$target $era c=$c: $rps req/s p50 ${p50}us p99 ${p99}us p999 ${p999}us cpu ${cpu} ms/call errors $errs" >&2
}

for c in 1 16 64; do
  for era in 2025 2026; do
    for target in direct stdio http cached bypass; do
      run "$target" "$era" "$c"
    done
  done
done

{
  echo "# Performance"
  echo
  echo "The call path, measured by \`scripts/bench.sh\` (wrk $(wrk -v 2>&1 | head -1 | awk '{print $2}'), $DURATION per row, one run)"
  echo "on $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr), $(date -u +%Y-%m-%d)."
  echo "Every row is \`tools/call asana_list_workspaces\` with unique ids against the simulator answering"
  echo "at once; \`direct\` is the simulator's own HTTP server, \`stdio\` and \`http\` are mcpvisor in front"
  echo "of it; \`cached\` is \`stdio\` with the result cache on (every call after the first a hit), \`bypass\`"
  echo "the same daemon with every call asking to go around the cache. Latencies in µs; CPU is the serving"
  echo "process's user + system time per call."
  echo
  echo "| target | era | clients | req/s | p50 | p99 | p99.9 | CPU ms/call | errors |"
  echo "|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${ROWS[@]}"
} > "$OUT"
echo "bench.sh: wrote $OUT" >&2
