import { z } from 'zod';
import { defineTool } from '../src/registry.js';
import { AttemptViewSchema, RunIdSchema, RunViewSchema } from '../src/core/models.js';
import { inspectRun, renderInspect } from '../src/worker/inspect.js';

export const inspectRunTool = defineTool({
  name: 'inspect-run',
  title: 'Inspect run',
  description:
    "Diagnose one run: a timeline of its events, step attempts and artifacts; the latest verdict with evidence and the manager recommendation; per-step totals (attempts, failures, time share); a worker still running in the server (latest command); and the manager's recorded decisions.",
  tier: 'read',
  annotations: { readOnlyHint: true, openWorldHint: false },
  cli: { positional: ['run_id'] },
  input: z.object({
    run_id: RunIdSchema,
    events_limit: z.number().int().min(1).max(10_000).default(1000).describe('How many events (oldest first) to put in the timeline'),
  }),
  output: z.object({
    run: RunViewSchema,
    active: z
      .object({
        run_id: z.string(),
        attempt_no: z.number().int(),
        started_at: z.string(),
        elapsed_ms: z.number(),
        pid: z.number().int().nullable(),
        latest_command: z.string().nullable(),
        lines: z.number().int(),
      })
      .nullable(),
    timeline: z.array(z.object({ at: z.string(), kind: z.enum(['event', 'attempt_started', 'attempt_finished', 'artifact']), summary: z.string(), ref: z.record(z.string(), z.unknown()) })),
    attempts: z.array(AttemptViewSchema),
    stage_totals: z.record(
      z.string(),
      z.object({ attempts: z.number().int(), succeeded: z.number().int(), failed: z.number().int(), running: z.number().int(), duration_ms: z.number(), share_pct: z.number() }),
    ),
    latest: z
      .object({
        attempt_no: z.number().int().nullable(),
        grade: z.string(),
        reason_code: z.string(),
        next_action: z.string(),
        evidence: z.array(z.string()),
        recommendation: z.object({ action: z.string(), priority: z.string(), reason: z.string() }),
        state_before: z.string().nullable(),
        state_after: z.string().nullable(),
        digest_uri: z.string(),
        insight_uri: z.string().nullable(),
      })
      .nullable(),
    digest_error: z.string().nullable(),
    decisions: z.object({ source: z.enum(['manager_decisions']).nullable(), rows: z.array(z.record(z.string(), z.unknown())) }),
  }),
  handler: (args, { app }) => {
    const report = inspectRun(app, args.run_id, { eventsLimit: args.events_limit });
    return { data: report, text: renderInspect(report) };
  },
});
