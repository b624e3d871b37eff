import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { makeTestApp } from '../helpers/app.js';
import { dbFingerprint } from '../helpers/db.js';
import type { App } from '../../src/app.js';
import { openDatabase, schemaVersion } from '../../src/store/db.js';
import { MIGRATIONS } from '../../src/store/migrations.js';

let app: App;
let cleanup: () => Promise<void>;
beforeEach(() => {
  ({ app, cleanup } = makeTestApp());
});
afterEach(async () => cleanup());

describe('store', () => {
  test('WAL, synchronous NORMAL, foreign keys, busy timeout and every migration recorded', () => {
    expect(app.db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(app.db.pragma('synchronous', { simple: true })).toBe(1);
    expect(app.db.pragma('foreign_keys', { simple: true })).toBe(1);
    expect(Number(app.db.pragma('busy_timeout', { simple: true }))).toBeGreaterThan(1000);
    const versions = (app.db.prepare('SELECT version FROM schema_migrations ORDER BY version').all() as Array<{ version: number }>).map((r) => r.version);
    expect(versions).toEqual(MIGRATIONS.map((m) => m.version).sort((a, b) => a - b));
    expect(schemaVersion(app.db)).toBe(Math.max(...MIGRATIONS.map((m) => m.version)));
  });

  test('re-opening an existing database applies nothing twice', () => {
    const again = openDatabase(app.config.dbPath);
    expect((again.prepare('SELECT COUNT(*) AS n FROM schema_migrations').get() as { n: number }).n).toBe(MIGRATIONS.length);
    again.close();
  });
});

describe('service', () => {
  test('create-run writes the run, its QUEUED state and a command.run.create event in one go', () => {
    const run = app.service.createRun({ owner: 'octo', repo: 'hello' });
    expect(run.run_id).toMatch(/^run_[0-9a-f]{12}$/);
    expect(run.state).toBe('QUEUED');
    expect(run.workspace_dir).toBe(`${app.config.workspaceRoot}/octo/hello/${run.run_id}`);
    const events = app.service.listEvents(run.run_id);
    expect(events.map((e) => e.event_type)).toEqual(['command.run.create']);
  });

  test('the same event twice: one row, the second answer says duplicate', () => {
    const { run_id } = app.service.createRun({ owner: 'octo', repo: 'hello' });
    const first = app.service.applyEvent({ run_id, event_type: 'command.start.discovery', payload: {} });
    const before = dbFingerprint(app.db);
    const second = app.service.applyEvent({ run_id, event_type: 'command.start.discovery', payload: {} });
    expect(first).toMatchObject({ duplicate: false, outcome: 'applied', from_state: 'QUEUED', state: 'DISCOVERY' });
    expect(second).toMatchObject({ duplicate: true, outcome: 'duplicate', state: 'DISCOVERY', event_id: first.event_id });
    expect(dbFingerprint(app.db)).toBe(before);
    expect(app.service.listEvents(run_id).filter((e) => e.event_type === 'command.start.discovery')).toHaveLength(1);
  });

  test('an illegal transition fails fast and changes nothing', () => {
    const { run_id } = app.service.createRun({ owner: 'octo', repo: 'hello' });
    const before = dbFingerprint(app.db);
    expect(() => app.service.applyEvent({ run_id, event_type: 'worker.push.completed', payload: { branch: 'b' } })).toThrow(
      /illegal transition QUEUED -> PUSHED; allowed from QUEUED: DISCOVERY, PAUSED, SKIPPED, FAILED_TERMINAL/,
    );
    expect(dbFingerprint(app.db)).toBe(before);
  });

  test('event, state change and artifacts commit together or not at all', () => {
    const { run_id } = app.service.createRun({ owner: 'octo', repo: 'hello' });
    app.service.applyEvent({ run_id, event_type: 'command.start.discovery', payload: {} });
    const before = dbFingerprint(app.db);
    // The second artifact violates the table's CHECK constraint after the event row was inserted.
    app.db.exec(`CREATE TRIGGER fail_second_artifact BEFORE INSERT ON artifacts WHEN NEW.uri = 'boom' BEGIN SELECT RAISE(ABORT, 'disk on fire'); END;`);
    expect(() =>
      app.service.applyEvent({
        run_id,
        event_type: 'worker.discovery.completed',
        payload: { contract_path: 'contract.md' },
        artifacts: [{ type: 'task_packet', uri: 'boom' }],
      }),
    ).toThrow(/disk on fire/);
    expect(dbFingerprint(app.db)).toBe(before);
    expect(app.service.getRun(run_id).state).toBe('DISCOVERY');
    app.db.exec('DROP TRIGGER fail_second_artifact');
    const ok = app.service.applyEvent({ run_id, event_type: 'worker.discovery.completed', payload: { contract_path: 'contract.md' } });
    expect(ok.state).toBe('PLAN_READY');
    expect(app.service.listArtifacts(run_id).map((a) => [a.artifact_type, a.uri])).toEqual([['contract', 'contract.md']]);
  });

  test('step failure sets last_error; a later forward move clears it', () => {
    const { run_id } = app.service.createRun({ owner: 'octo', repo: 'hello' });
    app.service.applyEvent({ run_id, event_type: 'command.start.discovery' });
    const failed = app.service.applyEvent({ run_id, event_type: 'worker.step.failed', payload: { step: 'prepare', reason_code: 'script_failed', error_message: 'fatal: repository not found' } });
    expect(failed).toMatchObject({ state: 'FAILED_RETRYABLE', last_error: 'prepare:script_failed:fatal: repository not found' });
    const retried = app.service.applyEvent({ run_id, event_type: 'command.retry', payload: { target_state: 'DISCOVERY' } });
    expect(retried).toMatchObject({ state: 'DISCOVERY', last_error: null });
  });

  test('a GitHub observation that does not fit is recorded as ignored', () => {
    const { run_id } = app.service.createRun({ owner: 'octo', repo: 'hello' });
    const r = app.service.applyEvent({ run_id, event_type: 'github.check.completed', payload: { conclusion: 'failure', pr_number: 3 } });
    expect(r).toMatchObject({ outcome: 'ignored', state: 'QUEUED', duplicate: false });
    expect(app.service.listEvents(run_id).at(-1)).toMatchObject({ event_type: 'github.check.completed', outcome: 'ignored' });
  });

  test('step attempts number themselves per run and step', () => {
    const { run_id } = app.service.createRun({ owner: 'octo', repo: 'hello' });
    const a1 = app.service.startAttempt(run_id, 'agent');
    const done = app.service.finishAttempt(a1.attempt_id, { status: 'succeeded', exit_code: 0, duration_ms: 12 });
    expect(done).toMatchObject({ status: 'succeeded', exit_code: 0, duration_ms: 12 });
    expect(done.finished_at).not.toBeNull();
    const a2 = app.service.startAttempt(run_id, 'agent');
    app.service.finishAttempt(a2.attempt_id, { status: 'failed' });
    const p1 = app.service.startAttempt(run_id, 'prepare');
    expect([a1.attempt_no, a2.attempt_no, p1.attempt_no]).toEqual([1, 2, 1]);
  });

  test('unknown run and bad owner are refused without writing', () => {
    const before = dbFingerprint(app.db);
    expect(() => app.service.applyEvent({ run_id: 'run_000000000000', event_type: 'command.pause' })).toThrow(/unknown run 'run_000000000000'/);
    expect(() => app.service.createRun({ owner: 'no spaces', repo: 'x' })).toThrow(/owner must be/);
    expect(dbFingerprint(app.db)).toBe(before);
  });
});
