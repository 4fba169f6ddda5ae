"""Minimal Streamable HTTP client on the Python MCP SDK 2.x (run with tests/peers/.venv-mcp2).

usage: mcp2_client.py URL [TOOL [JSON_ARGS]]   (env MCP_MODE = auto | legacy | 2026-07-28; default auto)
mode=auto probes `server/discover` at 2026-07-28 and falls back to the initialize handshake
(session mode) when the server is not a 2026-07-28 server; legacy forces the handshake;
"2026-07-28" adopts the stateless revision directly, without a probe.
Lists tools, optionally calls TOOL with a progress callback, prints one line per event.
Exit 0 on success, 1 if the tool result isError. With MCP_CANCEL_AFTER_PROGRESS=N
the call is abandoned after N progress notifications ("cancelled" is printed).
"""
import asyncio
import json
import os
import sys

import anyio
from mcp import Client

SCENARIO_CALLS = {"tools_call": ("add_numbers", {"a": 1, "b": 2}), "sse-retry": ("test_reconnection", {})}


async def main(url: str, tool: str | None, args: dict) -> int:
    mode = os.environ.get("MCP_MODE", "auto")
    async with Client(url, mode=mode) as client:
        info = client.server_info
        print(f"mode={mode} protocolVersion={client.protocol_version} "
              f"server={info.name if info else None} {info.version if info else ''}".rstrip())
        tools = (await client.list_tools()).tools
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
                    await client.call_tool(tool, args, progress_callback=counting)
                    print("completed before the cancellation")

                tg.start_soon(run)
                await seen.wait()
                tg.cancel_scope.cancel()
            print("cancelled", flush=True)
            return 0
        result = await client.call_tool(tool, args, progress_callback=on_progress)
        for block in result.content:
            print(f"result[{block.type}]: {getattr(block, 'text', '')}")
        return 1 if result.is_error else 0


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
