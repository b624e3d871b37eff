import { z } from 'zod';
import { RunStateSchema } from './states.js';
import { RUN_ID_PATTERN } from './ids.js';

/** Field schemas shared by tools, the service and adapters, named as in the docs. */
export const RunIdSchema = z
  .string()
  .regex(RUN_ID_PATTERN, {
    message: "run_id must be 'run_' followed by 12 hex digits (e.g. run_0123456789ab) or a name of lower-case letters, digits, '_', '.', '-' starting with a letter or digit, at most 64 characters (e.g. calib_mem0_r1)",
  })
  .describe('Run id: run_ + 12 hex digits, or a name chosen at create-run (e.g. calib_mem0_r1)');

export const OwnerSchema = z
  .string()
  .regex(/^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$/, {
    message: 'owner must be a GitHub user or organisation name (letters, digits, dashes; at most 39 characters)',
  })
  .describe('GitHub owner (user or organisation)');

export const RepoSchema = z
  .string()
  .regex(/^(?!\.\.?$)[A-Za-z0-9._-]{1,100}$/, {
    message: 'repo must be a GitHub repository name (letters, digits, ., _, -; at most 100 characters)',
  })
  .describe('GitHub repository name');

export const RunViewSchema = z.object({
  run_id: z.string(),
  owner: z.string(),
  repo: z.string(),
  state: RunStateSchema,
  last_error: z.string().nullable(),
  prompt_version: z.string(),
  mode: z.string(),
  budget: z.record(z.string(), z.unknown()),
  workspace_dir: z.string(),
  pr_number: z.number().int().nullable(),
  created_at: z.string(),
  updated_at: z.string(),
});
export type RunView = z.infer<typeof RunViewSchema>;

export const EventViewSchema = z.object({
  event_id: z.number().int(),
  run_id: z.string(),
  event_type: z.string(),
  idempotency_key: z.string(),
  payload: z.record(z.string(), z.unknown()),
  from_state: z.string().nullable(),
  to_state: z.string(),
  outcome: z.string(),
  note: z.string().nullable(),
  created_at: z.string(),
});
export type EventView = z.infer<typeof EventViewSchema>;

export const ArtifactViewSchema = z.object({
  artifact_id: z.number().int(),
  run_id: z.string(),
  artifact_type: z.string(),
  uri: z.string(),
  metadata: z.record(z.string(), z.unknown()),
  created_at: z.string(),
});
export type ArtifactView = z.infer<typeof ArtifactViewSchema>;

export const AttemptViewSchema = z.object({
  attempt_id: z.number().int(),
  run_id: z.string(),
  step: z.string(),
  attempt_no: z.number().int(),
  status: z.string(),
  exit_code: z.number().int().nullable(),
  reason_code: z.string().nullable(),
  stdout_log: z.string().nullable(),
  stderr_log: z.string().nullable(),
  duration_ms: z.number().int().nullable(),
  metadata: z.record(z.string(), z.unknown()),
  started_at: z.string(),
  finished_at: z.string().nullable(),
});
export type AttemptView = z.infer<typeof AttemptViewSchema>;

export const ApplyResultSchema = z.object({
  run_id: z.string(),
  event_id: z.number().int().nullable(),
  event_type: z.string(),
  idempotency_key: z.string(),
  duplicate: z.boolean(),
  outcome: z.enum(['applied', 'noop', 'ignored', 'duplicate']),
  from_state: RunStateSchema,
  state: RunStateSchema,
  last_error: z.string().nullable(),
  note: z.string().nullable(),
});
export type ApplyResult = z.infer<typeof ApplyResultSchema>;

export const STEPS = ['preflight', 'prepare', 'agent', 'finish', 'pr_create', 'github_sync'] as const;
export const StepSchema = z.enum(STEPS);
export type Step = z.infer<typeof StepSchema>;
