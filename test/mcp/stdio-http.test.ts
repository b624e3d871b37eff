import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { makeTestApp, tempDir } from '../helpers/app.js';
import { startHttpServer, type RunningHttpServer } from '../../src/mcp/http.js';
import type { App } from '../../src/app.js';
import type { ToolCallResult } from '../helpers/mcp.js';

const ROOT = join(import.meta.dirname, '..', '..');
const STDIO_BIN = join(ROOT, 'dist', 'src', 'mcp', 'stdio.js');

describe('stdio: the built agentpr-mcp binary', () => {
  test('initializes, lists tools, creates a run; stdout carries only protocol', async () => {
    const home = tempDir('agentpr-stdio-');
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [STDIO_BIN],
      env: { ...(process.env as Record<string, string>), AGENTPR_HOME: home, AGENTPR_LOG_LEVEL: 'debug' },
      stderr: 'pipe',
    });
    let stderr = '';
    transport.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const client = new Client({ name: 'stdio-test', version: '1.0.0' });
    await client.connect(transport);
    expect(client.getServerVersion()?.name).toBe('agentpr-mcp');
    const tools = await client.listTools();
    expect(tools.tools.map((t) => t.name)).toContain('create-run');
    const r = (await client.callTool({ name: 'create-run', arguments: { owner: 'octo', repo: 'stdio' } })) as ToolCallResult;
    expect(r.isError).toBeFalsy();
    expect((r.structuredContent!.run as { state: string }).state).toBe('QUEUED');
    const bad = (await client.callTool({ name: 'pause', arguments: { run_id: 'run_ffffffffffff' } })) as ToolCallResult;
    expect(bad.isError).toBe(true);
    await client.close();
    // Logs went to stderr as pino JSON lines.
    expect(stderr).toContain('"msg":"agentpr-mcp serving on stdio"');
  });
});

describe('stdio: malformed and oversized input', () => {
  test('parse errors, non-JSON-RPC lines and oversized lines are answered and the server keeps serving', async () => {
    const { spawn } = await import('node:child_process');
    const home = tempDir('agentpr-stdio-');
    const child = spawn(process.execPath, [STDIO_BIN], { env: { ...process.env, AGENTPR_HOME: home, AGENTPR_LOG_LEVEL: 'silent' }, stdio: ['pipe', 'pipe', 'ignore'] });
    const lines: Array<{ id?: unknown; error?: { code: number; message: string }; result?: { serverInfo?: { name: string } } }> = [];
    let buf = '';
    const gotInit = new Promise<void>((resolve) => {
      child.stdout.on('data', (d: Buffer) => {
        buf += d.toString();
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const msg = JSON.parse(buf.slice(0, nl)) as (typeof lines)[number];
          buf = buf.slice(nl + 1);
          lines.push(msg);
          if (msg.id === 1) resolve();
        }
      });
    });
    child.stdin.write('{garbage\n');
    child.stdin.write(`${JSON.stringify({ hello: 'world', id: 7 })}\n`);
    child.stdin.write(`${'x'.repeat(9 * 1024 * 1024)}\n`);
    child.stdin.write(`${JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } } })}\n`);
    await gotInit;
    child.kill();
    expect(lines[0]).toMatchObject({ id: null, error: { code: -32700 } });
    expect(lines[1]).toMatchObject({ id: 7, error: { code: -32600 } });
    expect(lines[2]!.error!.message).toMatch(/exceeds the \d+-byte limit/);
    expect(lines[3]!.result!.serverInfo!.name).toBe('agentpr-mcp');
  });
});

describe('HTTP: Streamable HTTP at /mcp on 127.0.0.1', () => {
  let app: App;
  let cleanup: () => Promise<void>;
  let open: RunningHttpServer;
  let guarded: RunningHttpServer;
  const TOKEN = 'test-token-0123456789';
  beforeAll(async () => {
    ({ app, cleanup } = makeTestApp());
    open = await startHttpServer({ app, port: 0, noAuth: true });
    guarded = await startHttpServer({ app, port: 0, token: TOKEN });
  });
  afterAll(async () => {
    await open.close();
    await guarded.close();
    await cleanup();
  });

  test('an SDK client without a token on an open loopback server', async () => {
    const client = new Client({ name: 'http-test', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(open.url)));
    const r = (await client.callTool({ name: 'create-run', arguments: { owner: 'octo', repo: 'http' } })) as ToolCallResult;
    expect(r.isError).toBeFalsy();
    const listed = (await client.callTool({ name: 'list-runs', arguments: {} })) as ToolCallResult;
    expect(listed.structuredContent!.total).toBe(1);
    await client.close();
  });

  test('a listening client hears resources/list_changed when a run is created', async () => {
    const client = new Client({ name: 'http-listen', version: '1.0.0' }, { versionNegotiation: { mode: { pin: '2026-07-28' } } });
    await client.connect(new StreamableHTTPClientTransport(new URL(open.url)));
    let heard = 0;
    const gotOne = new Promise<void>((resolve) => {
      client.setNotificationHandler('notifications/resources/list_changed', () => {
        heard++;
        resolve();
      });
    });
    const sub = await client.listen({ resourcesListChanged: true });
    app.service.createRun({ owner: 'octo', repo: 'listened' });
    await gotOne;
    expect(heard).toBeGreaterThanOrEqual(1);
    await sub.close();
    await client.close();
  });

  test('with a token: the right bearer works, a missing or wrong one gets 401', async () => {
    const good = new Client({ name: 'http-test', version: '1.0.0' });
    await good.connect(new StreamableHTTPClientTransport(new URL(guarded.url), { requestInit: { headers: { Authorization: `Bearer ${TOKEN}` } } }));
    expect((await good.listTools()).tools.length).toBeGreaterThan(10);
    await good.close();

    const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} });
    const headers = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
    const none = await fetch(guarded.url, { method: 'POST', headers, body });
    expect(none.status).toBe(401);
    const wrong = await fetch(guarded.url, { method: 'POST', headers: { ...headers, authorization: 'Bearer nope' }, body });
    expect(wrong.status).toBe(401);
    expect(await wrong.text()).toContain('bearer token');
  });

  test('a foreign Host or Origin gets 403 (DNS rebinding)', async () => {
    const { request } = await import('node:http');
    const send = (headers: Record<string, string>) =>
      new Promise<number>((resolve, reject) => {
        const req = request(open.url, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers } }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on('error', reject);
        req.end(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }));
      });
    expect(await send({ host: 'evil.example.com' })).toBe(403);
    expect(await send({ origin: 'http://evil.example.com' })).toBe(403);
    // Another local program's page (any other port) is refused; the server's own origin is not.
    expect(await send({ origin: 'http://localhost:3000' })).toBe(403);
    expect(await send({ origin: new URL(open.url).origin })).not.toBe(403);
  });

  test('wrong path 404; malformed JSON-RPC answered with an error and the server keeps serving', async () => {
    const headers = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
    expect((await fetch(open.url.replace('/mcp', '/other'), { method: 'POST', headers, body: '{}' })).status).toBe(404);
    const garbage = await fetch(open.url, { method: 'POST', headers, body: '{not json' });
    expect(garbage.status).toBeGreaterThanOrEqual(400);
    const wrongShape = await fetch(open.url, { method: 'POST', headers, body: JSON.stringify({ hello: 'world' }) });
    expect(wrongShape.status).toBeGreaterThanOrEqual(400);
    const client = new Client({ name: 'http-test', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(open.url)));
    expect((await client.listTools()).tools.length).toBeGreaterThan(10);
    await client.close();
  });

  test('an oversized body gets 413 and the server keeps serving', async () => {
    const headers = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
    const big = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: { pad: 'x'.repeat(5 * 1024 * 1024) } });
    const r = await fetch(open.url, { method: 'POST', headers, body: big });
    expect(r.status).toBe(413);
    const client = new Client({ name: 'http-test', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(open.url)));
    expect((await client.listTools()).tools.length).toBeGreaterThan(10);
    await client.close();
  });

  test('refuses to bind a non-loopback address with --no-auth', async () => {
    await expect(startHttpServer({ app, host: '0.0.0.0', port: 0, noAuth: true })).rejects.toThrow(/--no-auth is for loopback addresses only/);
  });

  test('read-only over HTTP hides write tools', async () => {
    const ro = await startHttpServer({ app, port: 0, noAuth: true, readOnly: true });
    const client = new Client({ name: 'http-test', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(ro.url)));
    const names = (await client.listTools()).tools.map((t) => t.name);
    await client.close();
    await ro.close();
    expect(names).toContain('show-run');
    expect(names).not.toContain('pause');
  });
});
