#!/usr/bin/env bash
# Call-path benchmark: `tools/call asana_list_workspaces` driven by wrk
# (one connection per client, unique ids) against, side by side in one run:
#   direct      the simulator's own Streamable HTTP server (the limit)
#   stdio       mcpvisor with the simulator as a stdio child
#   http        mcpvisor with the simulator over Streamable HTTP
#   cached      `stdio` with the result cache on: every call after the first a hit
#   bypass      the same daemon, every call asking to go around the cache
#               (the uncached path's cost with the cache on)
# each as a 2025 session and as 2026-07-28 stateless clients, and three
# peers in front of the same stdio simulator, as 2025 sessions:
#   rust-mcp-proxy   mcp-proxy 0.6.0 from crates.io (Rust, tower-mcp)
#   rust-mcp-proxy-http  the same, in front of the simulator's HTTP server
#                    (the like-for-like peer of `http`)
#   py-mcp-proxy     mcp-proxy 0.13.0 from PyPI (Python SDK)
#   supergateway     supergateway 4.0.0 from npm (stateful Streamable HTTP)
# all at c=1, 16 and 64. CPU per call counts the serving process only (mcpvisor, or the
# simulator for `direct`), from /proc. The upstream answers at once
# (--unit-latency-ms 0) so the bridge's own cost shows.
#
# Each row is measured --repeat times (default 3), the passes interleaved so
# that a drift of the machine touches every target alike, and the table
# shows each figure's median.
#
# usage: scripts/bench.sh [--duration 10s] [--repeat 3] [--clients "1 16 64"]
#                         [--out docs/performance.md] [--no-peers]
# needs: wrk (Debian package), curl, python3, node/npm; builds mcpvisor with
# --release. The peers are installed, pinned, once into
# ${MCPVISOR_BENCH_CACHE:-~/.cache/mcpvisor-bench} (the Rust one built there
# with `cargo install --locked`; the first run takes a few minutes more).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DURATION=10s
REPEAT=3
CLIENTS="1 16 64"
OUT="$ROOT/docs/performance.md"
PEERS=1
CACHE_DIR="${MCPVISOR_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mcpvisor-bench}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --no-peers) PEERS=0; shift ;;
    --duration) DURATION="$2"; shift 2 ;;
    --repeat) REPEAT="$2"; shift 2 ;;
    --clients) CLIENTS="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    *) echo "bench.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
command -v wrk >/dev/null || { echo "bench.sh: wrk is needed (apt-get install wrk)" >&2; exit 2; }
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" --bin mcpvisor

# The peers, pinned, installed once.
RUST_PROXY="$CACHE_DIR/rust-mcp-proxy/bin/mcp-proxy"
PY_PROXY="$CACHE_DIR/py/bin/mcp-proxy"
SUPERGATEWAY="$CACHE_DIR/node/node_modules/.bin/supergateway"
if (( PEERS )); then
  mkdir -p "$CACHE_DIR"
  if [[ ! -x $RUST_PROXY ]]; then
    echo "bench.sh: building mcp-proxy 0.6.0 (crates.io) into $CACHE_DIR" >&2
    cargo install --quiet --locked mcp-proxy --version 0.6.0 --root "$CACHE_DIR/rust-mcp-proxy"
  fi
  if [[ ! -x $PY_PROXY ]]; then
    echo "bench.sh: installing mcp-proxy 0.13.0 (PyPI) into $CACHE_DIR/py" >&2
    python3 -m venv "$CACHE_DIR/py"
    "$CACHE_DIR/py/bin/pip" install --quiet mcp-proxy==0.13.0
  fi
  if [[ ! -x $SUPERGATEWAY ]]; then
    echo "bench.sh: installing supergateway 4.0.0 (npm) into $CACHE_DIR/node" >&2
    mkdir -p "$CACHE_DIR/node"
    (cd "$CACHE_DIR/node" && npm install --silent --no-audit --no-fund supergateway@4.0.0)
  fi
fi
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

# A peer NAME serving PATH on PORT, started by the rest of the arguments.
start_peer() {
  local name=$1 port=$2 path=$3; shift 3
  "$@" >"$WORK/$name.log" 2>&1 & PIDS+=($!)
  eval "${name//-/_}_PID=$!"
  eval "${name//-/_}_PORT=$port"
  eval "${name//-/_}_PATH=$path"
  wait_port "$port" || { echo "bench.sh: $name did not listen; its log:" >&2; cat "$WORK/$name.log" >&2; exit 1; }
}
SIM_ARGS=(sim --stdio --unit-latency-ms 0)
if (( PEERS )); then
  # The Rust mcp-proxy NAME in front of one backend (the remaining
  # arguments: its TOML lines), logging off as for mcpvisor (its default
  # level writes two lines per call).
  start_rust_proxy() {
    local name=$1 port; shift
    port=$(free_port)
    {
      printf '[observability]\nlog_level = "error"\n[proxy]\nname = "bench"\nseparator = "/"\n'
      printf '[proxy.listen]\nhost = "127.0.0.1"\nport = %s\n[[backends]]\nname = "asana"\n' "$port"
      printf '%s\n' "$@"
    } > "$WORK/$name.toml"
    start_peer "$name" "$port" / "$RUST_PROXY" --config "$WORK/$name.toml"
  }
  start_rust_proxy rust-mcp-proxy 'transport = "stdio"' "command = \"$BIN\"" \
    'args = ["sim", "--stdio", "--unit-latency-ms", "0"]'
  start_rust_proxy rust-mcp-proxy-http 'transport = "http"' "url = \"http://127.0.0.1:$SIM_PORT/mcp\""
  port=$(free_port)
  start_peer py-mcp-proxy "$port" /mcp "$PY_PROXY" --host 127.0.0.1 --port "$port" --log-level ERROR -- "$BIN" "${SIM_ARGS[@]}"
  port=$(free_port)
  start_peer supergateway "$port" /mcp "$SUPERGATEWAY" --stdio "$BIN ${SIM_ARGS[*]}" --outputTransport streamableHttp \
    --stateful --port "$port" --logLevel none
fi

# One call through a session at URL must answer with the tool's result.
check_call() {
  local name=$1 url=$2 tool=$3 sid reply
  sid=$(session "$url")
  for _ in $(seq 1 100); do
    reply=$(curl -s "$url" -H 'content-type: application/json' -H 'accept: application/json, text/event-stream' \
      -H "mcp-session-id: $sid" -H 'mcp-protocol-version: 2025-06-18' \
      -d "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"$tool\",\"arguments\":{}}}")
    grep -q '"result"' <<<"$reply" && ! grep -q '"isError":true' <<<"$reply" && return 0
    sleep 0.1
  done
  echo "bench.sh: $name does not answer $tool: $reply" >&2; exit 1
}

RESULTS="$WORK/results.tsv"
: > "$RESULTS"
run() {
  local target=$1 era=$2 c=$3 pass=$4 port pid sid="" before after out
  local path=/mcp tool=asana_list_workspaces
  case $target in
    direct) port=$SIM_PORT; pid=$SIM_PID ;;
    stdio) port=$stdio_PORT; pid=$stdio_PID ;;
    http) port=$http_PORT; pid=$http_PID ;;
    cached|bypass) port=$cached_PORT; pid=$cached_PID ;;
    rust-mcp-proxy) port=$rust_mcp_proxy_PORT; pid=$rust_mcp_proxy_PID; path=$rust_mcp_proxy_PATH
      tool=asana/asana_list_workspaces ;;
    rust-mcp-proxy-http) port=$rust_mcp_proxy_http_PORT; pid=$rust_mcp_proxy_http_PID
      path=$rust_mcp_proxy_http_PATH; tool=asana/asana_list_workspaces ;;
    py-mcp-proxy) port=$py_mcp_proxy_PORT; pid=$py_mcp_proxy_PID; path=$py_mcp_proxy_PATH ;;
    supergateway) port=$supergateway_PORT; pid=$supergateway_PID; path=$supergateway_PATH ;;
  esac
  local nocache=""
  [[ $target == bypass ]] && nocache=1
  [[ $era == 2025 ]] && sid=$(session "http://127.0.0.1:$port$path")
  before=$(cpu_ticks "$pid")
  out=$(SESSION="$sid" NOCACHE="$nocache" TOOL="$tool" wrk -t "$(( c < 2 ? 1 : 2 ))" -c "$c" -d "$DURATION" -s "$LUA" \
    "http://127.0.0.1:$port$path" | grep '^RESULT')
  after=$(cpu_ticks "$pid")
  local req secs errs p50 p99 p999
  req=$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$out"); secs=$(sed -E 's/.*seconds=([0-9.]+).*/\1/' <<<"$out")
  errs=$(sed -E 's/.*errors=([0-9]+).*/\1/' <<<"$out")
  p50=$(sed -E 's/.*p50=([0-9]+).*/\1/' <<<"$out"); p99=$(sed -E 's/.*p99=([0-9]+) .*/\1/' <<<"$out")
  p999=$(sed -E 's/.*p999=([0-9]+).*/\1/' <<<"$out")
  local rps cpu
  rps=$(awk -v r="$req" -v s="$secs" 'BEGIN{printf "%.0f", r/s}')
  cpu=$(awk -v a="$after" -v b="$before" -v t="$TICK" -v r="$req" 'BEGIN{printf "%.3f", (a-b)/t*1000/r}')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$target" "$era" "$c" "$rps" "$p50" "$p99" "$p999" "$cpu" "$errs" >> "$RESULTS"
  echo "pass $pass: $target $era c=$c: $rps req/s p50 ${p50}us p99 ${p99}us p999 ${p999}us cpu ${cpu} ms/call errors $errs" >&2
}

check_call direct "http://127.0.0.1:$SIM_PORT/mcp" asana_list_workspaces
check_call stdio "http://127.0.0.1:$stdio_PORT/mcp" asana_list_workspaces
check_call http "http://127.0.0.1:$http_PORT/mcp" asana_list_workspaces
PEER_TARGETS=()
if (( PEERS )); then
  check_call rust-mcp-proxy "http://127.0.0.1:$rust_mcp_proxy_PORT/" asana/asana_list_workspaces
  check_call rust-mcp-proxy-http "http://127.0.0.1:$rust_mcp_proxy_http_PORT/" asana/asana_list_workspaces
  check_call py-mcp-proxy "http://127.0.0.1:$py_mcp_proxy_PORT/mcp" asana_list_workspaces
  check_call supergateway "http://127.0.0.1:$supergateway_PORT/mcp" asana_list_workspaces
  PEER_TARGETS=(rust-mcp-proxy rust-mcp-proxy-http py-mcp-proxy supergateway)
fi

for pass in $(seq 1 "$REPEAT"); do
  for c in $CLIENTS; do
    for era in 2025 2026; do
      for target in direct stdio http cached bypass; do
        run "$target" "$era" "$c" "$pass"
      done
      if [[ $era == 2025 ]]; then
        for target in "${PEER_TARGETS[@]}"; do run "$target" "$era" "$c" "$pass"; done
      fi
    done
  done
done

# Medians of the passes, then the ratios of those: mcpvisor (2025 session)
# against the direct upstream and against the Rust mcp-proxy.
python3 - "$RESULTS" "$WORK/rows.md" "$WORK/ratios.md" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    t, era, c, *figures = line.rstrip("\n").split("\t")
    rows.setdefault((t, era, int(c)), []).append([float(x) for x in figures])
order = ["direct", "stdio", "http", "cached", "bypass", "rust-mcp-proxy", "rust-mcp-proxy-http", "py-mcp-proxy", "supergateway"]
key = lambda k: (k[2], k[1], order.index(k[0]) if k[0] in order else 99)
med = {k: [statistics.median(col) for col in zip(*v)] for k, v in rows.items()}
with open(sys.argv[2], "w") as out:
    for k in sorted(med, key=key):
        rps, p50, p99, p999, cpu, errs = med[k]
        errs = int(sum(r[5] for r in rows[k]))
        out.write(f"| {k[0]} | {k[1]} | {k[2]} | {rps:.0f} | {p50:.0f} | {p99:.0f} | {p999:.0f} | {cpu:.3f} | {errs} |\n")
with open(sys.argv[3], "w") as out:
    for c in sorted({k[2] for k in med}):
        for t, p in (("stdio", "rust-mcp-proxy"), ("http", "rust-mcp-proxy-http")):
            me, direct, peer = med.get((t, "2025", c)), med.get(("direct", "2025", c)), med.get((p, "2025", c))
            if not me or not direct:
                continue
            gap = me[1] - direct[1]
            line = f"- c={c}, mcpvisor `{t}`: {me[0] / direct[0]:.2f}× direct's req/s, p50 {abs(gap):.0f} µs {'above' if gap >= 0 else 'below'} direct"
            if peer:
                line += f"; {me[0] / peer[0]:.2f}× `{p}`'s req/s at {me[4] / peer[4]:.2f}× its CPU per call"
            out.write(line + "\n")
PY

TABLE="$WORK/table.md"
{
  echo "<!-- bench:begin (written by scripts/bench.sh; edit outside the markers) -->"
  echo "The call path, measured by \`scripts/bench.sh --duration $DURATION --repeat $REPEAT\` (wrk $(wrk -v 2>&1 | head -1 | awk '{print $2}'), $DURATION per row; each figure the median of $REPEAT interleaved passes)"
  echo "on $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr), $(date -u +%Y-%m-%d)."
  echo "Every row is \`tools/call asana_list_workspaces\` with unique ids against the simulator answering"
  echo "at once; \`direct\` is the simulator's own HTTP server, \`stdio\` and \`http\` are mcpvisor in front"
  echo "of it; \`cached\` is \`stdio\` with the result cache on (every call after the first a hit), \`bypass\`"
  echo "the same daemon with every call asking to go around the cache; \`rust-mcp-proxy\` (mcp-proxy 0.6.0,"
  echo "crates.io), \`py-mcp-proxy\` (mcp-proxy 0.13.0, PyPI) and \`supergateway\` (4.0.0, npm) are peers in"
  echo "front of the same stdio simulator, \`rust-mcp-proxy-http\` the Rust one in front of its HTTP server."
  echo "Every bridge runs with logging off. Latencies in µs; CPU is the serving process's user + system time"
  echo "per call (the bridge only, not its upstream)."
  echo
  echo "| target | era | clients | req/s | p50 | p99 | p99.9 | CPU ms/call | errors |"
  echo "|---|---|---|---|---|---|---|---|---|"
  cat "$WORK/rows.md"
  echo
  echo "Ratios in this run (2025 sessions, of the medians):"
  echo
  cat "$WORK/ratios.md"
  echo "<!-- bench:end -->"
} > "$TABLE"
cat "$WORK/ratios.md" >&2
python3 - "$OUT" "$TABLE" <<'PY'
import pathlib, re, sys
out, table = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]).read_text()
text = out.read_text() if out.exists() else "# Performance\n\n<!-- bench:begin -->\n<!-- bench:end -->\n"
if "<!-- bench:begin" not in text:
    text = text.rstrip("\n") + "\n\n<!-- bench:begin -->\n<!-- bench:end -->\n"
text = re.sub(r"<!-- bench:begin.*?<!-- bench:end -->\n?", lambda _: table, text, flags=re.S)
out.write_text(text)
PY
echo "bench.sh: wrote $OUT" >&2
