import type { ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { killLive, spawnCli, type CliDone, type CliProcess } from '../helpers/cli-process.js';
import { afterEach, describe, expect, test } from 'vitest';
import { dbFingerprint } from '../helpers/db.js';
import { git, makeUpstreamAndFork } from '../helpers/git.js';
import { makeHarness, ok, preparedRun, scenario, toImplementing, waitFor, type Harness } from '../worker/harness.js';
import { reconcileOrphanedAttempts } from '../../src/worker/reconcile.js';
import { LeaseHeldError } from '../../src/store/leases.js';

/**
 * Issue 14: at most one active step per run, across processes. Real `agentpr` processes (the
 * built CLI) race on one SQLite file; a read never changes state.
 */

const ROOT = join(import.meta.dirname, '..', '..');
const REAL_SCRIPTS = join(ROOT, 'forge_integration', 'scripts');

let h: Harness | undefined;
const live: ChildProcess[] = [];
afterEach(async () => {
  killLive(live);
  await h?.cleanup();
  h = undefined;
});

function cli(args: string[], env: NodeJS.ProcessEnv): CliProcess {
  return spawnCli(h!.home, args, env, live);
}

/** Forge scripts that wait `sec` before the real one, so two callers overlap for sure. */
function slowScripts(sec: number): string {
  const dir = join(h!.tmp, `slow-scripts-${sec}`);
  mkdirSync(dir, { recursive: true });
  for (const s of ['prepare', 'finish']) {
    const p = join(dir, `${s}.sh`);
    writeFileSync(p, `sleep ${sec}\nexec bash ${JSON.stringify(join(REAL_SCRIPTS, `${s}.sh`))} "$@"\n`);
    chmodSync(p, 0o755);
  }
  return dir;
}

const BUSY = /is busy: its (\w+) step \(attempt \d+\) is held by pid (\d+) on \S+ since .*; (\w+) step was not started and nothing changed/;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function oneWinner(a: CliDone, b: CliDone): { win: CliDone; lose: CliDone } {
  const codes = [a.code, b.code].sort();
  expect(codes, `${a.stderr}\n---\n${b.stderr}`).toEqual([0, 1]);
  return a.code === 0 ? { win: a, lose: b } : { win: b, lose: a };
}

describe('two processes, one run', () => {
  test('run-prepare twice on a QUEUED run: one clones, the other is refused naming the holder; DISCOVERY, one attempt', async () => {
    h = makeHarness();
    const env = { ...h.app.env, AGENTPR_FORGE_SCRIPTS_DIR: slowScripts(1.5) };
    const runId = (ok(await h.call('create-run', { owner: 'octo', repo: 'demo' })).run as { run_id: string }).run_id;
    const a = cli(['run-prepare', runId], env);
    await sleep(300);
    const b = cli(['run-prepare', runId], env);
    const { win, lose } = oneWinner(await a.done, await b.done);
    expect(win.stdout).toContain('DISCOVERY');
    const m = BUSY.exec(lose.stderr);
    expect(m, lose.stderr).not.toBeNull();
    expect(m![1]).toBe('prepare');
    expect([a.pid, b.pid]).toContain(Number(m![2]));
    const run = h.app.service.getRun(runId);
    expect(run.state).toBe('DISCOVERY');
    expect(h.app.service.listAttempts(runId, 'prepare').map((x) => x.status)).toEqual(['succeeded']);
    expect(h.app.service.leases.list()).toEqual([]);
    expect(h.app.service.listEvents(runId).filter((e) => e.event_type === 'command.start.discovery')).toHaveLength(1);
  }, 60_000);

  test('run-finish twice 0.5 s apart: one push, the other refused; the run stays PUSHED (never NEEDS_HUMAN_REVIEW)', async () => {
    h = makeHarness();
    const { runId, workspace } = await preparedRun(h);
    await toImplementing(h, runId);
    writeFileSync(join(workspace, 'fix.txt'), 'the fix\n');
    ok(await h.call('mark-local-validated', { run_id: runId }));
    const env = { ...h.app.env, AGENTPR_FORGE_SCRIPTS_DIR: slowScripts(1.5) };
    const a = cli(['run-finish', runId, '--changes', 'Add the fix'], env);
    await sleep(500);
    const b = cli(['run-finish', runId, '--changes', 'Add the fix'], env);
    const { lose } = oneWinner(await a.done, await b.done);
    expect(BUSY.exec(lose.stderr)?.[1], lose.stderr).toBe('finish');
    expect(h.app.service.getRun(runId).state).toBe('PUSHED');
    expect(h.app.service.listAttempts(runId, 'finish').map((x) => x.status)).toEqual(['succeeded']);
  }, 90_000);

  test('run-agent-step twice: one worker runs, the other is refused; a preflight meanwhile is refused too; reads change nothing', async () => {
    h = makeHarness();
    const { runId } = await preparedRun(h);
    await toImplementing(h, runId);
    // A worker that edits nothing (the second caller would otherwise meet a dirty tree first).
    const env = { ...h.app.env, FAKE_CODEX_SCENARIO: scenario('hang') };
    const a = cli(['run-agent-step', runId, '--prompt', 'Wait.', '--max-agent-seconds', '15'], env);
    await waitFor('the first worker to hold the lease', () => h!.app.service.leases.get(runId), 30_000);
    const b = cli(['run-agent-step', runId, '--prompt', 'Append a greeting.'], env);
    const pre = cli(['run-preflight', runId], env);
    const [rb, rp] = [await b.done, await pre.done];
    expect(rb.code).toBe(1);
    // Refused before the lease is even tried (the agent step's own check), naming the holder.
    expect(rb.stderr).toMatch(new RegExp(`(already running|is busy).*pid ${a.pid}`));
    expect(rp.code).toBe(1);
    expect(BUSY.exec(rp.stderr)?.[3], rp.stderr).toBe('preflight');
    // Reads while a step runs: the database is the same before and after.
    const before = dbFingerprint(h.app.db);
    for (const args of [['list-runs'], ['show-run', runId], ['inspect-run', runId]]) expect((await cli(args, env).done).code).toBe(0);
    expect(h.app.service.leases.get(runId), 'the worker should still run during the reads').toBeDefined();
    expect(dbFingerprint(h.app.db)).toBe(before);
    await a.done;
    expect(h.app.service.getRun(runId).state).toBe('FAILED_RETRYABLE');
    expect(h.app.service.listAttempts(runId, 'agent').map((x) => x.status)).toEqual(['timed_out']);
    expect(h.app.service.listAttempts(runId, 'preflight')).toEqual([]);
    expect(h.app.service.leases.list()).toEqual([]);
  }, 90_000);

  test('a step whose process was killed (kill -9): reads leave the orphan alone, reconcile-runs lists and closes it', async () => {
    h = makeHarness();
    const { runId } = await preparedRun(h);
    await toImplementing(h, runId);
    const env = { ...h.app.env, FAKE_CODEX_SCENARIO: scenario('hang') };
    const a = cli(['run-agent-step', runId, '--prompt', 'Wait.', '--max-agent-seconds', '600'], env);
    const lease = await waitFor('the worker to hold the lease', () => h!.app.service.leases.get(runId), 30_000);
    expect(lease).toMatchObject({ step: 'agent', holder: { pid: a.pid } });
    a.kill();
    await a.done;
    // Reads never reconcile: the orphan stays as it is.
    const before = dbFingerprint(h.app.db);
    for (const args of [['list-runs'], ['show-run', runId]]) expect((await cli(args, env).done).code).toBe(0);
    expect(dbFingerprint(h.app.db)).toBe(before);
    const dry = await cli(['reconcile-runs', '--dry-run', '--json'], env).done;
    expect(JSON.parse(dry.stdout)).toMatchObject({ dry_run: true, closed: [], orphans: [{ run_id: runId, step: 'agent', why: `owner pid ${a.pid} is gone` }] });
    expect(dbFingerprint(h.app.db)).toBe(before);
    const real = await cli(['reconcile-runs', '--json'], env).done;
    expect(real.code, real.stderr).toBe(0);
    expect(JSON.parse(real.stdout)).toMatchObject({ closed: [{ run_id: runId, step: 'agent', state_before: 'IMPLEMENTING', state_after: 'FAILED_RETRYABLE' }] });
    expect(h.app.service.listAttempts(runId, 'agent')[0]).toMatchObject({ status: 'failed', reason_code: 'orchestrator_restarted' });
    expect(h.app.service.leases.list()).toEqual([]);
  }, 60_000);
});

describe('leases in one store', () => {
  test('a holder on another host is refused while its heartbeat lasts and reclaimed once it expired', async () => {
    h = makeHarness();
    const runId = (ok(await h.call('create-run', { owner: 'octo', repo: 'demo' })).run as { run_id: string }).run_id;
    const held = h.app.service.startAttempt(runId, 'agent', {});
    h.app.db.prepare(`UPDATE run_leases SET holder_host = 'build-7', holder_pid = 4242, expires_at = ? WHERE run_id = ?`).run(new Date(Date.now() + 60_000).toISOString(), runId);
    const before = dbFingerprint(h.app.db);
    let err: unknown;
    try {
      h.app.service.startAttempt(runId, 'preflight', {});
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(LeaseHeldError);
    expect((err as Error).message).toMatch(/its agent step \(attempt \d+\) is held by pid 4242 on build-7/);
    expect(dbFingerprint(h.app.db)).toBe(before);
    h.app.db.prepare(`UPDATE run_leases SET expires_at = ? WHERE run_id = ?`).run(new Date(Date.now() - 1000).toISOString(), runId);
    const next = h.app.service.startAttempt(runId, 'preflight', {});
    expect(h.app.service.attemptById(held.attempt_id)).toMatchObject({ status: 'failed', reason_code: 'lease_reclaimed' });
    expect(String((h.app.service.attemptById(held.attempt_id).metadata.reclaimed as { why: string }).why)).toContain('stopped its heartbeat');
    expect(h.app.service.leases.get(runId)).toMatchObject({ step: 'preflight', attempt_id: next.attempt_id, holder: { pid: process.pid } });
  });

  test('the heartbeat extends the lease while the step runs', async () => {
    h = makeHarness({ env: { AGENTPR_LEASE_TTL_SEC: '1' } });
    const runId = (ok(await h.call('create-run', { owner: 'octo', repo: 'demo' })).run as { run_id: string }).run_id;
    h.app.service.startAttempt(runId, 'agent', {});
    const first = h.app.service.leases.get(runId)!.expires_at;
    await sleep(900);
    expect(Date.parse(h.app.service.leases.get(runId)!.expires_at)).toBeGreaterThan(Date.parse(first));
  });

  test('an orphan of a run that moved on since (a PR linked, now CI_WAIT) is closed; the healthy run is not moved', async () => {
    h = makeHarness();
    const runId = (ok(await h.call('create-run', { owner: 'octo', repo: 'demo' })).run as { run_id: string }).run_id;
    // A pr_create attempt from before leases, with no owner recorded.
    const orphan = h.app.service.startAttempt(runId, 'pr_create', {}, { lease: false });
    await sleep(5);
    for (const [event_type, payload] of [
      ['command.start.discovery', {}],
      ['worker.discovery.completed', { contract_path: '/c.md' }],
      ['command.start.implementation', {}],
      ['command.local.validation.passed', {}],
      ['worker.push.completed', { branch: 'feat/x' }],
      ['command.pr.linked', { pr_number: 7 }],
    ] as const) {
      h.app.service.applyEvent({ run_id: runId, event_type, payload });
    }
    expect(h.app.service.getRun(runId).state).toBe('CI_WAIT');
    const done = reconcileOrphanedAttempts(h.app, Date.now() + 7 * 3_600_000, 'reconcile-runs');
    expect(done).toMatchObject([{ attempt_id: orphan.attempt_id, state_before: 'CI_WAIT', state_after: 'CI_WAIT' }]);
    expect(h.app.service.getRun(runId).state).toBe('CI_WAIT');
  });
});

describe('a workspace per run', () => {
  test('alice/widget and bob/widget: separate trees, each push lands in its own fork', async () => {
    h = makeHarness();
    const forks = { alice: makeUpstreamAndFork(h.tmp, { 'README.md': '# a\n' }, { name: 'alice' }), bob: makeUpstreamAndFork(h.tmp, { 'README.md': '# b\n' }, { name: 'bob' }) };
    const runs: Record<string, { run_id: string; workspace_dir: string }> = {};
    for (const owner of ['alice', 'bob'] as const) {
      runs[owner] = ok(await h.call('create-run', { owner, repo: 'widget' })).run as { run_id: string; workspace_dir: string };
      expect(runs[owner].workspace_dir).toBe(join(h.app.config.workspaceRoot, owner, 'widget', runs[owner].run_id));
      const prep = ok(await h.call('run-prepare', { run_id: runs[owner].run_id, upstream_url: forks[owner].upstreamUrl, fork_url: forks[owner].forkUrl }));
      expect(prep.ok, JSON.stringify(prep)).toBe(true);
    }
    expect(runs.alice!.workspace_dir).not.toBe(runs.bob!.workspace_dir);
    for (const owner of ['alice', 'bob'] as const) {
      const run = runs[owner]!;
      await toImplementing(h, run.run_id);
      writeFileSync(join(run.workspace_dir, `${owner}.txt`), `${owner}'s fix\n`);
      ok(await h.call('mark-local-validated', { run_id: run.run_id }));
      const fin = ok(await h.call('run-finish', { run_id: run.run_id, changes: `${owner}'s fix` }));
      expect(fin.state, JSON.stringify(fin)).toBe('PUSHED');
      const branch = (fin.outputs as { branch: string }).branch;
      // The branch is in this owner's fork, with this owner's file, and nowhere else.
      expect(git(h.tmp, ['--git-dir', forks[owner].forkDir, 'show', `${branch}:${owner}.txt`])).toBe(`${owner}'s fix`);
      const other = owner === 'alice' ? 'bob' : 'alice';
      expect(git(h.tmp, ['--git-dir', forks[other].forkDir, 'branch', '--list'])).not.toContain(`${owner}.txt`);
      expect(() => git(h!.tmp, ['--git-dir', forks[other].forkDir, 'show', `${branch}:${owner}.txt`])).toThrow();
    }
  }, 90_000);

  test('cleanup-workspaces removes the trees of finished runs and keeps shared, live and outside ones', async () => {
    h = makeHarness();
    const root = h.app.config.workspaceRoot;
    const mk = (owner: string, repo: string, dir?: string) => {
      const run = h!.app.service.createRun({ owner, repo, ...(dir ? { workspace_dir: dir } : {}) });
      mkdirSync(join(run.workspace_dir, 'src'), { recursive: true });
      writeFileSync(join(run.workspace_dir, 'src', 'a.txt'), 'a');
      return run;
    };
    const done = mk('octo', 'gone');
    h.app.service.applyEvent({ run_id: done.run_id, event_type: 'worker.step.failed', payload: { step: 'agent', reason_code: 'test', error_message: 'given up', to_state: 'FAILED_TERMINAL' } });
    const live = mk('octo', 'busy');
    // The old shared layout: a finished run and a live one in <root>/<repo>.
    const sharedDone = mk('octo', 'shared', join(root, 'shared'));
    h.app.service.applyEvent({ run_id: sharedDone.run_id, event_type: 'worker.step.failed', payload: { step: 'agent', reason_code: 'test', error_message: 'given up', to_state: 'FAILED_TERMINAL' } });
    h.app.service.createRun({ owner: 'other', repo: 'shared', workspace_dir: join(root, 'shared') });
    const dry = ok(await h.call('cleanup-workspaces', { older_than_days: 0, dry_run: true }));
    expect(dry).toMatchObject({ removed: 1, kept: 1 });
    expect(existsSync(done.workspace_dir)).toBe(true);
    const real = ok(await h.call('cleanup-workspaces', { older_than_days: 0 }));
    expect(real.workspaces).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ run_id: done.run_id, action: 'removed' }),
        expect.objectContaining({ run_id: sharedDone.run_id, action: 'kept', why: expect.stringContaining('not finished') }),
      ]),
    );
    expect(existsSync(done.workspace_dir)).toBe(false);
    expect(existsSync(join(root, 'shared', 'src', 'a.txt'))).toBe(true);
    expect(existsSync(live.workspace_dir)).toBe(true);
    expect(h.app.service.getRun(done.run_id).state).toBe('FAILED_TERMINAL');
  });
});
