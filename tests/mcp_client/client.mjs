// Drives Cairn's /mcp with the official MCP TypeScript SDK client, as an editor would.
// Usage: node client.mjs <mcp url> <protocol version>   (bearer token in CAIRN_TOKEN)
// stdin: a JSON array of tool calls [{"name": ..., "arguments": {...}}];
// stdout: one JSON object {protocolVersion, era, serverName, tools, results}.
// A 2026-07-28 (or later) version is pinned through `server/discover`; an older one is offered in the
// `initialize` handshake, as a 2025-era client does.
import { readFileSync } from "node:fs";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";

const [url, version] = process.argv.slice(2);
const token = process.env.CAIRN_TOKEN;
if (!url || !version || !token) {
  console.error("usage: CAIRN_TOKEN=... node client.mjs <mcp url> <protocol version> < calls.json");
  process.exit(2);
}
const calls = JSON.parse(readFileSync(0, "utf8"));
const modern = version >= "2026";
const options = modern
  ? { versionNegotiation: { mode: { pin: version } } }
  : { supportedProtocolVersions: [version] };
const client = new Client({ name: "cairn-tests", version: "1.0.0" }, options);
const transport = new StreamableHTTPClientTransport(new URL(url), {
  authProvider: { token: async () => token },
});
await client.connect(transport);
try {
  const listed = await client.listTools();
  const results = [];
  for (const call of calls) {
    results.push(await client.callTool({ name: call.name, arguments: call.arguments }));
  }
  const server = client.getServerVersion?.();
  process.stdout.write(JSON.stringify({
    protocolVersion: client.getNegotiatedProtocolVersion(),
    era: client.getProtocolEra(),
    serverName: server?.name,
    tools: listed.tools,
    results,
  }));
} finally {
  await client.close();
}
