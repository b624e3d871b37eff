import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, test } from 'vitest';
import { Client } from '@modelcontextprotocol/client';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { startHttpServer, type RunningHttpServer } from '../../src/mcp/http.js';
import { startWebhookServer, type WebhookServer } from '../../src/github/webhook-server.js';
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTestApp, tempDir } from '../helpers/app.js';

/**
 * Issue 14: slow clients cannot starve the HTTP servers. 300 connections send headers and then
 * trickle a body that never ends; a normal client still gets its answer.
 */

const SLOW = 300;
const sockets: Socket[] = [];
const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  while (closers.length) await closers.pop()!();
});

/** Opens `n` connections that each send a request head and one byte of a 1 MB body. */
async function slowBodies(url: URL, n: number, path: string): Promise<number> {
  let opened = 0;
  await Promise.all(
    Array.from({ length: n }, () =>
      new Promise<void>((resolve) => {
        const s = connect(Number(url.port), url.hostname, () => {
          opened++;
          s.write(`POST ${path} HTTP/1.1\r\nHost: ${url.host}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: 1000000\r\nAuthorization: Bearer secret-token-for-test\r\n\r\n{`);
          resolve();
        });
        s.on('error', () => resolve());
        sockets.push(s);
      }),
    ),
  );
  return opened;
}

describe('webhook audit', () => {
  test('unauthenticated requests with 14 KB of headers add a short line each; the log rotates by size', async () => {
    const dir = tempDir('agentpr-audit-');
    const policy = join(dir, 'policy.json');
    writeFileSync(policy, JSON.stringify({ github_webhook: { audit_log_max_bytes: 8192, audit_log_keep: 2 } }));
    const t = makeTestApp({ env: { AGENTPR_POLICY_FILE: policy } });
    closers.push(async () => {
      await t.cleanup();
      rmSync(dir, { recursive: true, force: true });
    });
    const hook = await startWebhookServer({ app: t.app, port: 0, secrets: ['the-real-secret'] });
    closers.push(() => hook.close());
    const big = 'x'.repeat(7000);
    for (let i = 0; i < 60; i++) {
      const res = await fetch(hook.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-github-event': `push${big}`, 'x-github-delivery': `d-${i}-${big}`, 'x-hub-signature-256': 'sha256=00' },
        body: '{}',
      });
      expect(res.status).toBe(401);
      await res.arrayBuffer();
    }
    await new Promise((r) => setTimeout(r, 200));
    const path = hook.auditPath;
    const files = [path, `${path}.1`, `${path}.2`];
    expect(existsSync(`${path}.1`)).toBe(true);
    expect(existsSync(`${path}.3`)).toBe(false);
    for (const f of files.filter((x) => existsSync(x))) {
      expect(statSync(f).size, f).toBeLessThanOrEqual(8192);
      for (const line of readFileSync(f, 'utf8').trim().split('\n')) {
        expect(line.length).toBeLessThan(400);
        expect(JSON.parse(line)).toMatchObject({ status_code: 401, outcome: 'invalid_signature' });
      }
    }
  }, 60_000);
});

describe('slow clients', () => {
  test(`MCP over HTTP: ${SLOW} slow-body connections, and a normal MCP client still lists the tools`, async () => {
    const t = makeTestApp();
    closers.push(t.cleanup);
    const server: RunningHttpServer = await startHttpServer({ app: t.app, port: 0, token: 'secret-token-for-test' });
    closers.push(() => server.close());
    const url = new URL(server.url);
    expect(await slowBodies(url, SLOW, url.pathname)).toBeGreaterThan(0);
    const client = new Client({ name: 'slow-test', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(url, { requestInit: { headers: { Authorization: 'Bearer secret-token-for-test' } } }));
    const t0 = Date.now();
    const tools = await client.listTools();
    expect(tools.tools.length).toBeGreaterThan(10);
    expect(Date.now() - t0).toBeLessThan(20_000);
    await client.close();
  }, 60_000);

  test('a body that trickles in past the request timeout is cut off (MCP and webhook)', async () => {
    const t = makeTestApp();
    closers.push(t.cleanup);
    const mcp = await startHttpServer({ app: t.app, port: 0, token: 'secret-token-for-test', requestTimeoutMs: 1500, headersTimeoutMs: 1000 });
    closers.push(() => mcp.close());
    const hook = await startWebhookServer({ app: t.app, port: 0, secrets: [], allowUnsigned: true, requestTimeoutMs: 1500, headersTimeoutMs: 1000 });
    closers.push(() => hook.close());
    for (const u of [new URL(mcp.url), new URL(hook.url)]) {
      const before = sockets.length;
      await slowBodies(u, 1, u.pathname);
      const s = sockets[before]!;
      const t0 = Date.now();
      let answer = '';
      s.on('data', (d: Buffer) => (answer += d.toString()));
      await new Promise<void>((resolve) => s.once('close', () => resolve()));
      expect(Date.now() - t0, u.href).toBeLessThan(10_000);
      expect(answer === '' || answer.startsWith('HTTP/1.1 408'), answer).toBe(true);
    }
  }, 30_000);

  test(`webhook receiver: ${SLOW} slow-body connections, and a ping is still answered`, async () => {
    const t = makeTestApp();
    closers.push(t.cleanup);
    const hook: WebhookServer = await startWebhookServer({ app: t.app, port: 0, secrets: [], allowUnsigned: true });
    closers.push(() => hook.close());
    const url = new URL(hook.url);
    await slowBodies(url, SLOW, url.pathname);
    const res = await fetch(hook.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-github-event': 'ping', 'x-github-delivery': 'd-1' },
      body: JSON.stringify({ zen: 'Keep it logically awesome.', hook_id: 1 }),
      signal: AbortSignal.timeout(20_000),
    });
    expect(res.status).toBe(200);
  }, 60_000);
});
