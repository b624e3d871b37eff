import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { makeTestApp } from '../helpers/app.js';
import type { App } from '../../src/app.js';
import { openDatabase, migrate, type DB } from '../../src/store/db.js';
import { MIGRATIONS } from '../../src/store/migrations.js';
import { Service } from '../../src/service.js';

/** Rows written by this connection since it opened (SQLite's total_changes()). */
const changes = (db: DB): number => (db.prepare('SELECT total_changes() AS n').get() as { n: number }).n;

let app: App;
let cleanup: () => Promise<void>;
beforeEach(() => {
  ({ app, cleanup } = makeTestApp());
});
afterEach(async () => cleanup());

describe('the run state is its latest event', () => {
  test('an event that moves the state writes one row (the event), not a second state row', () => {
    const run = app.service.createRun({ owner: 'octo', repo: 'hello' });
    const before = changes(app.db);
    const r = app.service.applyEvent({ run_id: run.run_id, event_type: 'command.start.discovery', payload: {} });
    expect(r.state).toBe('DISCOVERY');
    expect(changes(app.db) - before).toBe(1);
    expect(app.service.getRun(run.run_id).state).toBe('DISCOVERY');
    const pause = app.service.applyEvent({ run_id: run.run_id, event_type: 'command.pause', payload: {} });
    expect(pause.state).toBe('PAUSED');
    expect(changes(app.db) - before).toBe(2);
    expect((app.db.prepare('SELECT current_state FROM run_states WHERE run_id = ?').get(run.run_id) as { current_state: string }).current_state).toBe('PAUSED');
    expect(app.service.listRuns({ state: 'PAUSED' }).runs.map((x) => x.run_id)).toEqual([run.run_id]);
    expect(app.service.listRuns({ state: 'DISCOVERY' }).total).toBe(0);
  });

  test('updated_at moves with the state or the error, not with an event that changes neither', async () => {
    const run = app.service.createRun({ owner: 'octo', repo: 'hello' });
    app.service.applyEvent({ run_id: run.run_id, event_type: 'command.start.discovery', payload: {} });
    const moved = app.service.getRun(run.run_id).updated_at;
    await new Promise((r) => setTimeout(r, 5));
    // Starting discovery again changes nothing: recorded as noop, the run's updated_at stays.
    const noop = app.service.applyEvent({ run_id: run.run_id, event_type: 'command.start.discovery', payload: {}, idempotency_key: 'again' });
    expect(noop.outcome).toBe('noop');
    expect(app.service.getRun(run.run_id).updated_at).toBe(moved);
    await new Promise((r) => setTimeout(r, 5));
    const failed = app.service.applyEvent({ run_id: run.run_id, event_type: 'worker.step.failed', payload: { step: 'discovery', reason_code: 'boom', error_message: 'no contract' } });
    const after = app.service.getRun(run.run_id);
    expect(after.state).toBe(failed.state);
    expect(after.last_error).toBe(failed.last_error);
    expect([after.state, after.last_error]).toEqual(['FAILED_RETRYABLE', 'discovery:boom:no contract']);
    expect(after.updated_at > moved).toBe(true);
  });

  test('a transaction that fails changes neither the events nor the state', () => {
    const run = app.service.createRun({ owner: 'octo', repo: 'hello' });
    const events = app.service.listEvents(run.run_id).length;
    // QUEUED -> push completed is not a transition the rules allow.
    expect(() => app.service.applyEvent({ run_id: run.run_id, event_type: 'worker.push.completed', payload: { branch: 'b' } })).toThrow();
    expect(app.service.listEvents(run.run_id)).toHaveLength(events);
    expect(app.service.getRun(run.run_id).state).toBe('QUEUED');
  });
});

describe('the state a connection remembers never hides another write', () => {
  test('a state change written through another connection is what the next event starts from', () => {
    const run = app.service.createRun({ owner: 'octo', repo: 'hello' });
    app.service.applyEvent({ run_id: run.run_id, event_type: 'command.start.discovery', payload: {} });
    app.service.applyEvent({ run_id: run.run_id, event_type: 'command.pause', payload: {}, idempotency_key: 'p1' });
    app.service.applyEvent({ run_id: run.run_id, event_type: 'command.resume', payload: { target_state: 'DISCOVERY' }, idempotency_key: 'r1' });
    const other = openDatabase(app.config.dbPath);
    try {
      const second = new Service(other, { workspaceRoot: app.config.workspaceRoot });
      expect(second.applyEvent({ run_id: run.run_id, event_type: 'command.pause', payload: {}, idempotency_key: 'p2' }).state).toBe('PAUSED');
      // This connection wrote the run's previous event; the pause came from the other one.
      const resumed = app.service.applyEvent({ run_id: run.run_id, event_type: 'command.resume', payload: { target_state: 'DISCOVERY' }, idempotency_key: 'r2' });
      expect([resumed.from_state, resumed.state]).toEqual(['PAUSED', 'DISCOVERY']);
      // And the other connection's key is a duplicate here too.
      expect(app.service.applyEvent({ run_id: run.run_id, event_type: 'command.pause', payload: {}, idempotency_key: 'p2' }).duplicate).toBe(true);
    } finally {
      other.close();
    }
  });

  test('an event written inside a transaction that rolls back leaves the state it found', () => {
    const run = app.service.createRun({ owner: 'octo', repo: 'hello' });
    app.service.applyEvent({ run_id: run.run_id, event_type: 'command.start.discovery', payload: {} });
    expect(() =>
      app.service.transaction(() => {
        app.service.applyEvent({ run_id: run.run_id, event_type: 'command.pause', payload: {}, idempotency_key: 'rolled-back' });
        throw new Error('the caller fails after the event');
      }),
    ).toThrow('the caller fails');
    expect(app.service.getRun(run.run_id).state).toBe('DISCOVERY');
    // Pausing again is a new pause from DISCOVERY, not a noop from a PAUSED that never was.
    const pause = app.service.applyEvent({ run_id: run.run_id, event_type: 'command.pause', payload: {}, idempotency_key: 'rolled-back' });
    expect([pause.duplicate, pause.from_state, pause.state]).toEqual([false, 'DISCOVERY', 'PAUSED']);
  });
});

describe('migration 17: run_states becomes a view of the latest event', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'agentpr-mig17-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  test('a database written before keeps every run state, last error and updated_at, and takes new events', () => {
    const file = join(dir, 'state.db');
    const old = openDatabase(file, { migrations: MIGRATIONS.filter((m) => m.version < 17) });
    expect((old.prepare(`SELECT type FROM sqlite_master WHERE name = 'run_states'`).get() as { type: string }).type).toBe('table');
    // Rows as the earlier schema held them: a state row beside the events.
    const now = '2026-11-30T10:00:00.000Z';
    const insertRun = old.prepare(`INSERT INTO runs (run_id, owner, repo, prompt_version, workspace_dir, created_at, updated_at) VALUES (?, 'octo', 'hello', 'v1', ?, ?, ?)`);
    const insertEvent = old.prepare(`INSERT INTO events (run_id, event_type, idempotency_key, payload_json, from_state, to_state, outcome, note, created_at) VALUES (?, ?, ?, '{}', ?, ?, 'applied', NULL, ?)`);
    const insertState = old.prepare(`INSERT INTO run_states (run_id, current_state, last_error, updated_at) VALUES (?, ?, ?, ?)`);
    insertRun.run('run_aaaaaaaaaaaa', join(dir, 'a'), now, now);
    insertEvent.run('run_aaaaaaaaaaaa', 'command.run.create', 'k1', null, 'QUEUED', now);
    insertEvent.run('run_aaaaaaaaaaaa', 'command.start.discovery', 'k2', 'QUEUED', 'DISCOVERY', '2026-11-30T10:01:00.000Z');
    insertEvent.run('run_aaaaaaaaaaaa', 'worker.step.failed', 'k3', 'DISCOVERY', 'FAILED_RETRYABLE', '2026-11-30T10:02:00.000Z');
    insertState.run('run_aaaaaaaaaaaa', 'FAILED_RETRYABLE', 'discovery_failed', '2026-11-30T10:02:00.000Z');
    insertRun.run('run_bbbbbbbbbbbb', join(dir, 'b'), now, now);
    insertEvent.run('run_bbbbbbbbbbbb', 'command.run.create', 'k1', null, 'QUEUED', now);
    insertState.run('run_bbbbbbbbbbbb', 'QUEUED', null, now);
    old.close();

    const db = openDatabase(file);
    try {
      expect(migrate(db)).toEqual([]);
      expect((db.prepare(`SELECT type FROM sqlite_master WHERE name = 'run_states'`).get() as { type: string }).type).toBe('view');
      expect(db.prepare(`SELECT name FROM sqlite_master WHERE name = 'run_states_state'`).get()).toBeUndefined();
      const service = new Service(db, { workspaceRoot: dir });
      const a = service.getRun('run_aaaaaaaaaaaa');
      expect([a.state, a.last_error, a.updated_at]).toEqual(['FAILED_RETRYABLE', 'discovery_failed', '2026-11-30T10:02:00.000Z']);
      const b = service.getRun('run_bbbbbbbbbbbb');
      expect([b.state, b.last_error, b.updated_at]).toEqual(['QUEUED', null, now]);
      const moved = service.applyEvent({ run_id: 'run_bbbbbbbbbbbb', event_type: 'command.start.discovery', payload: {} });
      expect([moved.from_state, moved.state]).toEqual(['QUEUED', 'DISCOVERY']);
      expect(service.getRun('run_bbbbbbbbbbbb').state).toBe('DISCOVERY');
      expect(service.getRun('run_aaaaaaaaaaaa').last_error).toBe('discovery_failed');
      expect(service.listRuns({ state: ['FAILED_RETRYABLE', 'DISCOVERY'] }).total).toBe(2);
    } finally {
      db.close();
    }
  });
});
