import { z } from 'zod';

/**
 * Manager policy (SPEC §8). The zod schema is the single source of the defaults; the JSON file
 * `policies/manager_policy.json` repeats them for people to copy and edit. Loading, deep merge,
 * repo overrides and the file's error messages live in `src/policy-file.ts`.
 */
export const STATE_AFTER_VERDICT = ['UNCHANGED', 'LOCAL_VALIDATING', 'FAILED_RETRYABLE', 'NEEDS_HUMAN_REVIEW', 'FAILED_TERMINAL', 'PAUSED'] as const;

export const RunAgentStepPolicySchema = z.strictObject({
  codex_sandbox: z.enum(['read-only', 'workspace-write', 'danger-full-access']).default('workspace-write'),
  codex_model: z.string().min(1).optional(),
  skills_mode: z.enum(['off', 'agentpr']).default('off'),
  max_agent_seconds: z.number().int().min(1).max(86_400).default(900),
  max_changed_files: z.number().int().min(0).default(6),
  max_added_lines: z.number().int().min(0).default(120),
  max_retryable_attempts: z.number().int().min(0).default(3),
  min_test_commands: z.number().int().min(0).default(1),
  known_test_failure_allowlist: z.array(z.string()).default([]),
  success_event_stream_sample_pct: z.number().int().min(0).max(100).default(15),
  success_state: z.enum(STATE_AFTER_VERDICT).default('LOCAL_VALIDATING'),
  on_retryable_state: z.enum(STATE_AFTER_VERDICT).default('FAILED_RETRYABLE'),
  on_human_review_state: z.enum(STATE_AFTER_VERDICT).default('NEEDS_HUMAN_REVIEW'),
  /** Extra read-only roots the safety contract names (SPEC §4; seed constraint 27). */
  allowed_read_only_roots: z.array(z.string()).default([]),
  required_skills: z.array(z.string()).default([]),
});
export type RunAgentStepPolicy = z.infer<typeof RunAgentStepPolicySchema>;

export const TelegramPolicySchema = z.strictObject({
  poll_timeout_sec: z.number().int().min(0).max(50).default(30),
  idle_sleep_sec: z.number().min(0).max(60).default(2),
  list_limit: z.number().int().min(1).max(200).default(20),
  rate_limit_window_sec: z.number().int().min(1).default(60),
  rate_limit_per_chat: z.number().int().min(1).default(12),
  rate_limit_global: z.number().int().min(1).default(120),
  audit_log_file: z.string().min(1).default('telegram_audit.jsonl'),
});

export const WebhookPolicySchema = z.strictObject({
  max_payload_bytes: z.number().int().min(1024).default(1_048_576),
  audit_log_file: z.string().min(1).default('github_webhook_audit.jsonl'),
});

export const ManagerPolicySchema = z.strictObject({
  max_actions_per_tick: z.number().int().min(1).default(20),
  max_concurrent_agent_steps: z.number().int().min(1).default(1),
  /** After a failed model request, ticks let the rules decide for this long before asking again. */
  model_cooldown_sec: z.number().int().min(0).max(86_400).default(300),
});

/**
 * Per-repo overrides: a partial run_agent_step, keyed by lower-case owner/repo. Built from the
 * fields without their defaults: zod 4's `.partial()` keeps `.default()`, which would fill every
 * unnamed field with the built-in value and silently undo the file's own settings.
 */
export const RepoOverrideSchema = z.strictObject(
  Object.fromEntries(
    Object.entries(RunAgentStepPolicySchema.shape).map(([k, s]) => [k, (s instanceof z.ZodDefault ? s.unwrap() : s).optional()]),
  ) as unknown as { [K in keyof typeof RunAgentStepPolicySchema.shape]: z.ZodOptional<z.ZodType<z.output<(typeof RunAgentStepPolicySchema.shape)[K]>>> },
);

export const PolicySchema = z.strictObject({
  run_agent_step: RunAgentStepPolicySchema.extend({
    repo_overrides: z.record(z.string().regex(/^[a-z0-9][a-z0-9-]*\/[a-z0-9._-]+$/, 'repo_overrides keys are lower-case owner/repo'), RepoOverrideSchema).default({}),
  }).default(() => RunAgentStepPolicySchema.extend({ repo_overrides: z.record(z.string(), RepoOverrideSchema).default({}) }).parse({})),
  telegram_bot: TelegramPolicySchema.default(() => TelegramPolicySchema.parse({})),
  github_webhook: WebhookPolicySchema.default(() => WebhookPolicySchema.parse({})),
  manager: ManagerPolicySchema.default(() => ManagerPolicySchema.parse({})),
});
export type Policy = z.infer<typeof PolicySchema>;

export const DEFAULT_POLICY: Policy = PolicySchema.parse({});

/** The run_agent_step policy for one repository: built-ins, then the file, then its repo override. */
export function agentPolicyFor(policy: Policy, owner?: string, repo?: string): RunAgentStepPolicy {
  const { repo_overrides, ...base } = policy.run_agent_step;
  const key = owner && repo ? `${owner}/${repo}`.toLowerCase() : undefined;
  const override = key ? repo_overrides[key] : undefined;
  return override ? { ...base, ...stripUndefined(override) } : base;
}

function stripUndefined<T extends Record<string, unknown>>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
