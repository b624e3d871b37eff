import { describe, expect, it } from 'vitest';
import { analyzeParsed, evaluatePrGate, PR_GATE_CHECKS, type RunDigest } from '../../src/analysis/index.js';
import type { RunAgentStepPolicy } from '../../src/policy.js';
import { commandLines, policyWith, summarize, zsh } from './helpers.js';

const HEAD = '0123456789abcdef0123456789abcdef01234567';

function passingDigest(policy: RunAgentStepPolicy = policyWith()): RunDigest {
  const stream = summarize([...commandLines('item_1', zsh('make test'), 0, 'ok'), ...commandLines('item_2', zsh('make lint'), 0, 'ok')]);
  const a = analyzeParsed(stream, {
    exitCode: 0,
    stateBefore: 'IMPLEMENTING',
    attemptNo: 1,
    runId: 'run_0123456789ab',
    policy,
    preflight: { ok: true },
    diffStats: { changed_files: 2, added_lines: 30, deleted_lines: 4, files: [], ignored_files: 0, head_sha: HEAD },
    skills: { mode: 'off', required: [], available: [], missing: [] },
    generatedAt: new Date('2026-02-25T01:00:00Z'),
  });
  expect(a.verdict.reason_code).toBe('runtime_success');
  return a.digest;
}

function gate(digest: unknown, policy: RunAgentStepPolicy = policyWith(), hasContract = true) {
  return evaluatePrGate({ digest, hasContract, policy, headSha: HEAD, digestRef: '/reports/run_0123456789ab/digest_1.json', now: new Date('2026-02-25T02:00:00Z') });
}

const codes = (r: ReturnType<typeof gate>) => r.failed_checks.map((c) => c.code);

describe('PR gate', () => {
  it('passes a PASS digest with contract, preflight, tests and diff within budget; the snapshot names the head SHA', () => {
    const r = gate(passingDigest());
    expect(r.ok).toBe(true);
    expect(r.failed_checks).toEqual([]);
    expect(r.snapshot).toMatchObject({
      head_sha: HEAD,
      evaluated_at: '2026-02-25T02:00:00.000Z',
      has_contract: true,
      digest_ref: '/reports/run_0123456789ab/digest_1.json',
      digest_attempt_no: 1,
      grade: 'PASS',
      reason_code: 'runtime_success',
      test_command_count: 2,
      failed_test_command_count: 0,
      changed_files: 2,
      added_lines: 30,
      skills_mode: 'off',
    });
  });

  it('missing_contract', () => {
    const r = gate(passingDigest(), policyWith(), false);
    expect(codes(r)).toEqual(['missing_contract']);
    expect(r.ok).toBe(false);
  });

  it('missing_digest, also for an unreadable one', () => {
    expect(codes(gate(null))).toEqual(['missing_digest']);
    const r = gate({ schema_version: 1, classification: 'nonsense' });
    expect(codes(r)).toEqual(['missing_digest']);
    expect(r.failed_checks[0]!.message).toContain('/reports/run_0123456789ab/digest_1.json');
  });

  it('runtime_not_pass and runtime_not_runtime_success', () => {
    const d = passingDigest();
    d.classification = { ...d.classification, grade: 'HUMAN_REVIEW', reason_code: 'diff_budget_exceeded' };
    expect(codes(gate(d))).toEqual(['runtime_not_pass', 'runtime_not_runtime_success']);
  });

  it('allowlisted failures count as success', () => {
    const d = passingDigest();
    d.classification = { ...d.classification, reason_code: 'runtime_success_allowlisted_test_failures' };
    d.validation = { ...d.validation, failed_test_command_count: 1, unexcused_failed_test_command_count: 0 };
    expect(gate(d).ok).toBe(true);
  });

  it('preflight_not_ok, also when the digest has no preflight', () => {
    const d = passingDigest();
    d.preflight = { ok: false, checks: [{ name: 'git_writable', ok: false }] };
    expect(gate(d).failed_checks).toEqual([{ code: 'preflight_not_ok', message: 'preflight failed: git_writable' }]);
    d.preflight = null;
    expect(codes(gate(d))).toEqual(['preflight_not_ok']);
  });

  it('safety_violation_present', () => {
    const d = passingDigest();
    d.safety = { ...d.safety, violation_count: 1, violations: [{ id: 'item_3', command: 'sudo make install', rules: ['sudo'] }] };
    expect(gate(d).failed_checks).toEqual([{ code: 'safety_violation_present', message: '1 safety violation(s): sudo' }]);
  });

  it('insufficient_test_evidence against the policy now', () => {
    expect(gate(passingDigest(), policyWith({ min_test_commands: 3 })).failed_checks).toEqual([
      { code: 'insufficient_test_evidence', message: '2 test command(s) run; min_test_commands is 3' },
    ]);
  });

  it('failed_test_commands_present', () => {
    const d = passingDigest();
    d.validation = { ...d.validation, failed_test_command_count: 2, unexcused_failed_test_command_count: 2 };
    expect(codes(gate(d))).toEqual(['failed_test_commands_present']);
  });

  it('changed_files_budget_exceeded and added_lines_budget_exceeded', () => {
    const r = gate(passingDigest(), policyWith({ max_changed_files: 1, max_added_lines: 29 }));
    expect(r.failed_checks).toEqual([
      { code: 'changed_files_budget_exceeded', message: '2 changed files > max_changed_files 1' },
      { code: 'added_lines_budget_exceeded', message: '30 added lines > max_added_lines 29' },
    ]);
  });

  it('a digest without diff stats cannot confirm the budgets', () => {
    const d = passingDigest();
    d.changes = { ...d.changes, diff: null };
    expect(codes(gate(d))).toEqual(['changed_files_budget_exceeded', 'added_lines_budget_exceeded']);
  });

  it('skills_mode_mismatch', () => {
    expect(codes(gate(passingDigest(), policyWith({ skills_mode: 'agentpr' })))).toEqual(['skills_mode_mismatch']);
  });

  it('missing_required_skills in skills mode', () => {
    const policy = policyWith({ skills_mode: 'agentpr', required_skills: ['agentpr-implement-and-validate', 'agentpr-discovery'] });
    const d = passingDigest(policy);
    d.skills = { mode: 'agentpr', required: policy.required_skills, available: ['agentpr-discovery'], missing: ['agentpr-implement-and-validate'] };
    expect(gate(d, policy).failed_checks).toEqual([{ code: 'missing_required_skills', message: 'required skills missing: agentpr-implement-and-validate' }]);
    d.skills = { ...d.skills, available: null, missing: null };
    expect(codes(gate(d, policy))).toEqual(['missing_required_skills']);
    d.skills = { ...d.skills, available: ['agentpr-discovery', 'agentpr-implement-and-validate'], missing: [] };
    expect(gate(d, policy).ok).toBe(true);
  });

  it('reports every failing check at once, in SPEC order', () => {
    const d = passingDigest();
    d.classification = { ...d.classification, grade: 'RETRYABLE', reason_code: 'runtime_unknown_failure' };
    d.preflight = null;
    d.safety = { ...d.safety, violation_count: 1, violations: [] };
    d.validation = { ...d.validation, test_command_count: 0, unexcused_failed_test_command_count: 1 };
    d.changes = { ...d.changes, diff: null };
    const policy = policyWith({ skills_mode: 'agentpr', required_skills: ['x'] });
    expect(codes(gate(d, policy, false))).toEqual(PR_GATE_CHECKS.filter((c) => c !== 'missing_digest'));
  });
});
