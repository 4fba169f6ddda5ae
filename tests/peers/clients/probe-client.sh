#!/usr/bin/env bash
# Conformance client adapter for `mcpvisor probe` (mcpvisor's own client
# side: the transports and era negotiation its service actors use).
#
# `conformance client --command ".../probe-client.sh"` runs this with the
# test server's URL as the last argument and the scenario's name in
# MCP_CONFORMANCE_SCENARIO; it makes the call that scenario expects.
# env: MCPVISOR_BIN (the mcpvisor binary)
set -euo pipefail
url="${*: -1}"
bin="${MCPVISOR_BIN:?MCPVISOR_BIN must name the mcpvisor binary}"
case "${MCP_CONFORMANCE_SCENARIO:-}" in
  tools_call) exec "$bin" probe "$url" --tool add_numbers --args '{"a": 1, "b": 2}' ;;
  sse-retry) exec "$bin" probe "$url" --tool test_reconnection ;;
  *) exec "$bin" probe "$url" ;;
esac
