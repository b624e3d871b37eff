import { z } from 'zod';
import { defineTool } from '../src/registry.js';
import { AttemptViewSchema, RunIdSchema, RunViewSchema } from '../src/core/models.js';
import { inspectRun, renderInspect } from '../src/worker/inspect.js';
import { inspectWarnings, logTails, recommendedActions, stepTimings } from '../src/worker/inspect-advice.js';

export const inspectRunTool = defineTool({
  name: 'inspect-run',
  title: 'Inspect run',
  description:
    "Diagnose one run: a timeline of its events, step attempts and artifacts; the latest verdict with evidence and the manager recommendation; per-step totals (attempts, failures, time share) and p50/p90 durations; a worker still running in the server (latest command); the manager's recorded decisions; recommended next commands; warnings; and, with include_log_tails, the last lines of the newest attempts' logs.",
  tier: 'read',
  annotations: { readOnlyHint: true, openWorldHint: false },
  cli: { positional: ['run_id'] },
  input: z.object({
    run_id: RunIdSchema,
    events_limit: z.number().int().min(1).max(10_000).default(1000).describe('How many events (oldest first) to put in the timeline'),
    include_log_tails: z.boolean().default(false).describe("Add the last lines of the 3 newest attempts' stdout/stderr logs (secrets redacted)"),
    log_tail_lines: z.number().int().min(1).max(500).default(20).describe('Lines per log tail (default 20)'),
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
    step_timings: z.record(z.string(), z.object({ finished: z.number().int(), p50_ms: z.number(), p90_ms: z.number(), max_ms: z.number() })),
    recommended_actions: z.array(z.string()),
    warnings: z.array(z.string()),
    log_tails: z
      .array(
        z.object({
          step: z.string(),
          attempt_no: z.number().int(),
          stream: z.enum(['stdout', 'stderr']),
          path: z.string(),
          lines: z.array(z.string()).nullable(),
          error: z.string().nullable(),
        }),
      )
      .nullable(),
  }),
  handler: (args, { app }) => {
    const report = inspectRun(app, args.run_id, { eventsLimit: args.events_limit });
    const step_timings = stepTimings(report.attempts);
    const recommended_actions = recommendedActions(app, report.run, report.latest);
    const warnings = inspectWarnings(app, report);
    const log_tails = args.include_log_tails ? logTails(report.attempts, args.log_tail_lines) : null;
    const text = [
      renderInspect(report),
      ...(Object.keys(step_timings).length
        ? ['step timings (finished attempts):', ...Object.entries(step_timings).map(([s, t]) => `  ${s}: n=${t.finished} p50 ${t.p50_ms} ms, p90 ${t.p90_ms} ms, max ${t.max_ms} ms`)]
        : []),
      ...(warnings.length ? ['warnings:', ...warnings.map((w) => `  ! ${w}`)] : []),
      ...(recommended_actions.length ? ['recommended:', ...recommended_actions.map((a) => `  ${a}`)] : []),
      ...(log_tails ?? []).flatMap((t) => [`log tail ${t.step}#${t.attempt_no} ${t.stream} (${t.path}):`, ...(t.lines ?? [`  (unreadable: ${t.error})`]).map((l) => `  | ${l}`)]),
    ].join('\n');
    return { data: { ...report, step_timings, recommended_actions, warnings, log_tails }, text };
  },
});
