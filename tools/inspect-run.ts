import { z } from 'zod';
import { defineTool } from '../src/registry.js';
import { AttemptViewSchema, RunIdSchema, RunViewSchema } from '../src/core/models.js';
import type { App } from '../src/app.js';
import { inspectRun, renderInspect } from '../src/worker/inspect.js';
import { inspectWarnings, logTails, recommendedActions, stepTimings } from '../src/worker/inspect-advice.js';
import { describeHolder } from '../src/store/holder.js';

export const inspectRunTool = defineTool({
  name: 'inspect-run',
  title: 'Inspect run',
  description:
    "Diagnose one run: a timeline of its events, step attempts and artifacts; the latest verdict with evidence and the manager recommendation; per-step totals (attempts, failures, time share) and p50/p90 durations; a worker still running in the server (latest command); the step holding the run's lease and its process (host, pid, since, heartbeat); the manager's recorded decisions; recommended next commands; warnings; and, with include_log_tails, the last lines of the newest attempts' logs.",
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
    lease: z
      .object({
        step: z.string(),
        attempt_id: z.number().int(),
        holder: z.string(),
        host: z.string(),
        pid: z.number().int(),
        acquired_at: z.string(),
        heartbeat_at: z.string(),
        expires_at: z.string(),
      })
      .nullable()
      .describe("The step holding the run's lease (any step: prepare, preflight, agent, finish, pr_create, github_sync) and its process; null when none"),
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
    github: z.object({
      heads: z.array(z.object({ head_sha: z.string(), head_repo: z.string().nullable(), source: z.string(), recorded_at: z.string() })),
      pr_state: z.string().nullable(),
      last_observed_at: z.string().nullable(),
      pending: z.array(z.object({ event_type: z.string(), arrived_state: z.string(), received_at: z.string(), resolution: z.string().nullable() })),
      followups: z.array(z.object({ followup_id: z.number().int(), status: z.string(), attempts: z.number().int(), reason: z.string(), last_error: z.string().nullable() })),
      iterations: z.array(z.object({ round: z.number().int(), head_sha: z.string(), built_at: z.string(), failed_checks: z.number().int(), review_comments: z.number().int(), fingerprints: z.array(z.string()), packet: z.string() })),
    }),
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
    const github = githubSection(app, args.run_id);
    const step_timings = stepTimings(report.attempts);
    const recommended_actions = recommendedActions(app, report.run, report.latest);
    const warnings = inspectWarnings(app, report);
    const log_tails = args.include_log_tails ? logTails(report.attempts, args.log_tail_lines) : null;
    const held = app.service.leases.get(args.run_id);
    const lease = held
      ? { step: held.step, attempt_id: held.attempt_id, holder: describeHolder(held.holder), host: held.holder.host, pid: held.holder.pid, acquired_at: held.acquired_at, heartbeat_at: held.heartbeat_at, expires_at: held.expires_at }
      : null;
    const githubLines = [
      ...github.iterations.map((i) => `iteration round ${i.round} at ${i.head_sha.slice(0, 12)}: ${i.failed_checks} failed check(s), ${i.review_comments} review comment(s)${i.fingerprints.length ? ` [${i.fingerprints.join(', ')}]` : ''}`),
      ...github.pending.filter((p) => p.resolution === null).map((p) => `pending GitHub observation: ${p.event_type} (arrived in ${p.arrived_state} at ${p.received_at})`),
      ...github.followups.filter((f) => f.status !== 'done').map((f) => `queued sync ${f.followup_id}: ${f.status}, ${f.attempts} attempt(s)${f.last_error ? `, last error: ${f.last_error}` : ''}`),
    ];
    const text = [
      renderInspect(report),
      ...(lease ? [`lease: ${lease.step} (attempt ${lease.attempt_id}) held by ${lease.holder} since ${lease.acquired_at}, heartbeat ${lease.heartbeat_at}, expires ${lease.expires_at}`] : []),
      ...(githubLines.length ? ['', 'GitHub:', ...githubLines.map((l) => `  ${l}`)] : []),
      ...(Object.keys(step_timings).length
        ? ['step timings (finished attempts):', ...Object.entries(step_timings).map(([s, t]) => `  ${s}: n=${t.finished} p50 ${t.p50_ms} ms, p90 ${t.p90_ms} ms, max ${t.max_ms} ms`)]
        : []),
      ...(warnings.length ? ['warnings:', ...warnings.map((w) => `  ! ${w}`)] : []),
      ...(recommended_actions.length ? ['recommended:', ...recommended_actions.map((a) => `  ${a}`)] : []),
      ...(log_tails ?? []).flatMap((t) => [`log tail ${t.step}#${t.attempt_no} ${t.stream} (${t.path}):`, ...(t.lines ?? [`  (unreadable: ${t.error})`]).map((l) => `  | ${l}`)]),
    ].join('\n');
    return { data: { ...report, lease, github, step_timings, recommended_actions, warnings, log_tails }, text };
  },
});

/** The run's PR as agentpr followed it: heads, pending observations, queued syncs, iteration rounds. */
function githubSection(app: App, runId: string) {
  const gh = app.service.github;
  const info = gh.github(runId);
  return {
    heads: gh.heads(runId).map((h) => ({ head_sha: h.head_sha, head_repo: h.head_owner && h.head_repo ? `${h.head_owner}/${h.head_repo}` : null, source: h.source, recorded_at: h.recorded_at })),
    pr_state: info?.pr_state ?? null,
    last_observed_at: info?.last_observed_at ?? null,
    pending: gh.pending(runId).map((p) => ({ event_type: p.event_type, arrived_state: p.arrived_state, received_at: p.received_at, resolution: p.resolution })),
    followups: gh.followups({ run_id: runId }).map((f) => ({ followup_id: f.followup_id, status: f.status, attempts: f.attempts, reason: f.reason, last_error: f.last_error })),
    iterations: app.service.listArtifacts(runId, 'iteration_packet').map((a) => ({
      round: Number(a.metadata.round ?? 0),
      head_sha: String(a.metadata.head_sha ?? ''),
      built_at: a.created_at,
      failed_checks: Number(a.metadata.failed_checks ?? 0),
      review_comments: Number(a.metadata.review_comments ?? 0),
      fingerprints: Array.isArray(a.metadata.fingerprints) ? a.metadata.fingerprints.filter((f): f is string => typeof f === 'string') : [],
      packet: a.uri,
    })),
  };
}
