import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { git } from '../helpers/git.js';
import { makeHarness, ok, scenario, type Harness } from '../worker/harness.js';
import { TickReportSchema } from '../../src/manager/tick.js';

let h: Harness | undefined;
afterEach(async () => {
  await h?.cleanup();
  h = undefined;
});

describe('manager-tick end to end (replay worker, local bare repos)', () => {
  it('one tick drives a run from QUEUED to PUSHED through the same tools, then waits for a person', async () => {
    h = makeHarness();
    h.setEnv({ FAKE_CODEX_SCENARIO: scenario('implement-pass') });
    const created = ok(await h.call('create-run', { owner: 'octo', repo: 'demo' }));
    const runId = (created.run as { run_id: string }).run_id;

    const report = TickReportSchema.parse(
      ok(await h.call('manager-tick', { run_id: runId, prompt: 'Append an agentpr greeting to src/greeting.txt\n\nValidate with npm test.' })),
    );

    expect(report.decisions.map((d) => [d.state, d.action, d.tool, d.outcome, d.state_after])).toEqual([
      ['QUEUED', 'start_discovery', 'start-discovery', 'executed', 'DISCOVERY'],
      ['DISCOVERY', 'run_prepare', 'run-prepare', 'executed', 'DISCOVERY'],
      ['DISCOVERY', 'mark_plan_ready', 'mark-plan-ready', 'executed', 'PLAN_READY'],
      ['PLAN_READY', 'start_implementation', 'start-implementation', 'executed', 'IMPLEMENTING'],
      ['IMPLEMENTING', 'run_agent_step', 'run-agent-step', 'executed', 'LOCAL_VALIDATING'],
      ['LOCAL_VALIDATING', 'run_finish', 'run-finish', 'executed', 'PUSHED'],
      ['PUSHED', 'wait_human', null, 'waiting', null],
    ]);
    expect(report.actions_executed).toBe(6);
    const run = h.app.service.getRun(runId);
    expect(run.state).toBe('PUSHED');

    // Discovery produced no contract, so the manager wrote one from the prompt.
    const contract = h.app.service.latestArtifact(runId, 'contract')!;
    expect(contract.uri).toBe(join(h.home, 'contracts', `${runId}.auto-contract.md`));
    expect(readFileSync(contract.uri, 'utf8')).toContain('Append an agentpr greeting');

    // The fork received a real commit with the worker's edit, titled from the prompt.
    const branch = h.app.service.latestArtifact(runId, 'branch')!.uri;
    const log = git(h.tmp, ['--git-dir', h.forge.forkDir, 'log', '-1', '--format=%s', branch]);
    expect(log).toBe('Append an agentpr greeting to src/greeting.txt');
    const file = git(h.tmp, ['--git-dir', h.forge.forkDir, 'show', `${branch}:src/greeting.txt`]);
    expect(file).toBe('hello\nhello, agentpr');

    // The agent step's digest is the PASS the next decisions were grounded in.
    const digest = h.app.service.latestArtifact(runId, 'run_digest')!;
    expect(digest.metadata.grade).toBe('PASS');
    expect(existsSync(digest.uri)).toBe(true);

    // Every decision is stored, in order.
    const stored = h.app.service.listDecisions(runId).reverse();
    expect(stored.map((d) => d.action)).toEqual(['start_discovery', 'run_prepare', 'mark_plan_ready', 'start_implementation', 'run_agent_step', 'run_finish', 'wait_human']);
    expect(stored.every((d) => d.tick_id === report.tick_id && d.mode === 'rules')).toBe(true);

    // inspect-run shows them.
    const inspected = await h.registry.call('inspect-run', { run_id: runId }, { app: h.app, entry: 'cli' });
    expect(inspected.ok).toBe(true);
    if (inspected.ok) {
      const rows = (inspected.data.decisions as { rows: Array<{ action: string; outcome: string; tick_id: string }> }).rows;
      expect(rows.map((r) => r.action)).toEqual(stored.map((d) => d.action));
      expect(rows[4]).toMatchObject({ action: 'run_agent_step', outcome: 'executed', tick_id: report.tick_id });
      expect(inspected.text).toMatch(/manager decisions \(7\):/);
      expect(inspected.text).toMatch(/LOCAL_VALIDATING: run_finish executed/);
    }

    // A second tick changes nothing: the run waits for a person to open the PR.
    const again = TickReportSchema.parse(ok(await h.call('manager-tick', { run_id: runId })));
    expect(again.decisions).toEqual([expect.objectContaining({ action: 'wait_human', outcome: 'waiting' })]);
    expect(h.app.service.getRun(runId).state).toBe('PUSHED');
  });
});
