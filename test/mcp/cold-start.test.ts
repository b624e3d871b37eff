import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, test } from 'vitest';
import { Client } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { TOOLS } from '../../tools/index.js';
import { Registry, effectiveInput, type AnyTool } from '../../src/registry.js';
import { convertSchema, LISTED_SCHEMA_TARGET } from '../../src/mcp/listed-schema.js';
import { listingOf, type ToolCatalog } from '../../src/mcp/tool-catalog.js';
import { makeTestApp, tempDir } from '../helpers/app.js';
import { connectInMemory, resourceText, textOf, type ToolCallResult } from '../helpers/mcp.js';

// agentpr-mcp answers tools/list from the build's listing and runs the tool handlers' module code
// (and the worker, GitHub, analysis and manager modules behind them) on the first tools/call; the
// built bin has them in its one bundle. What a client sees and what a call does must not change.

const ROOT = join(import.meta.dirname, '..', '..');
const STDIO_BIN = join(ROOT, 'dist', 'src', 'mcp', 'stdio.js');
const RECORDER = pathToFileURL(join(ROOT, 'test', 'fixtures', 'node', 'record-module-loads.mjs')).href;

/** The catalog the build writes (scripts/build-schemas.mjs), made from the given tools. */
function catalogOf(tools: readonly AnyTool[]): ToolCatalog {
  const catalog: ToolCatalog = { target: LISTED_SCHEMA_TARGET, tools: {}, listing: [] };
  for (const t of tools) {
    catalog.tools[t.name] = { input: convertSchema(effectiveInput(t), 'input'), output: convertSchema(t.output, 'output') };
    catalog.listing!.push({ name: t.name, title: t.title, description: t.description, tier: t.tier, annotations: t.annotations });
  }
  return catalog;
}

type Listed = Awaited<ReturnType<Client['listTools']>>['tools'];
/** Everything a client is told about each tool. */
const shapeOf = (tools: Listed) => [...tools].sort((a, b) => a.name.localeCompare(b.name));

/** What the sources' own server (tools imported up front) lists and answers. */
async function fromSources(call?: { name: string; arguments: Record<string, unknown> }) {
  const t = makeTestApp();
  const c = await connectInMemory(t.app);
  try {
    const { tools } = await c.client.listTools();
    const answer = call ? ((await c.client.callTool(call)) as ToolCallResult) : undefined;
    return { tools, answer };
  } finally {
    await c.close();
    await t.cleanup();
  }
}

/** Module files read so far by the spawned server. */
const loadedModules = (log: string) =>
  readFileSync(log, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((u) => u.replace(pathToFileURL(ROOT).href, ''));

describe('agentpr-mcp (the built bin) at a cold start', () => {
  test('lists every tool exactly as the sources define it, reading no tool module file; the first call works', { timeout: 120_000 }, async () => {
    const home = tempDir('agentpr-coldstart-');
    const log = join(home, 'modules.log');
    writeFileSync(log, '');
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: ['--import', RECORDER, STDIO_BIN],
      env: { ...(process.env as Record<string, string>), AGENTPR_HOME: home, AGENTPR_LOG_LEVEL: 'silent', AGENTPR_TEST_MODULE_LOG: log },
    });
    const client = new Client({ name: 'coldstart-test', version: '1.0.0' });
    await client.connect(transport);
    try {
      const { tools } = await client.listTools();
      const atStart = loadedModules(log);
      // A handful of bundle files, not the ~250 modules (agentpr's tools, worker and GitHub code, zod, the SDK) read before.
      expect(atStart.length, atStart.join('\n')).toBeLessThanOrEqual(15);
      expect(atStart.filter((u) => u.includes('/dist/tools/') || u.includes('/node_modules/zod/'))).toEqual([]);

      const reference = await fromSources({ name: 'show-run', arguments: { run_id: 'run_zz' } });
      expect(shapeOf(tools)).toEqual(shapeOf(reference.tools));

      // The first call imports the tools; its answer is the registry's, as from the sources.
      const bad = (await client.callTool({ name: 'show-run', arguments: { run_id: 'run_zz' } })) as ToolCallResult;
      expect(bad.isError).toBe(true);
      expect(textOf(bad)).toBe(textOf(reference.answer!));
      // The tools ran from the bundle: no tool module file was read for them either.
      expect(loadedModules(log).filter((u) => u.includes('/dist/tools/'))).toEqual([]);

      const created = (await client.callTool({ name: 'create-run', arguments: { owner: 'octo', repo: 'cold' } })) as ToolCallResult;
      expect(created.isError, textOf(created)).toBeFalsy();
      const runId = (created.structuredContent!.run as { run_id: string }).run_id;
      const listed = (await client.callTool({ name: 'list-runs', arguments: {} })) as ToolCallResult;
      expect((listed.structuredContent!.runs as Array<{ run_id: string }>).map((r) => r.run_id)).toEqual([runId]);

      // Resources that import their readers on first use, and the board's HTML found beside its module.
      const board = JSON.parse(resourceText(await client.readResource({ uri: 'agentpr://board' }))) as Record<string, unknown>;
      expect(JSON.stringify(board)).toContain(runId);
      expect(resourceText(await client.readResource({ uri: 'ui://agentpr/board.html' }))).toMatch(/^<!doctype html>/i);
    } finally {
      await client.close();
    }
  });
});

describe('a registry with deferred tools (what agentpr-mcp uses)', () => {
  const listing = () => listingOf(catalogOf(TOOLS))!;

  test('tools/list answers from the listing alone, identical to the loaded tools; the tools load once, on the first call', async () => {
    let loads = 0;
    const registry = new Registry({
      listing: listing(),
      load: async () => {
        loads++;
        return TOOLS;
      },
    });
    const t = makeTestApp();
    const c = await connectInMemory(t.app, { registry });
    try {
      const { tools } = await c.client.listTools();
      await c.client.listResources();
      expect(loads).toBe(0);
      expect(shapeOf(tools)).toEqual(shapeOf((await fromSources()).tools));

      const unknown = await registry.call('no-such-tool', {}, { app: t.app, entry: 'mcp' });
      expect(unknown).toMatchObject({ ok: false, code: 'unknown_tool' });
      expect(loads).toBe(0);

      const bad = (await c.client.callTool({ name: 'create-run', arguments: { owner: 'octo' } })) as ToolCallResult;
      expect(bad.isError).toBe(true);
      expect(textOf(bad)).toMatch(/^invalid input for create-run: repo: /);
      const ok = (await c.client.callTool({ name: 'create-run', arguments: { owner: 'octo', repo: 'deferred' } })) as ToolCallResult;
      expect(ok.isError, textOf(ok)).toBeFalsy();
      expect(loads).toBe(1);
      expect(registry.tools).toBe(TOOLS);
    } finally {
      await c.close();
      await t.cleanup();
    }
  });

  test('read-only and toolsets filter the listing without loading the tools', async () => {
    let loads = 0;
    const registry = new Registry({ listing: listing(), load: async () => (loads++, TOOLS) });
    const t = makeTestApp();
    const c = await connectInMemory(t.app, { registry, readOnly: true, toolsets: ['github'] });
    try {
      expect((await c.client.listTools()).tools.map((x) => x.name)).toEqual(['webhook-audit-summary']);
      expect(loads).toBe(0);
    } finally {
      await c.close();
      await t.cleanup();
    }
  });

  test('a listing that does not match the loaded tools refuses the call and changes nothing', async () => {
    const stale = listing().map((l) => (l.name === 'create-run' ? { ...l, description: 'an older description' } : l));
    const registry = new Registry({ listing: stale, load: async () => TOOLS });
    const t = makeTestApp();
    try {
      const out = await registry.call('create-run', { owner: 'octo', repo: 'stale' }, { app: t.app, entry: 'mcp' });
      expect(out).toMatchObject({ ok: false, code: 'internal' });
      expect(!out.ok && out.error).toMatch(/the tool listing does not match the tools \(create-run: description\); rebuild with npm run build/);
      expect(t.app.service.listRuns().runs).toEqual([]);
    } finally {
      await t.cleanup();
    }
  });

  test('a failed import is reported on that call and tried again on the next', async () => {
    let loads = 0;
    const registry = new Registry({
      listing: listing(),
      load: async () => {
        if (++loads === 1) throw new Error('disk went away');
        return TOOLS;
      },
    });
    const t = makeTestApp();
    try {
      const first = await registry.call('list-runs', {}, { app: t.app, entry: 'cli' });
      expect(first).toEqual({ ok: false, code: 'internal', error: 'internal error: the tools could not be loaded: disk went away' });
      const second = await registry.call('list-runs', {}, { app: t.app, entry: 'cli' });
      expect(second.ok).toBe(true);
      expect(loads).toBe(2);
    } finally {
      await t.cleanup();
    }
  });
});
