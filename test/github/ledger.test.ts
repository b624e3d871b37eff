import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { makeTestApp, tempDir } from '../helpers/app.js';
import type { App } from '../../src/app.js';
import { openDatabase } from '../../src/store/db.js';
import { MIGRATIONS } from '../../src/store/migrations.js';

const d = (id: string) => ({ source: 'github', delivery_id: id, event_type: 'check_run', payload_digest: `sha256:${'f'.repeat(64)}` });

describe('webhook delivery ledger', () => {
  let ctx: ReturnType<typeof makeTestApp>;
  let app: App;
  beforeEach(() => {
    ctx = makeTestApp();
    app = ctx.app;
  });
  afterEach(async () => {
    await ctx.cleanup();
  });

  it('reserves once, answers repeats with the first outcome, and releases for a redelivery', () => {
    expect(app.service.reserveDelivery(d('a'))).toEqual({ reserved: true });
    expect(app.service.reserveDelivery(d('a'))).toMatchObject({ reserved: false, outcome: 'reserved' });
    expect(app.service.releaseDelivery('github', 'a')).toBe(true);
    expect(app.service.reserveDelivery(d('a'))).toEqual({ reserved: true });
    app.service.finishDelivery('github', 'a', 'processed');
    expect(app.service.reserveDelivery(d('a'))).toMatchObject({ reserved: false, outcome: 'processed' });
    // A finished delivery is never released (only reservations are).
    expect(app.service.releaseDelivery('github', 'a')).toBe(false);
    // Same id from another source is another delivery.
    expect(app.service.reserveDelivery({ ...d('a'), source: 'other' })).toEqual({ reserved: true });
  });

  it('takes over a reservation left behind by a process that died', () => {
    app.service.reserveDelivery(d('crashed'));
    app.db.prepare(`UPDATE webhook_deliveries SET received_at = ? WHERE delivery_id = 'crashed'`).run(new Date(Date.now() - 11 * 60_000).toISOString());
    expect(app.service.reserveDelivery(d('crashed'))).toEqual({ reserved: true });
    expect(app.service.reserveDelivery(d('crashed'))).toMatchObject({ reserved: false, outcome: 'reserved' });
  });

  it('cleanup keeps reservations in flight and recent rows', () => {
    for (const id of ['old-done', 'old-reserved', 'new-done']) app.service.reserveDelivery(d(id));
    app.service.finishDelivery('github', 'old-done', 'ignored');
    app.service.finishDelivery('github', 'new-done', 'processed');
    app.db.prepare(`UPDATE webhook_deliveries SET received_at = '2020-01-01T00:00:00.000Z' WHERE delivery_id LIKE 'old-%'`).run();
    expect(app.service.cleanupDeliveries(new Date(Date.now() - 86_400_000).toISOString(), 'github')).toBe(1);
    const left = app.db.prepare('SELECT delivery_id FROM webhook_deliveries ORDER BY delivery_id').all() as Array<{ delivery_id: string }>;
    expect(left.map((r) => r.delivery_id)).toEqual(['new-done', 'old-reserved']);
  });
});

describe('migration 3', () => {
  it('keeps the deliveries recorded before it', () => {
    const path = join(tempDir(), 'old.db');
    const v1 = openDatabase(path, { migrations: MIGRATIONS.filter((m) => m.version === 1) });
    v1.prepare(`INSERT INTO webhook_deliveries VALUES ('github', 'before-upgrade', 'ping', 'x', '2024-01-01T00:00:00.000Z', 'processed')`).run();
    v1.close();
    const db = openDatabase(path);
    expect(db.prepare('SELECT delivery_id, outcome FROM webhook_deliveries').all()).toEqual([{ delivery_id: 'before-upgrade', outcome: 'processed' }]);
    expect(db.prepare(`SELECT name FROM sqlite_master WHERE name = 'pr_approvals'`).get()).toEqual({ name: 'pr_approvals' });
    db.close();
  });
});

describe('migration 19', () => {
  it('renames the ledger fingerprint and marks the rows from before as plain SHA-256', () => {
    const path = join(tempDir(), 'v17.db');
    const old = openDatabase(path, { migrations: MIGRATIONS.filter((m) => m.version < 19) });
    old.prepare(`INSERT INTO webhook_deliveries VALUES ('github', 'before-19', 'ping', ?, '2024-01-01T00:00:00.000Z', 'pong')`).run('ab'.repeat(32));
    old.close();
    const db = openDatabase(path);
    expect(db.prepare('SELECT delivery_id, payload_digest, outcome FROM webhook_deliveries').all()).toEqual([{ delivery_id: 'before-19', payload_digest: `sha256:${'ab'.repeat(32)}`, outcome: 'pong' }]);
    db.close();
  });
});
