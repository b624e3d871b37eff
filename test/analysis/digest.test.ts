import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { analyzeAttempt, digestToJson, iterationHints, recommendationFor, RunDigestSchema, type StageAttempt } from '../../src/analysis/index.js';
import { FIXTURES, policyWith } from './helpers.js';

const ATTEMPTS: StageAttempt[] = [
  { step: 'preflight', attempt_no: 1, status: 'succeeded', exit_code: 0, duration_ms: 102, started_at: '2026-02-25T00:58:38.000Z', finished_at: '2026-02-25T00:58:38.102Z' },
  { step: 'agent', attempt_no: 1, status: 'running', exit_code: null, duration_ms: null, started_at: '2026-02-25T00:58:38.200Z', finished_at: null },
];

async function dexterRun1() {
  return analyzeAttempt({
    streamPath: join(FIXTURES, 'calib_dexter_20260225_r2_20260225T010156572938Z.jsonl'),
    exitCode: 0,
    stateBefore: 'IMPLEMENTING',
    attemptNo: 1,
    runId: 'run_0a1b2c3d4e5f',
    owner: 'virattt',
    repo: 'dexter',
    policy: policyWith({ max_changed_files: 4, max_added_lines: 70, min_test_commands: 2, max_retryable_attempts: 2 }),
    durationMs: 197_363,
    attempts: ATTEMPTS,
    preflight: { ok: true, checks: [{ name: 'git_writable', ok: true }] },
    diffStats: { changed_files: 1, added_lines: 3, deleted_lines: 1, files: [{ path: 'src/tools/search/exa.ts', added: 3, deleted: 1, binary: false, untracked: false }], ignored_files: 2, head_sha: 'c05a3bc1'.padEnd(40, '0') },
    artifacts: { agent_event_stream: '/data/reports/run_0a1b2c3d4e5f/agent_1.jsonl', agent_last_message: null },
    generatedAt: new Date('2026-02-25T01:01:56.684Z'),
  });
}

describe('run digest', () => {
  it('has every SPEC §6 section, validates against its schema and serialises with sorted keys', async () => {
    const { digest } = await dexterRun1();
    expect(RunDigestSchema.parse(digest)).toEqual(digest);
    const json = digestToJson(digest);
    const top = Object.keys(JSON.parse(json) as object);
    expect(top).toEqual([
      'agent',
      'artifacts',
      'attempt',
      'changes',
      'classification',
      'commands',
      'events',
      'generated_at',
      'manager_recommendation',
      'preflight',
      'retention',
      'run',
      'safety',
      'schema_version',
      'skills',
      'stages',
      'state',
      'usage',
      'validation',
    ]);
    // Nested keys are sorted too, and the output is stable.
    expect(Object.keys((JSON.parse(json) as { usage: object }).usage)).toEqual([...Object.keys(digest.usage!)].sort());
    expect(digestToJson((await dexterRun1()).digest)).toBe(json);
  });

  it('reports the figures of the stream', async () => {
    const { digest: d, verdict } = await dexterRun1();
    expect(verdict.reason_code).toBe('test_command_failed');
    expect(d.state).toEqual({ before: 'IMPLEMENTING', after: 'NEEDS_HUMAN_REVIEW' });
    expect(d.attempt).toEqual({ no: 1, step: 'agent', duration_ms: 197_363, exit_code: 0, timed_out: false });
    expect(d.events).toMatchObject({ lines: 101, parsed: 101, parse_errors: 0, bytes: 66_476, type_counts: { 'item.completed': 66, 'item.started': 32, 'thread.started': 1, 'turn.started': 1, 'turn.completed': 1 } });
    expect(d.commands).toMatchObject({ total: 32, completed: 32, failed: 6, in_progress: 0, durations_known: 0 });
    expect(d.commands.by_category.repo_reading).toEqual({ count: 18, share_pct: 56.25, duration_ms: 0, duration_share_pct: 0 });
    expect(d.commands.by_category.git_ops).toMatchObject({ count: 9, share_pct: 28.13 });
    // Grouped by the command a person would name (env prefixes differ between the two runs).
    expect(d.commands.top_by_frequency.slice(0, 3)).toEqual([
      { command: 'bun run typecheck', count: 2, category: 'lint_or_typecheck' },
      { command: 'bun test', count: 2, category: 'tests' },
      { command: 'bun install --frozen-lockfile --ignore-scripts', count: 1, category: 'dependency_install' },
    ]);
    expect(d.validation).toMatchObject({ test_command_count: 4, failed_test_command_count: 3, unexcused_failed_test_command_count: 3, min_test_commands: 2 });
    expect(d.usage).toEqual({
      input_tokens: 504_150,
      cached_input_tokens: 459_776,
      cache_write_input_tokens: 0,
      output_tokens: 10_295,
      reasoning_output_tokens: 0,
      total_tokens: 514_445,
      cumulative_per_thread: true,
      turns: 1,
      thread_ids: ['019c924e-2048-7eb3-9d25-0b6a9805ca12'],
      delta: null,
    });
    expect(d.stages.timeline.map((a) => [a.step, a.status, a.duration_ms])).toEqual([
      ['preflight', 'succeeded', 102],
      ['agent', 'succeeded', 197_363],
    ]);
    expect(d.stages.totals).toEqual({
      preflight: { attempts: 1, failed: 0, duration_ms: 102, share_pct: 0.05 },
      agent: { attempts: 1, failed: 0, duration_ms: 197_363, share_pct: 99.95 },
    });
    expect(d.stages.top_step).toEqual({ step: 'agent', duration_ms: 197_363, share_pct: 99.95 });
    expect(d.agent.final_message).toMatch(/^Status: NEEDS REVIEW/);
    expect(d.manager_recommendation).toEqual({ action: 'human_review', priority: 'high', reason: 'needs manual judgment: test_command_failed' });
    expect(d.retention).toMatchObject({ keep_event_stream: true, pass_sample_pct: 15 });
  });

  it('recommends advance for PASS and retry/high for RETRYABLE', async () => {
    const base = { streamPath: join(FIXTURES, 'run_policy_smoke_20260224_20260225T001601002465Z.jsonl'), stateBefore: 'DISCOVERY' as const, attemptNo: 1, runId: 'run_0a1b2c3d4e5f', policy: policyWith() };
    expect((await analyzeAttempt({ ...base, exitCode: 0 })).digest.manager_recommendation).toEqual({ action: 'advance', priority: 'normal', reason: 'runtime classified PASS (runtime_success)' });
    expect((await analyzeAttempt({ ...base, exitCode: 1 })).digest.manager_recommendation).toEqual({ action: 'retry', priority: 'high', reason: 'retryable failure: runtime_unknown_failure' });
  });
});

describe('manager insight', () => {
  it('matches the snapshot for the dexter run', async () => {
    const { insightMarkdown } = await dexterRun1();
    await expect(insightMarkdown).toMatchFileSnapshot('./__snapshots__/insight-dexter-run1.md');
  });

  it('gives at most 5 hints, led by the reason code', async () => {
    const { digest } = await dexterRun1();
    const hints = iterationHints(digest);
    expect(hints.length).toBeGreaterThan(0);
    expect(hints.length).toBeLessThanOrEqual(5);
    expect(hints[0]).toContain('repo_overrides["virattt/dexter"].known_test_failure_allowlist');
    expect(hints[0]).toContain('bun run typecheck');
    const noisy = {
      ...digest,
      events: { ...digest.events, parse_errors: 3 },
      commands: {
        ...digest.commands,
        in_progress: 2,
        durations_known: 10,
        by_category: { ...digest.commands.by_category, dependency_install: { count: 3, share_pct: 10, duration_ms: 5000, duration_share_pct: 50 } },
        top_by_frequency: [{ command: 'make test', count: 4, category: 'tests' as const }],
      },
      classification: { ...digest.classification, reason_code: 'retryable_limit_exceeded' as const, original_reason_code: 'runtime_unknown_failure' as const },
    };
    const many = iterationHints(noisy);
    expect(many).toHaveLength(5);
    expect(many[0]).toContain('no known pattern');
    expect(many[1]).toContain('Retries are exhausted');
    expect(many[2]).toContain('Dependency installs took 50%');
    expect(many[3]).toContain('`make test` ran 4 times');
  });
});

describe('what operators read in a digest', () => {
  it('carries a sample of the commands the agent ran, in order', async () => {
    const { digest } = await dexterRun1();
    expect(digest.commands.sample).toHaveLength(10);
    expect(digest.commands.sample[0]).toBe("/bin/zsh -lc 'pwd && ls -la'");
    for (const c of digest.commands.sample) expect(c.length).toBeLessThanOrEqual(200);
  });

  it('a PASS that the policy sends to a person is recommended human_review_gate, not advance', () => {
    const pass = { grade: 'PASS', reason_code: 'runtime_success' } as Parameters<typeof recommendationFor>[0];
    expect(recommendationFor(pass, 'LOCAL_VALIDATING')).toEqual({ action: 'advance', priority: 'normal', reason: 'runtime classified PASS (runtime_success)' });
    expect(recommendationFor(pass, 'NEEDS_HUMAN_REVIEW')).toEqual({
      action: 'human_review_gate',
      priority: 'normal',
      reason: 'runtime classified PASS (runtime_success), but policy success_state NEEDS_HUMAN_REVIEW sends the run to a person before it goes on',
    });
  });
});
