#!/usr/bin/env bash
# Interoperability suite against third-party MCP implementations.
#
#   1. installs the pinned peers (scripts/peers.sh; idempotent)
#   2. runs the interop tests (tests/interop.rs) with the peers required
#   3. runs the official conformance suites' server scenarios — 0.1.16 (2025
#      revisions) and the 0.2.0 prerelease with --spec-version 2026-07-28 —
#      against each upstream directly and through mcpvisor, and writes the
#      comparison to docs/interop.md (scripts/conformance_table.py), failing
#      on any scenario that passes directly but not through mcpvisor
#   4. runs the suite's client scenarios (initialize, tools_call, sse-retry)
#      with mcpvisor as the client (`mcpvisor probe`); each must pass
#
# Everything listens on 127.0.0.1 only; the Node peers run with
# tests/peers/loopback-only.cjs preloaded.
#
# usage: scripts/interop.sh [--no-install] [--no-tests]
# env:   MCPVISOR_BIN  the mcpvisor binary (default: built here, target/debug/mcpvisor)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PEERS="$ROOT/tests/peers"
install=1
tests=1
for arg in "$@"; do
  case "$arg" in
    --no-install) install=0 ;;
    --no-tests) tests=0 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "interop.sh: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

log() { printf 'interop: %s\n' "$*"; }
t_start=$(date +%s)

[[ $install -eq 1 ]] && "$ROOT/scripts/peers.sh"

cd "$ROOT"
if [[ $tests -eq 1 ]]; then
  log "interop tests (peers required)"
  MCPVISOR_REQUIRE_PEERS=1 cargo test --locked --test interop
fi

BIN="${MCPVISOR_BIN:-}"
if [[ -z "$BIN" ]]; then
  cargo build --locked --quiet --bin mcpvisor
  BIN="$ROOT/target/debug/mcpvisor"
fi
# The conformance target: an upstream with the suite's test fixtures.
cargo build --locked --quiet -p mcpvisor-conformance-target
TARGET="$ROOT/target/debug/conformance-target"
NODE="$PEERS/node_modules/.bin/node"
export NODE_OPTIONS="--require $PEERS/loopback-only.cjs"

WORK="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits for the first line of FILE starting with PREFIX; prints the rest.
first_line() {
  local file="$1" prefix="$2" i
  for i in $(seq 1 300); do
    if line=$(grep -m1 "^$prefix" "$file" 2>/dev/null); then
      echo "${line#"$prefix"}"
      return
    fi
    sleep 0.1
  done
  echo "interop.sh: no '$prefix' line in $file" >&2
  cat "$file" "${file%.out}.err" >&2 || true
  exit 1
}

# Polls URL until it answers 200.
until_ready() {
  local url="$1" i
  for i in $(seq 1 300); do
    if [[ "$(curl -s -o /dev/null -w '%{http_code}' "$url")" == 200 ]]; then return; fi
    sleep 0.1
  done
  echo "interop.sh: $url never became ready" >&2
  exit 1
}

# The starters run in this shell (not in $(...), which would lose the pids
# that cleanup kills) and leave the URL in $URL.

# Starts the simulator on its own.
start_sim() {
  local port
  port=$(free_port)
  "$BIN" sim --http "127.0.0.1:$port" >"$WORK/sim.out" 2>"$WORK/sim.err" &
  pids+=($!)
  URL=$(first_line "$WORK/sim.out" "mcpvisor-sim listening on ")
}

# Starts the conformance target on its own.
start_target() {
  local port
  port=$(free_port)
  "$TARGET" --http "127.0.0.1:$port" >"$WORK/target.out" 2>"$WORK/target.err" &
  pids+=($!)
  URL=$(first_line "$WORK/target.out" "conformance-target listening on ")
}

# Starts mcpvisor with the config in $1 (a file); $URL is its /mcp.
start_daemon() {
  local name
  name=$(basename "$1" .toml)
  "$BIN" serve --config "$1" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  pids+=($!)
  local base
  base=$(first_line "$WORK/$name.out" "mcpvisor listening on ")
  until_ready "$base/readyz"
  URL="$base/mcp"
}

cat >"$WORK/via-sim.toml" <<EOF
[server]
listen = "127.0.0.1:0"
[[services]]
name = "sim"
transport = "streamable_http"
command = "@self"
args = ["sim", "--http", "127.0.0.1:{port}"]
url = "http://127.0.0.1:{port}/mcp"
manifest = "builtin:asana"
EOF

cat >"$WORK/via-target.toml" <<EOF
[server]
listen = "127.0.0.1:0"
[[services]]
name = "target"
transport = "streamable_http"
command = "$TARGET"
args = ["--http", "127.0.0.1:{port}"]
url = "http://127.0.0.1:{port}/mcp"
EOF

# The same, with mcpvisor keeping a 2025-11-25 session with the target
# instead of speaking 2026-07-28 to it.
sed 's/^url = .*/&\nprotocol = "2025-11-25"/' "$WORK/via-target.toml" >"$WORK/via-target-session.toml"

start_sim; sim_url=$URL
start_daemon "$WORK/via-sim.toml"; via_sim=$URL
log "sim directly: $sim_url; through mcpvisor: $via_sim"
start_target; target_url=$URL
start_daemon "$WORK/via-target.toml"; via_target=$URL
start_daemon "$WORK/via-target-session.toml"; via_target_session=$URL
log "conformance target directly: $target_url; through mcpvisor: $via_target, $via_target_session"

# run_suite SUITE TARGET URL: one conformance run, results under $WORK/results.
#   2025: conformance 0.1.16, its active server scenarios (2025-06-18 / 2025-11-25)
#   2026: the 0.2.0 prerelease, every scenario of 2026-07-28
run_suite() {
  local suite="$1" target="$2" url="$3"
  local out="$WORK/results/$suite/$target"
  local cli=(server --url "$url" -o "$out")
  mkdir -p "$out"
  case "$suite" in
    2025) cli=("$PEERS/node_modules/@modelcontextprotocol/conformance/dist/index.js" "${cli[@]}") ;;
    2026) cli=("$PEERS/node_modules/conformance-next/dist/index.js" "${cli[@]}"
               --spec-version 2026-07-28 --suite all) ;;
  esac
  "$NODE" "${cli[@]}" >"$out.log" 2>&1 || true
  grep -E '^Total:' "$out.log" | sed "s|^|interop: $suite $target: |" || true
}

for suite in 2025 2026; do
  run_suite "$suite" sim "$sim_url"
  run_suite "$suite" via-sim "$via_sim"
  run_suite "$suite" target "$target_url"
  run_suite "$suite" via-target "$via_target"
  run_suite "$suite" "via-target+session" "$via_target_session"
done

# The suite's client scenarios, with mcpvisor as the client (`mcpvisor probe`
# behind tests/peers/clients/probe-client.sh); the suite's own test server
# listens on loopback.
export MCPVISOR_BIN="$BIN"
for scenario in initialize tools_call sse-retry; do
  out="$WORK/clients/2025"
  mkdir -p "$out"
  "$NODE" "$PEERS/node_modules/@modelcontextprotocol/conformance/dist/index.js" client \
    --command "$PEERS/clients/probe-client.sh" --scenario "$scenario" -o "$out" \
    >"$out/$scenario.log" 2>&1 || true
  grep -E '^Passed:' "$out/$scenario.log" | sed "s|^|interop: client $scenario: |" || true
done

status=0
python3 "$ROOT/scripts/conformance_table.py" "$WORK/results" "$WORK/clients" "$ROOT/docs/interop.md" \
  || status=$?
log "done in $(( $(date +%s) - t_start ))s"
exit "$status"
