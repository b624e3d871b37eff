import type { RunAgentStepPolicy } from '../policy.js';
import { RunDigestSchema, type RunDigest } from './digest.js';

/** Definition-of-done checks, in the order they are reported. */
export const PR_GATE_CHECKS = [
  'missing_contract',
  'missing_digest',
  'runtime_not_pass',
  'runtime_not_runtime_success',
  'preflight_not_ok',
  'safety_violation_present',
  'insufficient_test_evidence',
  'failed_test_commands_present',
  'changed_files_budget_exceeded',
  'added_lines_budget_exceeded',
  'skills_mode_mismatch',
  'missing_required_skills',
] as const;
export type PrGateCheck = (typeof PR_GATE_CHECKS)[number];

export interface PrGateInput {
  /** The latest run_digest (parsed JSON); validated here, so an unreadable one fails `missing_digest`. */
  digest: unknown;
  /** Where the digest came from (artifact uri), recorded in the snapshot. */
  digestRef?: string | null;
  hasContract: boolean;
  /** The run's policy now (with its repo override). */
  policy: RunAgentStepPolicy;
  /** The commit the PR would be opened from; the evidence is recorded against it. */
  headSha: string | null;
  now?: Date;
}

export interface PrGateResult {
  ok: boolean;
  failed_checks: Array<{ code: PrGateCheck; message: string }>;
  snapshot: {
    head_sha: string | null;
    evaluated_at: string;
    has_contract: boolean;
    digest_ref: string | null;
    digest_generated_at: string | null;
    digest_attempt_no: number | null;
    grade: string | null;
    reason_code: string | null;
    test_command_count: number | null;
    failed_test_command_count: number | null;
    changed_files: number | null;
    added_lines: number | null;
    skills_mode: string | null;
    policy: { min_test_commands: number; max_changed_files: number; max_added_lines: number; skills_mode: string; required_skills: string[] };
  };
}

const SUCCESS_CODES = new Set(['runtime_success', 'runtime_success_allowlisted_test_failures']);

/**
 * Pure: the caller reads the latest digest artifact, the contract's presence and the head SHA.
 * Allowlisted test failures count as success (the policy verified them as baseline noise).
 */
export function evaluatePrGate(input: PrGateInput): PrGateResult {
  const { policy } = input;
  const failed: PrGateResult['failed_checks'] = [];
  const fail = (code: PrGateCheck, message: string): void => {
    failed.push({ code, message });
  };
  if (!input.hasContract) fail('missing_contract', 'no contract artifact for this run; finish discovery (worker.discovery.completed) first');

  let digest: RunDigest | null = null;
  if (input.digest === null || input.digest === undefined) {
    fail('missing_digest', 'no run_digest for this run; run the agent step first');
  } else {
    const parsed = RunDigestSchema.safeParse(input.digest);
    if (parsed.success) digest = parsed.data;
    else fail('missing_digest', `the latest run_digest${input.digestRef ? ` (${input.digestRef})` : ''} is unreadable: ${parsed.error.issues[0]?.path.join('.') ?? ''} ${parsed.error.issues[0]?.message ?? ''}`.trim());
  }

  if (digest) {
    const c = digest.classification;
    if (c.grade !== 'PASS') fail('runtime_not_pass', `latest verdict is ${c.grade} (${c.reason_code}), not PASS`);
    if (!SUCCESS_CODES.has(c.reason_code)) fail('runtime_not_runtime_success', `latest reason_code is ${c.reason_code}, not runtime_success`);
    if (!digest.preflight) fail('preflight_not_ok', 'the digest has no preflight report');
    else if (!digest.preflight.ok) fail('preflight_not_ok', `preflight failed: ${(digest.preflight.checks ?? []).filter((x) => !x.ok).map((x) => x.name).join(', ') || digest.preflight.error || 'see the preflight report'}`);
    if (digest.safety.violation_count > 0) fail('safety_violation_present', `${digest.safety.violation_count} safety violation(s): ${digest.safety.violations.map((v) => v.rules.join('/')).join(', ')}`);
    const tests = digest.validation.test_command_count;
    if (tests < policy.min_test_commands) fail('insufficient_test_evidence', `${tests} test command(s) run; min_test_commands is ${policy.min_test_commands}`);
    const unexcused = digest.validation.unexcused_failed_test_command_count;
    if (unexcused > 0) fail('failed_test_commands_present', `${unexcused} failed test command(s) not on the allowlist`);
    const diff = digest.changes.diff;
    if (!diff) {
      fail('changed_files_budget_exceeded', 'the digest has no diff stats, so the changed-files budget cannot be confirmed');
      fail('added_lines_budget_exceeded', 'the digest has no diff stats, so the added-lines budget cannot be confirmed');
    } else {
      if (policy.max_changed_files > 0 && diff.changed_files > policy.max_changed_files) {
        fail('changed_files_budget_exceeded', `${diff.changed_files} changed files > max_changed_files ${policy.max_changed_files}`);
      }
      if (policy.max_added_lines > 0 && diff.added_lines > policy.max_added_lines) {
        fail('added_lines_budget_exceeded', `${diff.added_lines} added lines > max_added_lines ${policy.max_added_lines}`);
      }
    }
    if (digest.skills.mode !== policy.skills_mode) fail('skills_mode_mismatch', `the attempt ran with skills_mode ${digest.skills.mode}; policy says ${policy.skills_mode}`);
    if (policy.skills_mode === 'agentpr') {
      const required = [...new Set([...policy.required_skills, ...digest.skills.required])];
      if (required.length) {
        const available = digest.skills.available;
        const missing = available === null ? null : required.filter((r) => !available.includes(r));
        if (missing === null) fail('missing_required_skills', `required skills ${required.join(', ')} were not checked in the attempt`);
        else if (missing.length) fail('missing_required_skills', `required skills missing: ${missing.join(', ')}`);
      }
    }
  }

  return {
    ok: failed.length === 0,
    failed_checks: failed,
    snapshot: {
      head_sha: input.headSha,
      evaluated_at: (input.now ?? new Date()).toISOString(),
      has_contract: input.hasContract,
      digest_ref: input.digestRef ?? null,
      digest_generated_at: digest?.generated_at ?? null,
      digest_attempt_no: digest?.attempt.no ?? null,
      grade: digest?.classification.grade ?? null,
      reason_code: digest?.classification.reason_code ?? null,
      test_command_count: digest?.validation.test_command_count ?? null,
      failed_test_command_count: digest?.validation.unexcused_failed_test_command_count ?? null,
      changed_files: digest?.changes.diff?.changed_files ?? null,
      added_lines: digest?.changes.diff?.added_lines ?? null,
      skills_mode: digest?.skills.mode ?? null,
      policy: {
        min_test_commands: policy.min_test_commands,
        max_changed_files: policy.max_changed_files,
        max_added_lines: policy.max_added_lines,
        skills_mode: policy.skills_mode,
        required_skills: [...policy.required_skills],
      },
    },
  };
}
