import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { activeAgentStep } from '../../src/worker/active.js';
import { makeHarness, ok, preparedRun, scenario, toImplementing, waitFor, type Harness } from './harness.js';

let h: Harness | undefined;
afterEach(async () => {
  await h?.cleanup();
  h = undefined;
});

async function stepIn(h: Harness, repo: string, name: string): Promise<string> {
  const { runId } = await preparedRun(h, repo);
  await toImplementing(h, runId);
  h.setEnv({ FAKE_CODEX_SCENARIO: scenario(name) });
  ok(await h.call('run-agent-step', { run_id: runId, prompt: `scenario ${name}` }));
  return runId;
}

describe('inspection across runs', () => {
  test('bottlenecks, metrics and deterministic feedback', async () => {
    h = makeHarness();
    const failing = await stepIn(h, 'alpha', 'test-fail-exit0');
    await stepIn(h, 'beta', 'transient-failure');
    await stepIn(h, 'gamma', 'implement-pass');

    const all = ok(await h.call('run-bottlenecks', {})) as {
      runs: number;
      steps: Array<{ step: string; attempts: number }>;
      slowest_commands: Array<{ run_id: string; command: string; duration_ms: number }>;
    };
    expect(all.runs).toBe(3);
    expect(all.steps.find((s) => s.step === 'agent')?.attempts).toBe(3);
    expect(all.steps.find((s) => s.step === 'prepare')?.attempts).toBe(3);
    const durations = all.slowest_commands.map((c) => c.duration_ms);
    expect([...durations].sort((a, b) => b - a)).toEqual(durations);
    const alpha = ok(await h.call('run-bottlenecks', { repo: 'ALPHA' })) as { runs: number; slowest_commands: Array<{ run_id: string; command: string }>; slowest_attempts: Array<{ run_id: string }> };
    expect(alpha.runs).toBe(1);
    expect(new Set(alpha.slowest_attempts.map((a) => a.run_id))).toEqual(new Set([failing]));
    // Which commands are slowest depends on replay timing; that they all come from alpha does not.
    expect(alpha.slowest_commands.length).toBeGreaterThan(0);
    expect(alpha.slowest_commands.every((c) => c.run_id === failing)).toBe(true);

    const metrics = ok(await h.call('skills-metrics', {})) as {
      overall: { attempts: number; pass: number; retryable: number; human_review: number; pass_rate_pct: number };
      by_stage: Record<string, { attempts: number }>;
      reasons: Array<{ reason_code: string; count: number }>;
    };
    expect(metrics.overall).toEqual({ attempts: 3, pass: 1, retryable: 1, human_review: 1, pass_rate_pct: 33.33 });
    expect(metrics.by_stage.IMPLEMENTING?.attempts).toBe(3);
    expect(metrics.reasons.map((r) => r.reason_code).sort()).toEqual(['runtime_success', 'runtime_transient_failure', 'test_command_failed']);

    const fb = ok(await h.call('skills-feedback', {})) as { actions: Array<{ id: string; priority: string; trigger: string }>; markdown: string; summary: Record<string, number> };
    expect(fb.actions.map((a) => `${a.priority}:${a.id}:${a.trigger}`)).toEqual([
      'high:policy-known-baseline-failures:test_command_failed=1',
      'medium:policy-retry-and-timeout-calibration:transient_like_failures=1',
      'medium:stage-implementing-pass-rate:pass_rate=33.33% over 3 attempts',
    ]);
    expect(fb.summary).toEqual({ parsed_reports: 3, pass_rate_pct: 33.33, retryable_rate_pct: 33.33, human_review_rate_pct: 33.33 });
    expect(fb.markdown).toMatch(/^# Skills Feedback\n/);
    expect(fb.markdown).toContain('## Actions\n1. [high] policy-known-baseline-failures -> manager_policy.run_agent_step.known_test_failure_allowlist\n   Trigger: test_command_failed=1\n');
    const again = ok(await h.call('skills-feedback', {})) as { actions: unknown };
    expect(again.actions).toEqual(fb.actions);
  });

  test('inspect-run: verdict, recommendation, stage totals and the manager decisions', async () => {
    h = makeHarness();
    const runId = await stepIn(h, 'alpha', 'test-fail-exit0');
    const r = ok(await h.call('inspect-run', { run_id: runId })) as {
      latest: { grade: string; reason_code: string; recommendation: { action: string } };
      stage_totals: Record<string, { attempts: number; failed: number }>;
      decisions: { source: string | null; rows: unknown[] };
    };
    expect(r.latest).toMatchObject({ grade: 'HUMAN_REVIEW', reason_code: 'test_command_failed', recommendation: { action: 'human_review' } });
    expect(r.stage_totals.agent).toMatchObject({ attempts: 1, failed: 1 });
    expect(r.decisions).toEqual({ source: 'manager_decisions', rows: [] });

    // The manager's recorded decisions show up, oldest first.
    h.app.service.recordDecisions([
      { tick_id: 't1', run_id: runId, mode: 'rules', dry_run: false, state: 'NEEDS_HUMAN_REVIEW', action: 'wait_human', tool: null, args: {}, reason: 'needs review', priority: 'high', source: 'rules', model_proposal: null, disagreement: false, executed: false, outcome: 'waiting', error: null },
    ]);
    const withDecisions = ok(await h.call('inspect-run', { run_id: runId })) as { decisions: { source: string; rows: Array<Record<string, unknown>> } };
    expect(withDecisions.decisions.rows).toEqual([expect.objectContaining({ run_id: runId, action: 'wait_human', reason: 'needs review' })]);
  });

  test('wait: false with a failure inside agentpr is recorded on the attempt and the run, never thrown', async () => {
    h = makeHarness();
    const { runId } = await preparedRun(h);
    await toImplementing(h, runId);
    // The attempt's report directory cannot be created: its parent is a file.
    mkdirSync(join(h.home, 'reports', runId), { recursive: true });
    writeFileSync(join(h.home, 'reports', runId, 'agent'), 'not a directory');
    h.setEnv({ FAKE_CODEX_SCENARIO: scenario('implement-pass') });
    const r = ok(await h.call('run-agent-step', { run_id: runId, prompt: 'x', wait: false })) as { status: string; attempt_no: number };
    expect(r.status).toBe('running');
    await activeAgentStep(h.app, runId)?.done;
    const run = await waitFor('the failure to be recorded', () => {
      const v = h!.app.service.getRun(runId);
      return v.state === 'FAILED_RETRYABLE' ? v : undefined;
    });
    expect(run.last_error).toMatch(/^agent:orchestrator_error:agent step failed inside agentpr: .*(ENOTDIR|EEXIST|not a directory)/i);
    const attempt = h.app.service.listAttempts(runId, 'agent')[0]!;
    expect(attempt).toMatchObject({ status: 'failed', reason_code: 'orchestrator_error' });
    expect(readFileSync(join(h.home, 'reports', runId, 'agent'), 'utf8')).toBe('not a directory');
  });
});
