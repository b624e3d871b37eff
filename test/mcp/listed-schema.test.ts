import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { TOOLS } from '../../tools/index.js';
import { effectiveInput } from '../../src/registry.js';
import { convertSchema, LISTED_SCHEMA_TARGET, setPrebuiltSchemas } from '../../src/mcp/listed-schema.js';
import { PACKAGE_ROOT } from '../../src/version.js';
import { makeTestApp } from '../helpers/app.js';
import { connectInMemory, textOf, type ToolCallResult } from '../helpers/mcp.js';

// The build writes every tool's JSON Schemas to dist/tool-schemas.json so agentpr-mcp answers its
// first tools/list without converting them; what it lists must be exactly what zod would say.

describe('dist/tool-schemas.json (written by npm run build)', () => {
  const file = JSON.parse(readFileSync(join(PACKAGE_ROOT, 'dist', 'tool-schemas.json'), 'utf8')) as {
    target: string;
    tools: Record<string, { input: unknown; output: unknown }>;
  };

  test('covers every tool, input and output, as zod converts them from the sources', () => {
    expect(file.target).toBe(LISTED_SCHEMA_TARGET);
    expect(Object.keys(file.tools).sort()).toEqual(TOOLS.map((t) => t.name).sort());
    for (const tool of TOOLS) {
      expect(file.tools[tool.name]!.input, `${tool.name} input`).toEqual(convertSchema(effectiveInput(tool), 'input'));
      expect(file.tools[tool.name]!.output, `${tool.name} output`).toEqual(convertSchema(tool.output, 'output'));
    }
  });
});

describe('tools/list answers from the build file only when it fits the tool', () => {
  let t: ReturnType<typeof makeTestApp>;
  let c: Awaited<ReturnType<typeof connectInMemory>>;
  const listRuns = TOOLS.find((x) => x.name === 'list-runs')!;
  const real = convertSchema(effectiveInput(listRuns), 'input');

  beforeEach(() => {
    t = makeTestApp();
  });
  afterEach(async () => {
    await c?.close();
    await t.cleanup();
    setPrebuiltSchemas(undefined);
  });

  const listedInput = async (name: string) => {
    c = await connectInMemory(t.app);
    const { tools } = await c.client.listTools();
    return tools.find((x) => x.name === name)!.inputSchema as Record<string, unknown>;
  };

  test('an entry whose fields match the schema is listed as built', async () => {
    setPrebuiltSchemas({ 'list-runs': { input: { ...real, description: 'from the build file' } } });
    const listed = await listedInput('list-runs');
    expect(listed.description).toBe('from the build file');
    expect(listed.properties).toEqual(real.properties);
  });

  test('a stale entry (other fields) is ignored and the schema is converted instead', async () => {
    setPrebuiltSchemas({ 'list-runs': { input: { type: 'object', properties: { stale_field: { type: 'string' } } } } });
    const listed = await listedInput('list-runs');
    expect(Object.keys(listed.properties as object)).not.toContain('stale_field');
    expect(listed).toEqual({ type: 'object', ...real });
  });

  test('the cached schema still validates calls: an unknown field is refused and nothing is created', async () => {
    setPrebuiltSchemas(null);
    c = await connectInMemory(t.app);
    const r = (await c.client.callTool({ name: 'create-run', arguments: { owner: 'octo', repo: 'demo', bogus: 1 } })) as ToolCallResult;
    expect(r.isError).toBe(true);
    expect(textOf(r)).toMatch(/bogus/);
    expect(t.app.service.listRuns().total).toBe(0);
  });

  test('two servers over one process list identical schemas (converted once, copied out)', async () => {
    setPrebuiltSchemas(null);
    const first = await listedInput('list-runs');
    first.mutated = true; // a caller decorating what it got must not change the cache
    await c.close();
    const second = await listedInput('list-runs');
    expect(second.mutated).toBeUndefined();
    expect(second).toEqual({ type: 'object', ...real });
  });
});
