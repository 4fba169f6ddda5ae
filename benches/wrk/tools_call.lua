-- wrk script: `tools/call` of TOOL (default asana_list_workspaces) with a unique JSON-RPC id
-- per request, as a 2025 session (SESSION set) or a 2026-07-28 stateless
-- client (no SESSION). Prints p50/p99/p999 in microseconds at the end.
local session = os.getenv("SESSION") or ""
-- NOCACHE set: every call asks to go around mcpvisor's result cache.
local nocache = (os.getenv("NOCACHE") or "") ~= ""
-- TOOL: the tool's name as the target spells it (peers namespace it).
local tool = os.getenv("TOOL") or "asana_list_workspaces"
local threads = {}
local counter = 0
local tid = 0

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  tid = tonumber(wrk.thread:get("tid")) or 0
end

request = function()
  counter = counter + 1
  local id = tid * 100000000 + counter
  local headers = {
    ["Content-Type"] = "application/json",
    ["Accept"] = "application/json, text/event-stream",
  }
  local params
  if session ~= "" then
    headers["Mcp-Session-Id"] = session
    headers["Mcp-Protocol-Version"] = "2025-06-18"
    if nocache then
      params = '{"name":"' .. tool .. '","arguments":{},"_meta":{"io.mcpvisor/noCache":true}}'
    else
      params = '{"name":"' .. tool .. '","arguments":{}}'
    end
  else
    headers["Mcp-Protocol-Version"] = "2026-07-28"
    headers["Mcp-Method"] = "tools/call"
    headers["Mcp-Name"] = tool
    params = '{"name":"' .. tool .. '","arguments":{},"_meta":{' ..
      '"io.modelcontextprotocol/protocolVersion":"2026-07-28",' ..
      '"io.modelcontextprotocol/clientCapabilities":{}' ..
      (nocache and ',"io.mcpvisor/noCache":true' or '') .. '}}'
  end
  local body = '{"jsonrpc":"2.0","id":' .. id .. ',"method":"tools/call","params":' .. params .. '}'
  return wrk.format("POST", wrk.path, headers, body)
end

function done(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  io.write(string.format("RESULT requests=%d seconds=%.3f errors=%d p50=%d p99=%d p999=%d\n",
    summary.requests, summary.duration / 1e6, errors,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
