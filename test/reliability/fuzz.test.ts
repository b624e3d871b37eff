import fc from 'fast-check';
import { beforeAll, describe, expect, test } from 'vitest';
import { z } from 'zod';
import { textOf, useInMemoryClient, type ToolCallResult } from '../helpers/mcp.js';
import { TOOLS } from '../../tools/index.js';
import { effectiveInput } from '../../src/registry.js';

const ctx = useInMemoryClient({ env: { AGENTPR_CODEX_BIN: '/nonexistent/codex' } });
let existingRun: string;
beforeAll(() => {
  existingRun = ctx.app.service.createRun({ owner: 'octo', repo: 'fuzz' }).run_id;
});

/** Changes made on this connection so far: the server runs in-process on the same connection. */
const changes = () => (ctx.app.db.prepare('SELECT total_changes() AS n').get() as { n: number }).n;

// A `__proto__` key never reaches a tool: the SDK's wire parsing assigns argument keys, so it is
// dropped (the safe outcome, tested on its own below). Generated keys leave it out.
const key = (maxLength: number) => fc.string({ maxLength }).filter((k) => k !== '__proto__');
const anyJson = fc.jsonValue({ maxDepth: 3 }).filter((v) => !JSON.stringify(v).includes('"__proto__"'));
/** A value of a type the field cannot take, or a string far too long. */
const wrongValue = fc.oneof(
  fc.constant(null),
  fc.integer(),
  fc.double({ noNaN: false }),
  fc.boolean(),
  fc.string({ maxLength: 20 }),
  fc.constant('x'.repeat(100_000)),
  fc.array(anyJson, { maxLength: 3 }),
  fc.dictionary(key(5), anyJson, { maxKeys: 3 }),
);

const RUNS = Number(process.env.AGENTPR_FUZZ_RUNS ?? 200);

describe.each(TOOLS.map((t) => [t.name, t] as const))('fuzz %s', (name, tool) => {
  const schema = effectiveInput(tool);
  const fields = Object.keys(schema.shape as Record<string, z.ZodType>);
  // Invalid arguments: random objects, or one field set to a wrong value, or an unknown field.
  const args = fc.oneof(
    fc.dictionary(key(12), anyJson, { maxKeys: 6 }),
    fields.length
      ? fc.record({ field: fc.constantFrom(...fields), value: wrongValue, base: fc.dictionary(fc.constantFrom(...fields), anyJson, { maxKeys: 4 }) }).map(({ field, value, base }) => ({ ...base, [field]: value }))
      : fc.constant({ unexpected: 1 }),
    fc.record({ zz_unknown_field: anyJson }),
    anyJson.filter((v) => v !== null && typeof v === 'object' && !Array.isArray(v)),
  );

  test(`${RUNS} invalid inputs: always isError with a message, never a crash or a database change`, async () => {
    await fc.assert(
      fc.asyncProperty(args, async (generated) => {
        // What the server receives is the JSON of the arguments (NaN becomes null, and so on).
        const input = JSON.parse(JSON.stringify(generated)) as Record<string, unknown>;
        fc.pre(!schema.safeParse(input).success);
        const before = changes();
        const r = (await ctx.client.callTool({ name, arguments: input })) as ToolCallResult;
        expect(r.isError).toBe(true);
        expect(textOf(r).length).toBeGreaterThan(10);
        expect(changes()).toBe(before);
      }),
      { numRuns: RUNS },
    );
    // Still serving, and the database is intact.
    const ok = (await ctx.client.callTool({ name: 'show-run', arguments: { run_id: existingRun } })) as ToolCallResult;
    expect(ok.isError).toBeFalsy();
  });

  test('arguments that are not an object are a JSON-RPC error, not a crash', async () => {
    for (const bad of [[], 'text', 42, true]) {
      const before = changes();
      await expect(ctx.client.callTool({ name, arguments: bad as unknown as Record<string, unknown> })).rejects.toThrow(/Invalid/);
      expect(changes()).toBe(before);
    }
  });

  if (fields.includes('run_id')) {
    test('well-formed arguments naming a run that does not exist: isError, no change', async () => {
      const runId = 'run_0000000000ff';
      const before = changes();
      const r = (await ctx.client.callTool({ name, arguments: { run_id: runId } })) as ToolCallResult;
      // Either the input misses other required fields or the run is unknown; both are refusals.
      expect(r.isError).toBe(true);
      expect(changes()).toBe(before);
    });
  }
});

test('a __proto__ argument pollutes nothing and crashes nothing', async () => {
  const before = changes();
  const r = (await ctx.client.callTool({ name: 'list-runs', arguments: JSON.parse('{"__proto__": {"polluted": true}}') as Record<string, unknown> })) as ToolCallResult;
  expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  // The key was dropped on the wire, so this is an ordinary list-runs answer.
  expect(r.isError).toBeFalsy();
  expect(r.structuredContent).toMatchObject({ total: 1 });
  expect(changes()).toBe(before);
  const ok = (await ctx.client.callTool({ name: 'show-run', arguments: { run_id: existingRun } })) as ToolCallResult;
  expect(ok.isError).toBeFalsy();
});
