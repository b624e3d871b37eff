import { createHmac } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { makeTestApp } from '../helpers/app.js';
import type { App } from '../../src/app.js';
import { AuditWriter, type AuditLine } from '../../src/github/audit.js';
import { startWebhookServer, type WebhookServer } from '../../src/github/webhook-server.js';
import { fixture } from './runs.js';

const SECRET = 'hot-path-secret';

/** Signs bytes the way GitHub does: HMAC-SHA256 of the body exactly as sent. */
const signBytes = (secret: string, body: Buffer): string => `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;

async function post(url: string, body: Buffer, headers: Record<string, string>): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(url, { method: 'POST', body, headers: { 'content-type': 'application/json', ...headers } });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe('webhook receiver: the body is checked as the bytes GitHub sent', () => {
  let ctx: ReturnType<typeof makeTestApp>;
  let app: App;
  let hook: WebhookServer;
  beforeEach(async () => {
    ctx = makeTestApp({ env: { GITHUB_TOKEN: '', AGENTPR_GITHUB_TOKEN: '', GH_TOKEN: '' } });
    app = ctx.app;
    hook = await startWebhookServer({ app, host: '127.0.0.1', port: 0, secrets: [SECRET] });
  });
  afterEach(async () => {
    await hook.close();
    await ctx.cleanup();
  });

  it('a body that is not valid UTF-8 is verified on its bytes, and the ledger keeps that verified signature as its fingerprint', async () => {
    // GitHub's ping, with one byte in a string that is not UTF-8: decoding it to text and encoding it
    // again would change the bytes, and so the signature.
    const text = JSON.stringify({ ...fixture('ping'), zen: 'Keep it logically awesome.@' });
    const body = Buffer.from(text, 'utf8');
    body[body.indexOf('@'.charCodeAt(0), text.indexOf('awesome'))] = 0xff;
    const res = await post(hook.url, body, { 'x-github-event': 'ping', 'x-github-delivery': 'bytes-1', 'x-hub-signature-256': signBytes(SECRET, body) });
    expect(res).toMatchObject({ status: 200, body: { outcome: 'pong' } });
    const row = app.db.prepare(`SELECT payload_digest, outcome FROM webhook_deliveries WHERE delivery_id = 'bytes-1'`).get();
    expect(row).toEqual({ payload_digest: `hmac-sha256:${createHmac('sha256', SECRET).update(body).digest('hex')}`, outcome: 'pong' });
  });

  it('a changed byte, an upper-case or short signature, or another secret is refused with 401 and writes nothing', async () => {
    const body = Buffer.from(JSON.stringify(fixture('ping')));
    const good = signBytes(SECRET, body);
    const tampered = Buffer.from(body);
    tampered[tampered.length - 2] = tampered[tampered.length - 2]! ^ 1;
    const cases: Array<[Buffer, string]> = [
      [tampered, good],
      [body, `sha256=${good.slice(7).toUpperCase()}`],
      [body, good.slice(0, -2)],
      [body, signBytes('another-secret', body)],
      [body, `sha1=${good.slice(7)}`],
    ];
    for (const [i, [b, signature]] of cases.entries()) {
      const res = await post(hook.url, b, { 'x-github-event': 'ping', 'x-github-delivery': `bad-${i}`, 'x-hub-signature-256': signature });
      expect(res.status, signature).toBe(401);
      expect(res.body.error).toBe('invalid or missing X-Hub-Signature-256');
    }
    expect(app.db.prepare('SELECT COUNT(*) AS n FROM webhook_deliveries').get()).toEqual({ n: 0 });
  });
});

describe('webhook audit writer: lines are batched off the request path', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'agentpr-audit-batch-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const line = (i: number): AuditLine => ({ ts: new Date().toISOString(), event: 'ping', delivery: `d-${i}`, status_code: 200, outcome: 'pong', processed: 0, ignored: 0, error: null });
  const read = (f: string): string[] => (existsSync(f) ? readFileSync(f, 'utf8').split('\n').filter(Boolean) : []);

  it('gathers lines and writes them together; close() flushes every line, in order', async () => {
    const file = join(dir, 'audit.jsonl');
    const audit = new AuditWriter(file, { flushMs: 60_000 });
    for (let i = 0; i < 5; i++) audit.write(line(i));
    await new Promise((r) => setTimeout(r, 100));
    // Nothing is written per line: the batch waits for its time (or size) limit.
    expect(read(file)).toEqual([]);
    await audit.close();
    expect(read(file).map((l) => (JSON.parse(l) as AuditLine).delivery)).toEqual(['d-0', 'd-1', 'd-2', 'd-3', 'd-4']);
  });

  it('a batch goes out after its time limit without close(), and at its size limit at once', async () => {
    const file = join(dir, 'audit.jsonl');
    const timed = new AuditWriter(file, { flushMs: 20 });
    timed.write(line(0));
    for (let i = 0; i < 100 && read(file).length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(read(file)).toHaveLength(1);
    await timed.close();

    const sized = join(dir, 'sized.jsonl');
    const bySize = new AuditWriter(sized, { flushMs: 60_000, flushBytes: 1 });
    bySize.write(line(1));
    for (let i = 0; i < 100 && read(sized).length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(read(sized)).toHaveLength(1);
    await bySize.close();
  });

  it('a line written while closing is still appended, and nothing throws', async () => {
    const file = join(dir, 'audit.jsonl');
    const audit = new AuditWriter(file, { flushMs: 5 });
    audit.write(line(0));
    const closing = audit.close();
    audit.write(line(1));
    await closing;
    await new Promise((r) => setTimeout(r, 30));
    expect(read(file).map((l) => (JSON.parse(l) as AuditLine).delivery)).toEqual(['d-0', 'd-1']);
  });

  it('rotation by size keeps working with batches: no file over the limit, no line lost, the oldest dropped past keep', async () => {
    const file = join(dir, 'audit.jsonl');
    const audit = new AuditWriter(file, { maxBytes: 2048, keep: 3, flushMs: 5 });
    for (let i = 0; i < 60; i++) {
      audit.write(line(i));
      if (i % 7 === 0) await new Promise((r) => setTimeout(r, 1));
    }
    await audit.close();
    await new Promise((r) => setTimeout(r, 50));
    const files = [`${file}.3`, `${file}.2`, `${file}.1`, file];
    expect(existsSync(`${file}.4`)).toBe(false);
    const seen: string[] = [];
    for (const f of files.filter((x) => existsSync(x))) {
      expect(statSync(f).size, f).toBeLessThanOrEqual(2048);
      seen.push(...read(f).map((l) => (JSON.parse(l) as AuditLine).delivery!));
    }
    // The newest lines, contiguous and in order, up to the last one written.
    const n = seen.length;
    expect(n).toBeGreaterThan(20);
    expect(seen).toEqual(Array.from({ length: n }, (_, k) => `d-${60 - n + k}`));
  });
});
