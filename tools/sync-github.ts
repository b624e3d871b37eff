import { z } from 'zod';
import { defineTool } from '../src/registry.js';
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
  status: z.enum(['synced', 'rate_limited', 'error', 'skipped']),
  message: z.string(),
  head_sha: z.string().optional(),
  pr_state: z.string().optional(),
  checks: CheckSummarySchema.optional(),
  review: z.object({ state: z.enum(['approved', 'changes_requested']), review_id: z.number().int(), user: z.string().nullable() }).nullable().optional(),
  applied: z.array(ApplyResultSchema),
  retry_after_s: z.number().int().optional(),
});

export const syncGithub = defineTool({
  name: 'sync-github',
  title: 'Sync GitHub checks and reviews',
  description:
    "Read a linked PR's check runs, commit statuses and reviews through the GitHub API and apply them: any failed check -> github.check.completed failure (-> ITERATING), any pending -> nothing, all green -> success (-> REVIEW_WAIT); a changes_requested review decision -> ITERATING. Keys come from GitHub ids, so a re-sync changes nothing. Without run_id, syncs every run in CI_WAIT or REVIEW_WAIT. A rate-limited answer is reported (retry after N s) and leaves the run unchanged. Needs GITHUB_TOKEN or AGENTPR_GITHUB_TOKEN.",
  tier: 'write',
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: true },
  cli: { positional: ['run_id'] },
  input: z.object({
    run_id: RunIdSchema.optional().describe('Run to sync; omit to sync every run in CI_WAIT or REVIEW_WAIT'),
    limit: z.number().int().min(1).max(500).default(100).describe('At most this many runs when syncing all'),
  }),
  output: z.object({
    results: z.array(SyncResultSchema),
    rate_limited: z.boolean(),
    retry_after_s: z.number().int().nullable(),
  }),
  handler: async (args, { app }) => {
    const runs: RunView[] = args.run_id
      ? [app.service.getRun(args.run_id)]
      : app.service.listRuns({ state: ['CI_WAIT', 'REVIEW_WAIT'], limit: args.limit }).runs;
    const results: SyncResult[] = [];
    if (runs.length) {
      const client = await githubClient(app.logger, app.env);
      let limited: SyncResult | undefined;
      for (const run of runs) {
        if (limited) {
          // The quota is shared: asking again for the next run would only be refused again.
          results.push({ run_id: run.run_id, pr_number: run.pr_number, status: 'rate_limited', applied: [], retry_after_s: limited.retry_after_s, message: `not synced: ${limited.message}` });
          continue;
        }
        const r = await syncRun(app, client, run);
        if (r.status === 'rate_limited') limited = r;
        results.push(r);
      }
    }
    const retryAfter = results.find((r) => r.status === 'rate_limited')?.retry_after_s ?? null;
    const text = results.length
      ? results.map((r) => `${r.run_id}${r.pr_number ? ` PR #${r.pr_number}` : ''}: ${r.status}: ${r.message}`).join('\n')
      : 'no runs in CI_WAIT or REVIEW_WAIT to sync';
    return { data: { results, rate_limited: retryAfter !== null, retry_after_s: retryAfter }, text };
  },
});
