import { z } from 'zod';
import { defineTool } from '../src/registry.js';
import type { App } from '../src/app.js';
import { UserInputError } from '../src/core/errors.js';
import { ApplyResultSchema, RunIdSchema, type RunView } from '../src/core/models.js';
import { githubClient } from '../src/github/client.js';
import { syncRun, type SyncResult } from '../src/github/sync.js';

const CheckSummarySchema = z.object({
  total: z.number().int(),
  green: z.number().int(),
  pending: z.number().int(),
  failed: z.number().int(),
  conclusion: z.string().nullable(),
  failing: z.array(z.string()),
  pending_names: z.array(z.string()),
});

const SyncResultSchema = z.object({
  run_id: z.string(),
  pr_number: z.number().int().nullable(),
  status: z.enum(['synced', 'rate_limited', 'error', 'skipped', 'busy', 'stale']),
  message: z.string(),
  busy: z
    .object({ step: z.string(), attempt_id: z.number().int(), holder: z.string(), since: z.string() })
    .optional()
    .describe('With status busy: the step that holds the run, and its holder'),
  head_sha: z.string().optional(),
  pr_state: z.string().optional(),
  checks: CheckSummarySchema.optional(),
  review: z.object({ state: z.enum(['approved', 'changes_requested']), review_id: z.number().int(), user: z.string().nullable() }).nullable().optional(),
  applied: z.array(ApplyResultSchema),
  would: z
    .array(z.object({ event_type: z.string(), outcome: z.string(), from_state: z.string(), to_state: z.string(), note: z.string().nullable() }))
    .optional(),
  retry_after_s: z.number().int().optional(),
});

const WAITING = ['CI_WAIT', 'REVIEW_WAIT'] as const;

export const syncGithub = defineTool({
  name: 'sync-github',
  title: 'Sync GitHub checks and reviews',
  description:
    "Read a linked PR's state, check runs, commit statuses (every page, and the overall state) and reviews through the GitHub API and apply them: a merged PR -> DONE (policy github.on_pr_merged), closed unmerged -> NEEDS_HUMAN_REVIEW (pr_closed), reopened -> CI_WAIT; any failed check on the PR's head -> ITERATING, any pending -> nothing, all green -> REVIEW_WAIT; a changes_requested review decision -> ITERATING. The PR's head is recorded. Keys come from GitHub ids, so a re-sync changes nothing. Without run_id, syncs every run in CI_WAIT or REVIEW_WAIT. dry_run shows what would change and writes nothing. loop repeats every interval_sec, max_loops times (the CLI may loop until stopped). A rate-limited answer is reported (retry after N s) and leaves the run unchanged. Each sync that writes holds the run's lease while it reads and applies (a github_sync attempt); a run whose lease another step holds (an agent, finish or another sync) is not synced but reported as busy, naming that step and its holder, and nothing is written. A run another writer changed while GitHub was read (a webhook delivery, a pause) is read again, up to 3 times, then reported stale with nothing written from the older read. Needs GITHUB_TOKEN or AGENTPR_GITHUB_TOKEN.",
  tier: 'write',
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: true },
  cli: { positional: ['run_id'] },
  input: z.object({
    run_id: RunIdSchema.optional().describe('Run to sync; omit to sync every run in CI_WAIT or REVIEW_WAIT'),
    limit: z.number().int().min(1).max(500).default(100).describe('At most this many runs when syncing all'),
    dry_run: z.boolean().default(false).describe('Read GitHub and report what would change; write nothing'),
    loop: z.boolean().default(false).describe('Sync again every interval_sec (fills in webhook deliveries that never arrived)'),
    interval_sec: z.number().int().min(1).max(86_400).default(60).describe('Seconds between passes with loop'),
    max_loops: z.number().int().min(1).max(100_000).optional().describe('Stop after this many passes; required with loop except on the CLI'),
  }),
  output: z.object({
    results: z.array(SyncResultSchema),
    rate_limited: z.boolean(),
    retry_after_s: z.number().int().nullable(),
    dry_run: z.boolean(),
    loops: z.number().int(),
  }),
  handler: async (args, { app, entry, signal }) => {
    if (args.loop && args.max_loops === undefined && entry !== 'cli') {
      throw new UserInputError('loop without max_loops runs until stopped, which only the CLI can do; pass max_loops (e.g. 10)');
    }
    const passes = args.loop ? (args.max_loops ?? Number.POSITIVE_INFINITY) : 1;
    let results: SyncResult[] = [];
    let loops = 0;
    for (; loops < passes; ) {
      results = await syncPass(app, args);
      loops++;
      if (loops < passes) {
        app.logger.info({ loop: loops, runs: results.length }, `sync-github loop: next pass in ${args.interval_sec} s`);
        if (!(await sleep(args.interval_sec * 1000, signal))) break;
      }
    }
    const retryAfter = results.find((r) => r.status === 'rate_limited')?.retry_after_s ?? null;
    const text = [
      ...(args.dry_run ? ['dry run: nothing was written'] : []),
      ...(args.loop ? [`${loops} pass${loops === 1 ? '' : 'es'}; the last one:`] : []),
      ...(results.length
        ? results.map((r) => `${r.run_id}${r.pr_number ? ` PR #${r.pr_number}` : ''}: ${r.status}: ${r.message}`)
        : ['no runs in CI_WAIT or REVIEW_WAIT to sync']),
    ].join('\n');
    return { data: { results, rate_limited: retryAfter !== null, retry_after_s: retryAfter, dry_run: args.dry_run, loops }, text };
  },
});

async function syncPass(app: App, args: { run_id?: string; limit: number; dry_run: boolean }): Promise<SyncResult[]> {
  const runs: RunView[] = args.run_id ? [app.service.getRun(args.run_id)] : app.service.listRuns({ state: [...WAITING], limit: args.limit }).runs;
  const results: SyncResult[] = [];
  if (!runs.length) return results;
  const client = await githubClient(app.logger, app.env);
  let limited: SyncResult | undefined;
  for (const run of runs) {
    if (limited) {
      // The quota is shared: asking again for the next run would only be refused again.
      results.push({ run_id: run.run_id, pr_number: run.pr_number, status: 'rate_limited', applied: [], retry_after_s: limited.retry_after_s, message: `not synced: ${limited.message}` });
      continue;
    }
    const r = await syncRun(app, client, run, { dryRun: args.dry_run });
    if (r.status === 'rate_limited') limited = r;
    results.push(r);
  }
  return results;
}

/** Resolves true after `ms`, false at once when the call is cancelled. */
function sleep(ms: number, signal?: AbortSignal): Promise<boolean> {
  if (signal?.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      resolve(false);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
