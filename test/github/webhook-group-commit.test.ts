import { createHash, createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { makeTestApp } from '../helpers/app.js';
import type { App } from '../../src/app.js';
import { GroupCommit } from '../../src/github/group-commit.js';
import { startWebhookServer, type WebhookServer } from '../../src/github/webhook-server.js';
import { fixture } from './runs.js';

const SECRET = 'group-commit-secret';
const NO_TOKEN = { GITHUB_TOKEN: '', AGENTPR_GITHUB_TOKEN: '', GH_TOKEN: '' };
const d = (id: string) => ({ source: 'github', delivery_id: id, event_type: 'ping', payload_digest: `sha256:${'0'.repeat(64)}` });

/** Ledger rows as another connection to the same file sees them: only what was committed. */
function committedIds(other: Database.Database): string[] {
  return (other.prepare('SELECT delivery_id FROM webhook_deliveries ORDER BY delivery_id').all() as Array<{ delivery_id: string }>).map((r) => r.delivery_id);
}

describe('group commit of ledger writes', () => {
  let ctx: ReturnType<typeof makeTestApp>;
  let app: App;
  let other: Database.Database;
  beforeEach(() => {
    ctx = makeTestApp({ env: NO_TOKEN });
    app = ctx.app;
    other = new Database(app.config.dbPath);
  });
  afterEach(async () => {
    other.close();
    await ctx.cleanup();
  });

  it('writes queued in one turn commit together, and none is reported done before the commit', async () => {
    const gc = new GroupCommit(app.service);
    const ids = ['a', 'b', 'c', 'd'];
    const seenWhenDone: string[][] = [];
    const done = ids.map((id) => gc.run(() => app.service.reserveDelivery(d(id))).then((r) => (seenWhenDone.push(committedIds(other)), r)));
    // Queued, not yet written: nothing is in the database.
    expect(committedIds(other)).toEqual([]);
    expect(await Promise.all(done)).toEqual(ids.map(() => ({ reserved: true })));
    // Each write was reported only once every write of its batch was committed (one transaction).
    expect(seenWhenDone).toEqual(ids.map(() => ids));
  });

  it('a batch full at maxJobs commits at once; what follows goes into the next batch', async () => {
    const gc = new GroupCommit(app.service, { maxJobs: 2 });
    const first = gc.run(() => app.service.reserveDelivery(d('full-1')));
    expect(committedIds(other)).toEqual([]);
    const second = gc.run(() => app.service.reserveDelivery(d('full-2')));
    // The second job filled the batch: both are committed before run() returned.
    expect(committedIds(other)).toEqual(['full-1', 'full-2']);
    const third = gc.run(() => app.service.reserveDelivery(d('full-3')));
    expect(committedIds(other)).toEqual(['full-1', 'full-2']);
    await Promise.all([first, second, third]);
    expect(committedIds(other)).toEqual(['full-1', 'full-2', 'full-3']);
  });

  it('a write that fails is rolled back alone; the others in its batch commit', async () => {
    const gc = new GroupCommit(app.service);
    const results = await Promise.allSettled([
      gc.run(() => app.service.reserveDelivery(d('kept-1'))),
      gc.run(() => {
        app.service.reserveDelivery(d('undone'));
        throw new Error('refused after writing');
      }),
      gc.run(() => app.service.reserveDelivery(d('kept-2'))),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((results[1] as PromiseRejectedResult).reason).toHaveProperty('message', 'refused after writing');
    expect(committedIds(other)).toEqual(['kept-1', 'kept-2']);
  });

  it('the same delivery twice in one batch is reserved once; the second sees the first', async () => {
    const gc = new GroupCommit(app.service);
    const [first, second] = await Promise.all([gc.run(() => app.service.reserveDelivery(d('twice'))), gc.run(() => app.service.reserveDelivery(d('twice')))]);
    expect(first).toEqual({ reserved: true });
    expect(second).toMatchObject({ reserved: false, outcome: 'reserved' });
    expect(committedIds(other)).toEqual(['twice']);
  });

  it('when the batch cannot commit (database locked), every write in it fails and nothing is written', async () => {
    const gc = new GroupCommit(app.service);
    app.db.pragma('busy_timeout = 50');
    other.prepare('BEGIN IMMEDIATE').run();
    const results = await Promise.allSettled(['x', 'y'].map((id) => gc.run(() => app.service.reserveDelivery(d(id)))));
    other.prepare('COMMIT').run();
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect(String((results[0] as PromiseRejectedResult).reason)).toMatch(/database is locked/);
    expect(committedIds(other)).toEqual([]);
    await gc.run(() => app.service.reserveDelivery(d('x')));
    expect(committedIds(other)).toEqual(['x']);
  });
});

const sign = (body: string) => `sha256=${createHmac('sha256', SECRET).update(body).digest('hex')}`;

async function deliver(url: string, id: string, body: string, event = 'pull_request'): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(url, { method: 'POST', body, headers: { 'content-type': 'application/json', 'x-github-event': event, 'x-github-delivery': id, 'x-hub-signature-256': sign(body) } });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe('webhook receiver: each answer waits for its own ledger write', () => {
  let ctx: ReturnType<typeof makeTestApp>;
  let app: App;
  let hook: WebhookServer;
  let other: Database.Database;
  const body = JSON.stringify(fixture('pull_request.opened'));
  beforeEach(async () => {
    ctx = makeTestApp({ env: NO_TOKEN });
    app = ctx.app;
    hook = await startWebhookServer({ app, host: '127.0.0.1', port: 0, secrets: [SECRET], followups: false });
    other = new Database(app.config.dbPath);
  });
  afterEach(async () => {
    other.close();
    await hook.close();
    await ctx.cleanup();
  });

  /** Each delivery's audit outcomes, in order (closing the receiver flushes the audit lines). */
  const auditOutcomes = async (): Promise<Record<string, string[]>> => {
    await hook.close();
    const out: Record<string, string[]> = {};
    for (const l of readFileSync(hook.auditPath, 'utf8').split('\n').filter(Boolean)) {
      const { delivery, outcome } = JSON.parse(l) as { delivery: string; outcome: string };
      (out[delivery] ??= []).push(outcome);
    }
    return out;
  };

  it('deliveries sent together are each answered once, after their write; a repeat is a duplicate', async () => {
    const ids = Array.from({ length: 12 }, (_, i) => `together-${i}`);
    const answers = await Promise.all([...ids, 'together-0'].map((id) => deliver(hook.url, id, body)));
    expect(answers.map((a) => a.status)).toEqual(answers.map(() => 200));
    const outcomes = answers.map((a) => a.body.outcome);
    expect(outcomes.filter((o) => o === 'ignored')).toHaveLength(12);
    expect(outcomes.filter((o) => o === 'duplicate_delivery')).toHaveLength(1);
    // Committed (another connection sees them), one row per delivery id.
    expect(committedIds(other)).toEqual([...ids].sort());
  });

  it('a delivery whose write the database refuses is answered 500 with the reason, is audited, and its redelivery is recorded once', async () => {
    other.exec(`CREATE TRIGGER refuse_one BEFORE INSERT ON webhook_deliveries WHEN NEW.delivery_id = 'refused' BEGIN SELECT RAISE(ABORT, 'disk said no'); END`);
    const answers = await Promise.all(['ok-1', 'refused', 'ok-2'].map((id) => deliver(hook.url, id, body)));
    expect(answers.map((a) => a.status)).toEqual([200, 500, 200]);
    expect(answers[1]!.body.error).toBe('recording the delivery failed: disk said no; nothing was recorded, redeliver it from GitHub');
    expect(committedIds(other)).toEqual(['ok-1', 'ok-2']);
    other.exec('DROP TRIGGER refuse_one');
    expect(await deliver(hook.url, 'refused', body)).toMatchObject({ status: 200, body: { outcome: 'ignored' } });
    expect(await deliver(hook.url, 'refused', body)).toMatchObject({ status: 200, body: { outcome: 'duplicate_delivery' } });
    expect(committedIds(other)).toEqual(['ok-1', 'ok-2', 'refused']);
    expect(await auditOutcomes()).toEqual({ 'ok-1': ['ignored'], 'ok-2': ['ignored'], refused: ['error', 'ignored', 'duplicate_delivery'] });
  });

  it('while the database stays locked nothing is answered 200; once it is free each redelivery is recorded exactly once', async () => {
    app.db.pragma('busy_timeout = 50');
    other.prepare('BEGIN IMMEDIATE').run();
    const ids = ['locked-1', 'locked-2', 'locked-3'];
    const during = await Promise.all(ids.map((id) => deliver(hook.url, id, body)));
    for (const a of during) {
      expect(a.status).toBe(500);
      expect(a.body.error).toBe('recording the delivery failed: database is locked; nothing was recorded, redeliver it from GitHub');
    }
    other.prepare('COMMIT').run();
    expect(committedIds(other)).toEqual([]);
    const after = await Promise.all([...ids, ...ids].map((id) => deliver(hook.url, id, body)));
    expect(after.map((a) => a.body.outcome).sort()).toEqual([...ids.map(() => 'duplicate_delivery'), ...ids.map(() => 'ignored')].sort());
    expect(committedIds(other)).toEqual(ids);
    const audit = await auditOutcomes();
    for (const id of ids) expect(audit[id]!.sort()).toEqual(['duplicate_delivery', 'error', 'ignored']);
  });

  it('an unsigned receiver (local development) fingerprints the body with plain SHA-256', async () => {
    const unsigned = await startWebhookServer({ app, host: '127.0.0.1', port: 0, allowUnsigned: true, followups: false });
    try {
      const ping = JSON.stringify(fixture('ping'));
      const res = await fetch(unsigned.url, { method: 'POST', body: ping, headers: { 'content-type': 'application/json', 'x-github-event': 'ping', 'x-github-delivery': 'unsigned-1' } });
      expect(res.status).toBe(200);
    } finally {
      await unsigned.close();
    }
    const row = other.prepare(`SELECT payload_digest FROM webhook_deliveries WHERE delivery_id = 'unsigned-1'`).get();
    expect(row).toEqual({ payload_digest: `sha256:${createHash('sha256').update(JSON.stringify(fixture('ping'))).digest('hex')}` });
  });
});
