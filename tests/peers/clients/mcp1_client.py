"""Minimal Streamable HTTP client on the Python MCP SDK 1.x (run with tests/peers/.venv-mcp1).

usage: mcp1_client.py URL [TOOL [JSON_ARGS]]
Connects (initialize handshake, session mode), lists tools, optionally calls TOOL with a
progress callback, prints one line per event. Exit 0 on success, 1 if the tool result isError.
"""
import asyncio
import json
import os
import sys

from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

SCENARIO_CALLS = {"tools_call": ("add_numbers", {"a": 1, "b": 2}), "sse-retry": ("test_reconnection", {})}


async def main(url: str, tool: str | None, args: dict) -> int:
    async with streamable_http_client(url) as (read, write, get_session_id):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            print(f"protocolVersion={init.protocolVersion} server={init.serverInfo.name} {init.serverInfo.version}")
            print(f"session-id={get_session_id()}")
            tools = (await session.list_tools()).tools
            print(f"tools({len(tools)}): {' '.join(t.name for t in tools)}")
            if tool is None:
                return 0

            async def on_progress(progress: float, total: float | None, message: str | None) -> None:
                print(f"progress {progress}/{total} {message or ''}".rstrip(), flush=True)

            result = await session.call_tool(tool, args, progress_callback=on_progress)
            for block in result.content:
                print(f"result[{block.type}]: {getattr(block, 'text', '')}")
            return 1 if result.isError else 0


if __name__ == "__main__":
    url = sys.argv[1]
    tool = sys.argv[2] if len(sys.argv) > 2 else None
    args = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    # Under `conformance client --command "python THIS"` the URL is the last argument and
    # the scenario name is in MCP_CONFORMANCE_SCENARIO: call the tool that scenario expects.
    scenario = os.environ.get("MCP_CONFORMANCE_SCENARIO")
    if tool is None and scenario in SCENARIO_CALLS:
        tool, args = SCENARIO_CALLS[scenario]
    sys.exit(asyncio.run(main(url, tool, args)))
