// Writes dist/tool-schemas.json: every tool's input and output JSON Schema, as MCP lists them, so
// agentpr-mcp answers its first tools/list without converting schemas (src/mcp/listed-schema.ts).
import { writeFileSync } from 'node:fs';

const { TOOLS } = await import('../dist/tools/index.js');
const { effectiveInput } = await import('../dist/src/registry.js');
const { convertSchema, LISTED_SCHEMA_TARGET } = await import('../dist/src/mcp/listed-schema.js');

const tools = {};
for (const tool of TOOLS) {
  tools[tool.name] = { input: convertSchema(effectiveInput(tool), 'input'), output: convertSchema(tool.output, 'output') };
}
writeFileSync(new URL('../dist/tool-schemas.json', import.meta.url), `${JSON.stringify({ target: LISTED_SCHEMA_TARGET, tools })}\n`);
