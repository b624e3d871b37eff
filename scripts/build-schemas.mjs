// Writes dist/tool-schemas.json: every tool's input and output JSON Schema, as MCP lists them, so
// agentpr-mcp answers its first tools/list without converting schemas (src/mcp/listed-schema.ts),
// and the listing (name, title, description, tier, annotations, in the registry's order) that lets
// the bundled agentpr-mcp list tools before it imports them (src/mcp/tool-catalog.ts).
import { writeFileSync } from 'node:fs';

const { TOOLS } = await import('../dist/tools/index.js');
const { effectiveInput } = await import('../dist/src/registry.js');
const { convertSchema, LISTED_SCHEMA_TARGET } = await import('../dist/src/mcp/listed-schema.js');

const tools = {};
const listing = [];
for (const tool of TOOLS) {
  tools[tool.name] = { input: convertSchema(effectiveInput(tool), 'input'), output: convertSchema(tool.output, 'output') };
  listing.push({ name: tool.name, title: tool.title, description: tool.description, tier: tool.tier, annotations: tool.annotations });
}
writeFileSync(new URL('../dist/tool-schemas.json', import.meta.url), `${JSON.stringify({ target: LISTED_SCHEMA_TARGET, tools, listing })}\n`);
