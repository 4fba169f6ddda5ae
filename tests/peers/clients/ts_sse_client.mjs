// A client of the TypeScript MCP SDK on the 2024-11-05 HTTP+SSE transport
// (SSEClientTransport), for mcpvisor's interop tests.
//
// usage: node ts_sse_client.mjs URL [TOOL [JSON_ARGS]]
// Connects to URL (the /sse endpoint), lists tools, optionally calls TOOL
// with a progress callback; one line per event. With
// MCP_CANCEL_AFTER_PROGRESS=N the call is aborted after N progress
// notifications (the SDK sends notifications/cancelled) and "cancelled" is
// printed once the server's stream has gone quiet for that call.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";

const [url, tool, rawArgs] = process.argv.slice(2);
const args = rawArgs ? JSON.parse(rawArgs) : {};
const client = new Client({ name: "ts-sse-client", version: "1.0.0" });
const transport = new SSEClientTransport(new URL(url));
await client.connect(transport);
const version = client.getServerVersion();
console.log(`connected server=${version.name} ${version.version}`);
const { tools } = await client.listTools();
console.log(`tools(${tools.length}): ${tools.map((t) => t.name).join(" ")}`);
let code = 0;
if (tool) {
  const cancelAfter = Number(process.env.MCP_CANCEL_AFTER_PROGRESS ?? "0");
  const abort = new AbortController();
  let seen = 0;
  const onprogress = (p) => {
    console.log(`progress ${p.progress}/${p.total ?? ""} ${p.message ?? ""}`.trimEnd());
    seen += 1;
    if (cancelAfter && seen >= cancelAfter) abort.abort("enough");
  };
  try {
    const result = await client.callTool({ name: tool, arguments: args }, undefined, {
      onprogress,
      signal: abort.signal,
      timeout: 60000,
    });
    for (const block of result.content) console.log(`result[${block.type}]: ${block.text ?? ""}`);
    if (cancelAfter) console.log("completed before the cancellation");
    code = result.isError ? 1 : 0;
  } catch (e) {
    if (!abort.signal.aborted) throw e;
    console.log("cancelled");
  }
}
await client.close();
process.exit(code);
