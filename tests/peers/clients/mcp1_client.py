"""Minimal client on the Python MCP SDK 1.x (run with tests/peers/.venv-mcp1).

usage: mcp1_client.py URL [TOOL [JSON_ARGS]]
Connects over Streamable HTTP (or, with MCP_TRANSPORT=sse, the 2024-11-05 HTTP+SSE
transport: URL is then the /sse endpoint; initialize handshake, session mode), lists tools, optionally calls TOOL with a
progress callback, prints one line per event. Exit 0 on success, 1 if the tool result isError. With MCP_CANCEL_AFTER_PROGRESS=N
the call is abandoned after N progress notifications ("cancelled" is printed).
"""
import asyncio
import contextlib
import json
import os
import sys

import anyio
from mcp import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

SCENARIO_CALLS = {"tools_call": ("add_numbers", {"a": 1, "b": 2}), "sse-retry": ("test_reconnection", {})}


@contextlib.asynccontextmanager
async def connect(url: str):
    """(read, write, session id getter) over the transport MCP_TRANSPORT names."""
    if os.environ.get("MCP_TRANSPORT") == "sse":
        async with sse_client(url) as (read, write):
            yield read, write, lambda: "sse"
    else:
        async with streamable_http_client(url) as streams:
            yield streams


async def main(url: str, tool: str | None, args: dict) -> int:
    async with connect(url) as (read, write, get_session_id):
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

            cancel_after = int(os.environ.get("MCP_CANCEL_AFTER_PROGRESS", "0"))
            if cancel_after:
                # Abandon the call after that many progress notifications: the SDK
                # tells the server (notifications/cancelled, or closing the stream).
                seen = anyio.Event()
                count = 0

                async def counting(progress: float, total: float | None, message: str | None) -> None:
                    nonlocal count
                    await on_progress(progress, total, message)
                    count += 1
                    if count >= cancel_after:
                        seen.set()

                async with anyio.create_task_group() as tg:
                    async def run() -> None:
                        await session.call_tool(tool, args, progress_callback=counting)
                        print("completed before the cancellation")

                    tg.start_soon(run)
                    await seen.wait()
                    tg.cancel_scope.cancel()
                print("cancelled", flush=True)
                return 0
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
