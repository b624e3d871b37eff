import { request } from 'node:http';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { Client } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { makeTestApp, tempDir } from '../helpers/app.js';
import { machineHostnames, startHttpServer } from '../../src/mcp/http.js';

const ROOT = join(import.meta.dirname, '..', '..');

/** POST an MCP initialize to 127.0.0.1:<port>/mcp with the given Host header; the HTTP status. */
function initializeWithHost(port: number, host: string, token: string): Promise<number> {
  const body = JSON.stringify({
    jsonrpc: '2.0',
    id: 1,
    method: 'initialize',
    params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'remote', version: '1' } },
  });
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path: '/mcp',
        method: 'POST',
        headers: {
          host: `${host}:${port}`,
          authorization: `Bearer ${token}`,
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          'content-length': Buffer.byteLength(body),
        },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

describe('launch as documented', () => {
  test('mcp.json runs the agentpr-mcp bin and needs no client-side ${VAR} expansion', () => {
    const text = readFileSync(join(ROOT, 'mcp.json'), 'utf8');
    expect(text).not.toMatch(/\$\{|\$[A-Z_]/);
    const cfg = JSON.parse(text) as { mcpServers: Record<string, { command: string }> };
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { bin: Record<string, string> };
    expect(Object.keys(pkg.bin)).toContain(cfg.mcpServers.agentpr!.command);
  });

  test('the public-bind example: 0.0.0.0 with a token answers a remote client using the machine name or address', async () => {
    const t = makeTestApp();
    const token = 'x'.repeat(40);
    const running = await startHttpServer({ app: t.app, host: '0.0.0.0', port: 0, token, allowedHosts: [] });
    try {
      expect(await initializeWithHost(running.port, hostname(), token)).toBe(200);
      const address = machineHostnames().find((h) => h !== hostname() && !h.startsWith('127.') && h !== '[::1]');
      if (address) expect(await initializeWithHost(running.port, address, token)).toBe(200);
      // Another name is still refused (DNS rebinding guard) until it is allowed.
      expect(await initializeWithHost(running.port, 'evil.example', token)).toBe(403);
    } finally {
      await running.close();
      await t.cleanup();
    }
  });

  test('agentpr-mcp takes AGENTPR_READ_ONLY and AGENTPR_TOOLSETS from the environment; a flag wins over them', async () => {
    const bin = join(ROOT, 'dist', 'src', 'mcp', 'stdio.js');
    const list = async (args: string[], env: Record<string, string>) => {
      const transport = new StdioClientTransport({
        command: process.execPath,
        args: [bin, ...args],
        env: { ...(process.env as Record<string, string>), AGENTPR_HOME: tempDir('agentpr-launch-'), AGENTPR_LOG_LEVEL: 'silent', ...env },
      });
      const client = new Client({ name: 'launch-test', version: '1.0.0' });
      await client.connect(transport);
      const names = (await client.listTools()).tools.map((t) => t.name).sort();
      await client.close();
      return names;
    };
    expect(await list([], { AGENTPR_READ_ONLY: '1', AGENTPR_TOOLSETS: 'github' })).toEqual(['webhook-audit-summary']);
    expect(await list(['--toolsets', 'manager'], { AGENTPR_TOOLSETS: 'github' })).toEqual(['manager-tick']);
  });
});
