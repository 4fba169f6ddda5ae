"""A stdio MCP server (standard library only) that misbehaves on purpose,
for mcpvisor's reliability tests. Modes, from the first argument:

  drip   answers correctly, but writes every response a few bytes at a time
         with pauses between them (a slow pipe, a chatty runtime)
  close  answers the handshake and tools/list, then closes its stdout on the
         first tools/call without exiting (the process lives on, mute)

It speaks protocol 2025-06-18 and offers one read-only tool, `echo`.
"""

import json
import os
import sys
import time

MODE = sys.argv[1] if len(sys.argv) > 1 else "drip"
TOOL = {
    "name": "echo",
    "description": "Echoes its text.",
    "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}},
    "annotations": {"readOnlyHint": True},
}


def write(message):
    data = (json.dumps(message) + "\n").encode()
    if MODE == "drip":
        for i in range(0, len(data), 7):
            os.write(1, data[i : i + 7])
            time.sleep(0.002)
    else:
        os.write(1, data)


def answer(request):
    method = request.get("method")
    if method == "initialize":
        return {
            "protocolVersion": "2025-06-18",
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "misbehaving", "version": "1"},
        }
    if method == "ping":
        return {}
    if method == "tools/list":
        return {"tools": [TOOL]}
    if method == "tools/call":
        if MODE == "close":
            os.close(1)
            while True:
                time.sleep(3600)
        text = request.get("params", {}).get("arguments", {}).get("text", "")
        return {"content": [{"type": "text", "text": text}], "isError": False}
    return None


for line in sys.stdin:
    try:
        request = json.loads(line)
    except ValueError:
        continue
    if "id" not in request:
        continue
    result = answer(request)
    if result is None:
        write({"jsonrpc": "2.0", "id": request["id"],
               "error": {"code": -32601, "message": "method not found"}})
    else:
        write({"jsonrpc": "2.0", "id": request["id"], "result": result})
