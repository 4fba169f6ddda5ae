"""Tiny MCP server on the Python MCP SDK 2.x (run with tests/peers/.venv-mcp2).

usage: mcp2_server.py [stdio | http PORT]
http serves Streamable HTTP at http://127.0.0.1:PORT/mcp, answering BOTH the 2026-07-28
stateless revision (server/discover, no session) and the initialize/session revisions
(2025-11-25, 2025-06-18, ...) on the same endpoint. Binds 127.0.0.1 only.
Tools: echo(message), add(a, b), slow(steps, delay) -> progress notifications.
"""
import sys

import anyio
from mcp.server.mcpserver import Context, MCPServer

mcp = MCPServer("mcpvisor-peer-py2", version="0.1.0")


@mcp.tool()
def echo(message: str) -> str:
    """Echo the message back."""
    return message


@mcp.tool()
def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


@mcp.tool()
async def slow(ctx: Context, steps: int = 3, delay: float = 0.2) -> str:
    """Sleep `steps` times `delay` seconds, reporting progress after each step."""
    for i in range(1, steps + 1):
        await anyio.sleep(delay)
        await ctx.report_progress(i, steps, f"step {i}/{steps}")
    return f"done after {steps} steps"


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "http":
        mcp.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]), streamable_http_path="/mcp")
    else:
        mcp.run("stdio")
