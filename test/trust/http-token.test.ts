import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/client';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { afterEach, describe, expect, test } from 'vitest';
import { startHttpServer, type RunningHttpServer } from '../../src/mcp/http.js';
import type { App } from '../../src/app.js';
import { makeTestApp } from '../helpers/app.js';

let app: App;
let cleanup: (() => Promise<void>) | undefined;
const servers: RunningHttpServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
  await cleanup?.();
  cleanup = undefined;
});

function freshApp(): void {
  const t = makeTestApp({ env: { AGENTPR_MCP_TOKEN: '' } });
  app = t.app;
  cleanup = t.cleanup;
}

const listTools = (url: string, headers: Record<string, string> = {}) =>
  fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} }),
  });

describe('HTTP needs a token by default', () => {
  test('first start generates a token, stores it 0600 in the data home and prints it once with the URL', async () => {
    freshApp();
    const printed: string[] = [];
    const first = await startHttpServer({ app, port: 0, stderr: (t) => printed.push(t) });
    servers.push(first);
    const file = join(app.config.home, 'mcp_token');
    expect(first.tokenFile).toBe(file);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const token = readFileSync(file, 'utf8').trim();
    expect(token).toMatch(/^[0-9a-f]{64}$/);
    expect(printed.join('')).toContain(first.url);
    expect(printed.join('')).toContain(`token: ${token}`);

    // A caller without the token (another local user, say) sees nothing, not even the tool list.
    const anonymous = await listTools(first.url);
    expect(anonymous.status).toBe(401);
    expect(await anonymous.text()).not.toContain('approve-open-pr');

    const client = new Client({ name: 'token-test', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(first.url), { requestInit: { headers: { Authorization: `Bearer ${token}` } } }));
    expect((await client.listTools()).tools.length).toBeGreaterThan(10);
    await client.close();

    // A second start reuses the file and prints nothing.
    const again: string[] = [];
    const second = await startHttpServer({ app, port: 0, stderr: (t) => again.push(t) });
    servers.push(second);
    expect(again).toEqual([]);
    expect((await listTools(second.url, { authorization: `Bearer ${token}` })).status).toBe(200);
  });

  test('--no-auth opts out on loopback only, with a warning', async () => {
    freshApp();
    const open = await startHttpServer({ app, port: 0, noAuth: true, stderr: () => undefined });
    servers.push(open);
    expect(open.auth).toBe('none');
    expect((await listTools(open.url)).status).toBe(200);
    await expect(startHttpServer({ app, host: '0.0.0.0', port: 0, noAuth: true })).rejects.toThrow(/--no-auth is for loopback addresses only/);
  });

  test('Origin: only the server\'s own origin and configured ones', async () => {
    freshApp();
    const s = await startHttpServer({ app, port: 0, noAuth: true, allowedOrigins: ['https://board.example.com'] });
    servers.push(s);
    const own = new URL(s.url).origin;
    expect((await listTools(s.url, { origin: own })).status).toBe(200);
    expect((await listTools(s.url, { origin: 'https://board.example.com' })).status).toBe(200);
    const other = await listTools(s.url, { origin: 'http://127.0.0.1:1' });
    expect(other.status).toBe(403);
    expect(await other.text()).toContain('origin http://127.0.0.1:1 is not allowed');
  });
});
