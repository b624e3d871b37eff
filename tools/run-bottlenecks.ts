import { z } from 'zod';
import { defineTool } from '../src/registry.js';
import { OwnerSchema, RepoSchema } from '../src/core/models.js';
import { renderBottlenecks, runBottlenecks } from '../src/worker/inspect.js';

export const runBottlenecksTool = defineTool({
  name: 'run-bottlenecks',
  title: 'Run bottlenecks',
  description:
    'Where time goes across runs: per-step totals (attempts, failures, average and max duration, share), the slowest step attempts, and the slowest worker commands and command categories from the run digests. Filter by owner and/or repo.',
  tier: 'read',
  annotations: { readOnlyHint: true, openWorldHint: false },
  input: z.object({
    owner: OwnerSchema.optional(),
    repo: RepoSchema.optional(),
    limit: z.number().int().min(1).max(100).default(10).describe('How many slowest attempts and commands to list'),
  }),
  output: z.object({
    scope: z.object({ owner: z.string().nullable(), repo: z.string().nullable() }),
    runs: z.number().int(),
    steps: z.array(z.object({ step: z.string(), attempts: z.number().int(), failed: z.number().int(), total_ms: z.number(), avg_ms: z.number(), max_ms: z.number(), share_pct: z.number() })),
    slowest_attempts: z.array(
      z.object({ run_id: z.string(), repo: z.string(), step: z.string(), attempt_no: z.number().int(), status: z.string(), duration_ms: z.number(), started_at: z.string() }),
    ),
    slowest_commands: z.array(
      z.object({ run_id: z.string(), attempt_no: z.number().int().nullable(), command: z.string(), category: z.string(), duration_ms: z.number(), exit_code: z.number().int().nullable() }),
    ),
    command_categories: z.array(z.object({ category: z.string(), count: z.number().int(), duration_ms: z.number(), share_pct: z.number() })),
    digests_read: z.number().int(),
    digests_unreadable: z.number().int(),
  }),
  handler: (args, { app }) => {
    const r = runBottlenecks(app, args);
    return { data: r, text: renderBottlenecks(r) };
  },
});
