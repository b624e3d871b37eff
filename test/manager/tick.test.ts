import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { App } from '../../src/app.js';
import { Registry } from '../../src/registry.js';
import { runTick, TickReportSchema } from '../../src/manager/tick.js';
import { TOOLS } from '../../tools/index.js';
import { makeTestApp } from '../helpers/app.js';

const FAKE_CODEX = resolve('test/fixtures/bin/fake-codex');
const registry = new Registry(TOOLS);

let app: App;
let cleanup: () => Promise<void>;

beforeEach(() => {
  ({ app, cleanup } = makeTestApp({ env: { AGENTPR_CODEX_BIN: FAKE_CODEX } }));
});
afterEach(async () => {
  await cleanup();
});

function runIn(state: 'QUEUED' | 'DISCOVERY' | 'PLAN_READY' | 'IMPLEMENTING' | 'PAUSED' | 'DONE' | 'FAILED_RETRYABLE' | 'CI_WAIT', repo = 'widget', budget?: Record<string, string>): string {
  const s = app.service;
  const id = s.createRun({ owner: 'acme', repo, budget }).run_id;
  const ev = (event_type: string, payload: Record<string, unknown> = {}) => s.applyEvent({ run_id: id, event_type, payload });
  if (state === 'QUEUED') return id;
  if (state === 'PAUSED') return ev('command.pause'), id;
  ev('command.start.discovery');
  if (state === 'DISCOVERY') return id;
  if (state === 'FAILED_RETRYABLE') return ev('worker.step.failed', { step: 'prepare', reason_code: 'script_failed', error_message: 'clone failed' }), id;
  ev('worker.discovery.completed', { contract_path: '/contracts/c.md' });
  if (state === 'PLAN_READY') return id;
  ev('command.start.implementation');
  if (state === 'IMPLEMENTING') return id;
  ev('command.local.validation.passed');
  ev('worker.push.completed', { branch: 'feature/x' });
  if (state === 'DONE') return ev('command.mark.done'), id;
  ev('command.pr.linked', { pr_number: 7 });
  return id;
}

describe('manager-tick (rules mode)', () => {
  it('dry run decides for every non-terminal run, records the decisions and changes nothing', async () => {
    const queued = runIn('QUEUED', 'a');
    const paused = runIn('PAUSED', 'b');
    const done = runIn('DONE', 'c');
    const ready = runIn('PLAN_READY', 'd');
    const outcome = await registry.call('manager-tick', { dry_run: true }, { app, entry: 'mcp' });
    expect(outcome.ok).toBe(true);
    if (!outcome.ok) return;
    const report = TickReportSchema.parse(outcome.data);
    expect(report.dry_run).toBe(true);
    expect(report.runs_considered).toBe(3);
    expect(report.actions_executed).toBe(0);
    const byRun = new Map(report.decisions.map((d) => [d.run_id, d]));
    expect(byRun.has(done)).toBe(false);
    expect(byRun.get(queued)).toMatchObject({ action: 'start_discovery', tool: 'start-discovery', outcome: 'dry_run', executed: false, error: null });
    expect(byRun.get(paused)).toMatchObject({ action: 'wait_human', tool: null, outcome: 'waiting' });
    expect(byRun.get(ready)).toMatchObject({ action: 'start_implementation', outcome: 'dry_run' });
    // Work nearer the finish first: PLAN_READY (normal) and PAUSED (normal) before QUEUED (low).
    expect(report.decisions.at(-1)!.run_id).toBe(queued);
    expect(app.service.getRun(queued).state).toBe('QUEUED');
    expect(app.service.getRun(ready).state).toBe('PLAN_READY');
    const stored = app.service.listDecisions(queued);
    expect(stored).toHaveLength(1);
    expect(stored[0]).toMatchObject({ tick_id: report.tick_id, mode: 'rules', dry_run: true, action: 'start_discovery', executed: false, outcome: 'dry_run', source: 'rules' });
    expect(outcome.text).toContain(report.tick_id);
  });

  it('executes through the tools and advances a run until it waits', async () => {
    const id = runIn('PLAN_READY');
    const report = await runTick(app, registry, {});
    // PLAN_READY -> start-implementation -> IMPLEMENTING, then no prompt: wait for a person.
    expect(report.decisions.map((d) => [d.state, d.action, d.outcome, d.state_after])).toEqual([
      ['PLAN_READY', 'start_implementation', 'executed', 'IMPLEMENTING'],
      ['IMPLEMENTING', 'wait_human', 'waiting', null],
    ]);
    expect(report.decisions[1]!.reason).toMatch(/no prompt/);
    expect(app.service.getRun(id).state).toBe('IMPLEMENTING');
    const events = app.service.listEvents(id).map((e) => e.event_type);
    expect(events.at(-1)).toBe('command.start.implementation');
    expect(app.service.listDecisions(id).map((d) => d.action)).toEqual(['wait_human', 'start_implementation']);
  });

  it('retries a retryable failure from DISCOVERY when prepare never succeeded', async () => {
    const id = runIn('FAILED_RETRYABLE');
    const report = await runTick(app, registry, { run_id: id, max_actions: 1 });
    expect(report.decisions[0]).toMatchObject({ action: 'retry', args: { run_id: id, target_state: 'DISCOVERY' }, outcome: 'executed', state_after: 'DISCOVERY' });
    // The next step (run_prepare) is over the per-tick limit of 1.
    expect(report.decisions[1]).toMatchObject({ action: 'run_prepare', outcome: 'deferred', executed: false });
    expect(report.decisions[1]!.error).toMatch(/max_actions 1/);
    expect(report.deferred).toBe(1);
  });

  it('stops at the per-tick action limit across runs', async () => {
    const ids = [runIn('PLAN_READY', 'a'), runIn('PLAN_READY', 'b'), runIn('PLAN_READY', 'c')];
    const report = await runTick(app, registry, { max_actions: 2 });
    expect(report.actions_executed).toBe(2);
    expect(report.deferred).toBe(1);
    const states = ids.map((id) => app.service.getRun(id).state).sort();
    expect(states).toEqual(['IMPLEMENTING', 'IMPLEMENTING', 'PLAN_READY']);
  });

  it('defers an agent step while max_concurrent_agent_steps are running', async () => {
    const busy = runIn('IMPLEMENTING', 'busy');
    app.service.startAttempt(busy, 'agent');
    const waiting = runIn('IMPLEMENTING', 'next');
    const report = await runTick(app, registry, { prompt: 'Fix the bug' });
    const byRun = new Map(report.decisions.map((d) => [d.run_id, d]));
    expect(byRun.get(busy)).toMatchObject({ action: 'noop', outcome: 'noop' });
    expect(byRun.get(busy)!.reason).toMatch(/agent attempt is still running/);
    expect(byRun.get(waiting)).toMatchObject({ action: 'run_agent_step', outcome: 'deferred', args: { run_id: waiting, prompt: 'Fix the bug' } });
    expect(byRun.get(waiting)!.error).toMatch(/1 agent step\(s\) running; max_concurrent_agent_steps is 1/);
    expect(app.service.getRun(waiting).state).toBe('IMPLEMENTING');
  });

  it('reports a tool failure and goes on with the other runs', async () => {
    const ci = runIn('CI_WAIT', 'ci');
    const ready = runIn('PLAN_READY', 'ready');
    const report = await runTick(app, registry, {});
    const byRun = new Map(report.decisions.map((d) => [d.run_id, d]));
    // No GitHub token here: sync-github refuses; the tick records it and continues.
    expect(byRun.get(ci)).toMatchObject({ action: 'sync_github', tool: 'sync-github', executed: true, outcome: 'failed' });
    expect(byRun.get(ci)!.error).toBeTruthy();
    expect(app.service.getRun(ready).state).toBe('IMPLEMENTING');
    expect(report.actions_failed).toBe(1);
  });

  it('writes the auto-contract when discovery produced none, and marks the plan ready with it', async () => {
    const id = runIn('DISCOVERY');
    // Prepare is the worker helper's tool; here its success is recorded directly.
    const a = app.service.startAttempt(id, 'prepare');
    app.service.finishAttempt(a.attempt_id, { status: 'succeeded', exit_code: 0 });
    const report = await runTick(app, registry, { run_id: id, prompt: 'Add a --verbose flag', max_actions: 1 });
    const contract = join(app.config.home, 'contracts', `${id}.auto-contract.md`);
    expect(report.decisions[0]).toMatchObject({ action: 'mark_plan_ready', outcome: 'executed', state_after: 'PLAN_READY', args: { contract_path: contract } });
    expect(existsSync(contract)).toBe(true);
    expect(readFileSync(contract, 'utf8')).toContain('Add a --verbose flag');
    expect(app.service.latestArtifact(id, 'contract')?.uri).toBe(contract);
  });

  it('does not start an action once stopped', async () => {
    const id = runIn('PLAN_READY');
    const stop = new AbortController();
    stop.abort();
    const report = await runTick(app, registry, {}, { stopSignal: stop.signal });
    expect(report.stopped).toBe(true);
    expect(report.decisions[0]).toMatchObject({ run_id: id, outcome: 'stopped', executed: false });
    expect(app.service.getRun(id).state).toBe('PLAN_READY');
  });

  it('answers noop for a terminal run named explicitly, and refuses an unknown run', async () => {
    const done = runIn('DONE');
    const report = await runTick(app, registry, { run_id: done });
    expect(report.decisions).toEqual([expect.objectContaining({ action: 'noop', outcome: 'noop' })]);
    const unknown = await registry.call('manager-tick', { run_id: 'run_ffffffffffff' }, { app, entry: 'cli' });
    expect(unknown).toMatchObject({ ok: false, code: 'invalid_input' });
    if (!unknown.ok) expect(unknown.error).toMatch(/unknown run 'run_ffffffffffff'/);
  });

  it('refuses bad input without changing anything', async () => {
    const id = runIn('PLAN_READY');
    const bad = await registry.call('manager-tick', { decision_mode: 'psychic', max_actions: 0 }, { app, entry: 'mcp' });
    expect(bad).toMatchObject({ ok: false, code: 'invalid_input' });
    if (!bad.ok) expect(bad.error).toMatch(/decision_mode/);
    expect(app.service.getRun(id).state).toBe('PLAN_READY');
    expect(app.service.listDecisions(id)).toEqual([]);
  });
});
