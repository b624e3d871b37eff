import { z } from 'zod';

/**
 * Manager policy. The zod schema is the single source of the defaults; the JSON file
 * `policies/manager_policy.json` repeats them for people to copy and edit. Loading, deep merge,
 * repo overrides and the file's error messages live in `src/policy-file.ts`.
 */
export const STATE_AFTER_VERDICT = ['UNCHANGED', 'LOCAL_VALIDATING', 'FAILED_RETRYABLE', 'NEEDS_HUMAN_REVIEW', 'FAILED_TERMINAL', 'PAUSED'] as const;

export const RunAgentStepPolicySchema = z.strictObject({
  codex_sandbox: z.enum(['read-only', 'workspace-write', 'danger-full-access']).default('workspace-write'),
  codex_model: z.string().min(1).refine((v) => !v.startsWith('-'), "codex_model must not start with '-' (it would be read as an option)").optional(),
  /** Extra `codex exec` flags (e.g. ["-c", "model_reasoning_effort=\"high\""]); flags agentpr sets itself are refused. */
  codex_extra_args: z.array(z.string().min(1)).max(40).default([]),
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
  /** Extra read-only roots the safety contract names. */
  allowed_read_only_roots: z.array(z.string()).default([]),
  required_skills: z.array(z.string()).default([]),
  /** Longest stdout line kept whole; longer ones are stored as their first and last 2 KiB and counted. */
  max_line_bytes: z.number().int().min(4096).max(256 * 1024 * 1024).default(8 * 1024 * 1024),
  /** Stored event stream per attempt; past it, lines are counted but not stored (the digest says so). */
  max_stream_bytes: z.number().int().min(65_536).default(256 * 1024 * 1024),
  /** Resource limits of the worker (prlimit); null or absent: unlimited. */
  worker_limits: z
    .strictObject({
      address_space_mb: z.number().int().min(64).nullable().default(null),
      cpu_seconds: z.number().int().min(1).nullable().default(null),
      open_files: z.number().int().min(16).nullable().default(null),
      processes: z.number().int().min(8).nullable().default(null),
    })
    .default({ address_space_mb: null, cpu_seconds: null, open_files: null, processes: null }),
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
  /** The audit log is rotated (file.1, file.2, ...) when it grows past this. */
  audit_log_max_bytes: z.number().int().min(4096).default(10 * 1024 * 1024),
  /** Rotated audit files kept. */
  audit_log_keep: z.number().int().min(1).max(100).default(3),
});

/** How runs follow their pull request on GitHub. */
export const GitHubPolicySchema = z.strictObject({
  /** A merged PR ends the run (DONE), or hands it to a person (NEEDS_HUMAN_REVIEW, reason pr_merged). */
  on_pr_merged: z.enum(['done', 'wait_human']).default('done'),
  /** Sent when agentpr opens a PR: lets the upstream maintainers push to the fork's branch. */
  maintainer_can_modify: z.boolean().default(true),
  /** A run in CI_WAIT or REVIEW_WAIT with no GitHub observation for this long is synced again (manager, sync --loop). */
  resync_after_sec: z.number().int().min(1).default(900),
  /** Attempts of a queued follow-up (the sync after a green check) before it is given up as failed. */
  followup_max_attempts: z.number().int().min(1).max(100).default(8),
  /** After an iteration's push to a linked PR: auto -> straight back to CI_WAIT; confirm -> stays PUSHED until link-pr. */
  iteration_push: z.enum(['auto', 'confirm']).default('auto'),
  /** Iterations (pushes after the PR was opened) per run before a person decides (NEEDS_HUMAN_REVIEW, max_iterations). */
  max_iterations: z.number().int().min(0).max(100).default(3),
});

/** Operator-only settings of the trust boundaries (docs/security.md). */
export const SecurityPolicySchema = z.strictObject({
  /** Extra directories path inputs from MCP, Telegram and the manager may name (besides the agentpr home and the workspace root). */
  file_roots: z.array(z.string().min(1).refine((p) => p.startsWith('/'), 'file_roots entries must be absolute paths')).default([]),
  /** Worker environment names an operator override file may set although they change how programs start or connect (NODE_OPTIONS, *_BASE_URL, ...). */
  env_override_allowlist: z.array(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'environment variable names are letters, digits and _')).default([]),
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
  github: GitHubPolicySchema.default(() => GitHubPolicySchema.parse({})),
  manager: ManagerPolicySchema.default(() => ManagerPolicySchema.parse({})),
  security: SecurityPolicySchema.default(() => SecurityPolicySchema.parse({})),
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
