import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, expect, test } from 'vitest';
import { alive, makeHarness, ok, preparedRun, scenario, toImplementing, type Harness } from '../worker/harness.js';

/**
 * Issue 9: the worker timeout leaves no process behind under load. Several agent steps run at
 * once in one server, each worker (fake codex in hang mode) starts a child that ignores SIGTERM,
 * and every step hits its hard timeout. Afterwards no recorded pid may be running.
 */

const STEPS = 6;
// Relative: fake-codex writes it in its cwd, the run's own clone (.agentpr_runtime is git-excluded).
const PIDS_FILE = join('.agentpr_runtime', 'fake-codex-pids.json');

let h: Harness | undefined;
const leftovers: number[] = [];
afterEach(async () => {
  // Never leave a process behind even when an assertion failed.
  for (const pid of leftovers.splice(0)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await h?.cleanup();
  h = undefined;
});

type StepData = { timed_out: boolean; state_after: string; reason_code: string | null; event: { event_type: string } | null };

test(`${STEPS} agent steps timing out at once: every worker and its child is gone, every run timer.timeout -> FAILED_RETRYABLE`, async () => {
  h = makeHarness();
  const runs: Array<{ runId: string; workspace: string }> = [];
  for (let i = 0; i < STEPS; i++) {
    const r = await preparedRun(h, `load-${i}`);
    await toImplementing(h, r.runId);
    runs.push(r);
  }
  // The worker and its child both ignore SIGTERM: only the SIGKILL after the grace ends them.
  h.setEnv({ FAKE_CODEX_SCENARIO: scenario('hang'), FAKE_CODEX_PIDS_FILE: PIDS_FILE, FAKE_CODEX_IGNORE_SIGTERM: '1' });

  const results = await Promise.all(runs.map((r) => h!.call('run-agent-step', { run_id: r.runId, prompt: 'Run the watcher.', max_agent_seconds: 2 })));

  const pids: number[] = [];
  for (const [i, r] of runs.entries()) {
    const { parent, child } = JSON.parse(readFileSync(join(r.workspace, PIDS_FILE), 'utf8')) as { parent: number; child: number };
    leftovers.push(parent, child);
    pids.push(parent, child);
    const data = ok(results[i]!) as StepData;
    expect(data, r.runId).toMatchObject({ timed_out: true, state_after: 'FAILED_RETRYABLE', reason_code: 'timeout' });
    expect(data.event?.event_type).toBe('timer.timeout');
    const run = h.app.service.getRun(r.runId);
    expect(run.state).toBe('FAILED_RETRYABLE');
    expect(run.last_error).toBe('timeout:agent');
    expect(h.app.service.listEvents(r.runId).map((e) => e.event_type).at(-1)).toBe('timer.timeout');
    expect(h.app.service.listAttempts(r.runId, 'agent')[0]).toMatchObject({ status: 'timed_out' });
  }
  expect(new Set(pids).size).toBe(STEPS * 2);
  // Gone means: signal 0 fails with ESRCH, or only a zombie is left for init to reap.
  const running = pids.filter((pid) => alive(pid));
  expect(running, `processes still running after the timeouts: ${running.join(', ')}`).toEqual([]);
});
