import { z } from 'zod';
import { defineTool } from '../src/registry.js';
import { OwnerSchema, RepoSchema, RunIdSchema } from '../src/core/models.js';
import { renderMetrics, skillsMetrics } from '../src/worker/inspect.js';

const Counts = z.object({
  attempts: z.number().int(),
  pass: z.number().int(),
  retryable: z.number().int(),
  human_review: z.number().int(),
  pass_rate_pct: z.number(),
});

/** Which digests the skills tools read (shared by skills-metrics and skills-feedback). */
export const DigestFilterInput = z.object({
  owner: OwnerSchema.optional(),
  repo: RepoSchema.optional(),
  run_id: RunIdSchema.optional(),
  limit: z.number().int().min(1).max(10_000).default(1000).describe('Most recent digests to read'),
});

export const SkillsMetricsOutput = z.object({
  scope: z.object({ owner: z.string().nullable(), repo: z.string().nullable(), run_id: z.string().nullable() }),
  digests: z.number().int(),
  unreadable: z.number().int(),
  overall: Counts,
  by_mode: z.record(z.string(), Counts),
  by_stage: z.record(z.string(), Counts),
  by_skill: z.record(z.string(), Counts.extend({ stages: z.array(z.string()) })),
  reasons: z.array(z.object({ reason_code: z.string(), count: z.number().int() })),
  missing_skills: z.array(z.object({ skill: z.string(), count: z.number().int() })),
  timeouts: z.number().int(),
});

export const skillsMetricsTool = defineTool({
  name: 'skills-metrics',
  title: 'Skills metrics',
  description:
    'Outcome counts and PASS rates from the stored run digests: overall, by skills mode, by stage (the state the worker ran in) and by skill (skills-mode attempts), with reason-code counts, missing-skill reports and timeouts. Filter by owner, repo or run.',
  tier: 'read',
  annotations: { readOnlyHint: true, openWorldHint: false },
  input: DigestFilterInput,
  output: SkillsMetricsOutput,
  handler: (args, { app }) => {
    const m = skillsMetrics(app, args);
    return { data: m, text: renderMetrics(m) };
  },
});
