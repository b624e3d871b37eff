import { spawnSync } from 'node:child_process';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, test } from 'vitest';
import { createApp, type App } from '../../src/app.js';
import { attemptOwnerMetadata, reconcileOrphanedAttempts } from '../../src/worker/reconcile.js';
import { tempDir } from '../helpers/app.js';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()?.();
});

/** Attempts with an invented owner stand for rows written before leases existed. */
const LEGACY = { lease: false } as const;

/** A pid that certainly belonged to a process that has exited. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', '']);
  if (!r.pid) throw new Error('could not spawn');
  return r.pid;
}

/** An app on `home` (a fresh one when omitted), started as a server starts: with the reconcile. */
function start(home = tempDir('agentpr-reconcile-'), env: NodeJS.ProcessEnv = {}): { app: App; home: string } {
  const app = createApp({ home, logger: pino({ level: 'silent' }), env: { ...process.env, AGENTPR_POLICY_FILE: '', ...env }, reconcile: true });
  cleanups.push(async () => {
    await app.close();
    rmSync(home, { recursive: true, force: true });
  });
  return { app, home };
}
const restart = (home: string, env: NodeJS.ProcessEnv = {}) => start(home, env).app;

function runInDiscovery(app: App, repo: string): string {
  const id = app.service.createRun({ owner: 'acme', repo }).run_id;
  app.service.applyEvent({ run_id: id, event_type: 'command.start.discovery' });
  return id;
}

describe('orphaned attempts at startup', () => {
  test('an attempt whose owner process is gone is failed with orchestrator_restarted and its run moved; live and unowned recent ones stay', async () => {
    const { app, home } = start();
    const orphanRun = runInDiscovery(app, 'orphan');
    const orphan = app.service.startAttempt(orphanRun, 'agent', { ...attemptOwnerMetadata(), owner_pid: deadPid() }, LEGACY);
    const liveRun = runInDiscovery(app, 'live');
    const live = app.service.startAttempt(liveRun, 'agent', attemptOwnerMetadata());
    const unownedRun = runInDiscovery(app, 'unowned');
    const unowned = app.service.startAttempt(unownedRun, 'prepare', {}, LEGACY);
    await app.close();

    const next = restart(home);
    expect(next.service.attemptById(orphan.attempt_id)).toMatchObject({ status: 'failed', reason_code: 'orchestrator_restarted' });
    expect(next.service.attemptById(orphan.attempt_id).finished_at).not.toBeNull();
    const run = next.service.getRun(orphanRun);
    expect(run.state).toBe('FAILED_RETRYABLE');
    expect(run.last_error).toMatch(/^agent:orchestrator_restarted:agent attempt 1 was left running \(owner pid \d+ is gone\); closed at startup$/);
    expect(next.service.attemptById(live.attempt_id).status).toBe('running');
    expect(next.service.getRun(liveRun).state).toBe('DISCOVERY');
    expect(next.service.attemptById(unowned.attempt_id).status).toBe('running');

    // Running it again finds nothing more to do.
    expect(reconcileOrphanedAttempts(next)).toEqual([]);
  });

  test('the policy decides where the run goes (on_retryable_state)', async () => {
    const { app, home } = start();
    const a = runInDiscovery(app, 'a');
    const attempt = app.service.startAttempt(a, 'prepare', { ...attemptOwnerMetadata(), owner_pid: deadPid() }, LEGACY);
    await app.close();
    const policy = join(tempDir('agentpr-pol-'), 'p.json');
    writeFileSync(policy, JSON.stringify({ run_agent_step: { on_retryable_state: 'NEEDS_HUMAN_REVIEW' } }));
    const next = restart(home, { AGENTPR_POLICY_FILE: policy });
    expect(next.service.getRun(a).state).toBe('NEEDS_HUMAN_REVIEW');
    expect(next.service.attemptById(attempt.attempt_id)).toMatchObject({ status: 'failed', reason_code: 'orchestrator_restarted' });
  });

  test('a run that may not move (PLAN_READY to FAILED_RETRYABLE, PAUSED) keeps its state; only the attempt is closed', async () => {
    const { app, home } = start();
    const ready = runInDiscovery(app, 'ready');
    app.service.applyEvent({ run_id: ready, event_type: 'worker.discovery.completed', payload: { contract_path: '/c.md' } });
    const readyAttempt = app.service.startAttempt(ready, 'preflight', { ...attemptOwnerMetadata(), owner_pid: deadPid() }, LEGACY);
    const paused = runInDiscovery(app, 'paused');
    const pausedAttempt = app.service.startAttempt(paused, 'agent', { ...attemptOwnerMetadata(), owner_pid: deadPid() }, LEGACY);
    app.service.applyEvent({ run_id: paused, event_type: 'command.pause' });
    await app.close();
    const next = restart(home);
    expect(next.service.getRun(ready).state).toBe('PLAN_READY');
    expect(next.service.getRun(paused).state).toBe('PAUSED');
    expect(next.service.attemptById(readyAttempt.attempt_id)).toMatchObject({ status: 'failed', reason_code: 'orchestrator_restarted' });
    expect(next.service.attemptById(pausedAttempt.attempt_id)).toMatchObject({ status: 'failed', reason_code: 'orchestrator_restarted' });
  });

  test.runIf(existsSync('/proc/sys/kernel/random/boot_id'))('an attempt from before a reboot is an orphan even if its pid is alive now', async () => {
    const { app, home } = start();
    const id = runInDiscovery(app, 'r');
    const attempt = app.service.startAttempt(id, 'agent', { ...attemptOwnerMetadata(), owner_boot_id: 'another-boot' }, LEGACY);
    await app.close();
    const next = restart(home);
    expect(next.service.attemptById(attempt.attempt_id).status).toBe('failed');
    expect(next.service.getRun(id).last_error).toContain('ran before the machine rebooted');
  });
});
