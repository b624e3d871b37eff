import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Script } from 'node:vm';
import { afterAll, describe, expect, test } from 'vitest';
import { Client } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { tempDir } from '../helpers/app.js';
import { textOf, type ToolCallResult } from '../helpers/mcp.js';

// The built agentpr-mcp is a loader (dist/src/mcp/stdio.js) that compiles one CommonJS bundle with
// the V8 code cache the build made for it. The cache must fit the bundle it sits beside; a cache V8
// refuses, or none at all, must only cost time; and code compiled from a cache must still reach
// the ES-module-only packages (execa, octokit, openai) it imports on first use.

const ROOT = join(import.meta.dirname, '..', '..');
const MCP_DIR = join(ROOT, 'dist', 'src', 'mcp');
const WRAP = (source: string) => `(function (exports, require, module, __filename, __dirname, __agentprLoaderImport) {${source}\n})`;

const copies: string[] = [];
afterAll(() => {
  for (const d of copies) rmSync(d, { recursive: true, force: true });
});

/** The loader and bundle copied beside the real ones (so node_modules resolves the same), with the given cache. */
function copyOfBin(cache: Buffer | null): string {
  const dir = mkdtempSync(join(ROOT, 'dist', 'src', 'mcp-cache-test-'));
  copies.push(dir);
  copyFileSync(join(MCP_DIR, 'stdio.js'), join(dir, 'stdio.js'));
  copyFileSync(join(MCP_DIR, 'stdio-bundle.cjs'), join(dir, 'stdio-bundle.cjs'));
  if (cache) writeFileSync(join(dir, 'stdio-bundle.v8cache'), cache);
  return join(dir, 'stdio.js');
}

/** initialize, tools/list, then create-run (its doctor runs git through execa, an ES module imported on first use). */
async function serveOnce(bin: string): Promise<{ tools: number; created: ToolCallResult; stderr: string }> {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [bin],
    env: { ...(process.env as Record<string, string>), AGENTPR_HOME: tempDir('agentpr-cache-'), AGENTPR_LOG_LEVEL: 'warn' },
    stderr: 'pipe',
  });
  let stderr = '';
  transport.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const client = new Client({ name: 'code-cache-test', version: '1.0.0' });
  await client.connect(transport);
  try {
    const { tools } = await client.listTools();
    const created = (await client.callTool({ name: 'create-run', arguments: { owner: 'octo', repo: 'cached' } })) as ToolCallResult;
    return { tools: tools.length, created, stderr };
  } finally {
    await client.close();
  }
}

describe('agentpr-mcp compiled from the build code cache', () => {
  test('the cache the build wrote is accepted by this node for the bundle beside it', () => {
    const source = readFileSync(join(MCP_DIR, 'stdio-bundle.cjs'), 'utf8');
    const cachedData = readFileSync(join(MCP_DIR, 'stdio-bundle.v8cache'));
    expect(cachedData.length).toBeGreaterThan(100_000);
    const script = new Script(WRAP(source), { filename: join(MCP_DIR, 'stdio-bundle.cjs'), cachedData });
    expect(script.cachedDataRejected).toBe(false);
  });

  test('with the cache, a call that imports an ES module package works (the bundle imports through the loader)', { timeout: 60_000 }, async () => {
    const r = await serveOnce(join(MCP_DIR, 'stdio.js'));
    expect(r.tools).toBeGreaterThan(30);
    expect(r.created.isError, textOf(r.created)).toBeFalsy();
    expect(r.stderr).not.toMatch(/dynamic import callback|ExperimentalWarning/);
  });

  test('a cache V8 refuses (another build, corrupt) or none at all only costs time: the bin serves the same', { timeout: 60_000 }, async () => {
    const garbage = Buffer.alloc(64 * 1024, 7);
    for (const cache of [garbage, null]) {
      const r = await serveOnce(copyOfBin(cache));
      expect(r.tools).toBeGreaterThan(30);
      expect(r.created.isError, textOf(r.created)).toBeFalsy();
    }
  });
});
