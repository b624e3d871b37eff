import { z } from 'zod';
import { defineTool } from '../src/registry.js';
import { ApplyResultSchema, RunIdSchema } from '../src/core/models.js';
import { defaultIdempotencyKey } from '../src/core/events.js';
import { describeApply, IdempotencyKeySchema } from './_event-tool.js';

const EVENT = { merged: 'github.pr.merged', closed: 'github.pr.closed', reopened: 'github.pr.reopened' } as const;

export const recordPrState = defineTool({
  name: 'record-pr-state',
  title: 'Record PR merged, closed or reopened',
  description:
    "Record what happened to a run's pull request on GitHub. merged -> DONE (policy github.on_pr_merged: done, or wait_human -> NEEDS_HUMAN_REVIEW with reason pr_merged), with the merge SHA; closed without merging -> NEEDS_HUMAN_REVIEW with reason pr_closed; reopened -> a run stopped by the close returns to CI_WAIT. A PAUSED or busy run keeps it pending until it fits. The webhook and sync-github call this for you.",
  tier: 'write',
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: false },
  input: z.object({
    run_id: RunIdSchema,
    state: z.enum(['merged', 'closed', 'reopened']).describe('What happened to the PR'),
    merge_sha: z.string().regex(/^[0-9a-fA-F]{7,64}$/, { message: 'merge_sha must be a commit SHA (7 to 64 hex digits)' }).optional().describe('The merge commit (state merged)'),
    closed_at: z.string().max(64).optional().describe('When GitHub closed it (state closed); part of the default key'),
    idempotency_key: IdempotencyKeySchema,
  }),
  output: ApplyResultSchema,
  handler: (args, { app }) => {
    const run = app.service.getRun(args.run_id);
    const payload: Record<string, unknown> = { ...(run.pr_number ? { pr_number: run.pr_number } : {}) };
    if (args.state === 'merged') {
      payload.merge_sha = args.merge_sha ?? null;
      payload.to_state = app.policy.github.on_pr_merged === 'wait_human' ? 'NEEDS_HUMAN_REVIEW' : 'DONE';
    }
    if (args.state === 'closed' && args.closed_at) payload.closed_at = args.closed_at;
    const key = args.idempotency_key ?? defaultIdempotencyKey(EVENT[args.state], args.run_id, { ...payload, after_event_id: app.service.lastEventId(args.run_id) });
    const r = app.service.applyEvent({ run_id: args.run_id, event_type: EVENT[args.state], payload, idempotency_key: key });
    return { data: r, text: describeApply(r) };
  },
});
