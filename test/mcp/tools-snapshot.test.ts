import { expect, test } from 'vitest';
import { useInMemoryClient } from '../helpers/mcp.js';

const ctx = useInMemoryClient();

// An accidental change to a tool's name, schema, annotations or task support fails here. After a deliberate
// change, refresh with: npx vitest run -u test/mcp/tools-snapshot.test.ts
test('tools/list: names, schemas and annotations are what clients were promised', async () => {
  const { tools } = await ctx.client.listTools();
  const shape = tools
    .map((t) => ({ name: t.name, title: t.title, annotations: t.annotations, execution: t.execution, inputSchema: t.inputSchema, outputSchema: t.outputSchema }))
    .sort((a, b) => a.name.localeCompare(b.name));
  await expect(`${JSON.stringify(shape, null, 2)}\n`).toMatchFileSnapshot('__snapshots__/tools-list.json');
});

test('resource templates are what clients were promised', async () => {
  const { resourceTemplates } = await ctx.client.listResourceTemplates();
  const shape = resourceTemplates.map((t) => ({ name: t.name, uriTemplate: t.uriTemplate, mimeType: t.mimeType })).sort((a, b) => a.uriTemplate.localeCompare(b.uriTemplate));
  await expect(`${JSON.stringify(shape, null, 2)}\n`).toMatchFileSnapshot('__snapshots__/resource-templates.json');
});
