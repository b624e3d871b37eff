import { z } from 'zod';
import { defineTool } from '../src/registry.js';
import { RunIdSchema, RunViewSchema } from '../src/core/models.js';
import { EvidenceSchema, GateSchema, approveOpenPr } from '../src/github/pr-open.js';

const ApprovalSchema = z.object({
  approval_id: z.number().int(),
  run_id: z.string(),
  request_id: z.string(),
  approved_by: z.string(),
  entry: z.string(),
  approved_at: z.string(),
  head_sha: z.string().nullable(),
  gate_ok: z.boolean(),
  gate: z.record(z.string(), z.unknown()),
  bypass: z.boolean(),
  pr_number: z.number().int(),
  pr_url: z.string(),
  pr_existing: z.boolean(),
});

export const approveOpenPrTool = defineTool({
  name: 'approve-open-pr',
  title: 'Approve and open the PR',
  description:
    "Second step: with confirm=true and the token from request-open-pr (case-insensitive, before it expires; over MCP a client that supports elicitation may leave the token out, and the person is asked to confirm in the client), re-checks the definition-of-done gate on the latest run_digest and that the branch head is still the commit the evidence describes, then opens the pull request on GitHub (an open PR for the same head counts), links it (-> CI_WAIT) and records who approved it, through which entry, when, at which head SHA, with the gate result. A failing gate refuses with every failed check unless allow_dod_bypass is given (the bypass is recorded). Already linked -> status already_linked.",
  tier: 'admin',
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: true },
  cli: { positional: ['run_id'] },
  input: z.object({
    run_id: RunIdSchema,
    confirm: z.boolean().describe('Must be true: this opens a pull request on GitHub'),
    token: z
      .string()
      .min(1)
      .max(32)
      .optional()
      .describe('Confirm token from request-open-pr; over MCP it may be left out when the client supports elicitation, and the person is asked to confirm instead'),
    request_id: z.string().min(1).max(64).optional().describe('The request to approve; default the latest (an older one is refused as superseded)'),
    allow_expired: z.boolean().default(false).describe('Accept an expired request'),
    allow_dod_bypass: z.boolean().default(false).describe('Open the PR although the definition-of-done gate fails; the bypass is recorded'),
  }),
  output: z.object({
    status: z.enum(['opened', 'existing', 'already_linked']),
    run: RunViewSchema,
    request_id: z.string(),
    pr_number: z.number().int(),
    pr_url: z.string().nullable(),
    approval: ApprovalSchema.nullable(),
    gate: GateSchema.nullable(),
    evidence: EvidenceSchema.nullable(),
  }),
  handler: async (args, { app, entry, actor, confirmWithPerson }) => {
    const o = await approveOpenPr(app, args, { entry, actor, confirmWithPerson });
    const a = o.approval;
    const text =
      o.status === 'already_linked'
        ? `${o.run.run_id} is already linked to PR #${o.pr_number}${o.pr_url ? ` (${o.pr_url})` : ''}; state ${o.run.state}`
        : [
            `${o.status === 'existing' ? 'linked the open' : 'opened'} PR #${o.pr_number}: ${o.pr_url}`,
            `${o.run.run_id}: PUSHED -> ${o.run.state}`,
            a
              ? `approved by ${a.approved_by} via ${a.entry} at ${a.approved_at}, head ${a.head_sha?.slice(0, 12) ?? '-'}, gate ${a.gate_ok ? 'ok' : `FAILED (${(o.gate?.failed_checks ?? []).map((c) => c.code).join(', ')}) - bypassed`}`
              : '',
          ]
            .filter(Boolean)
            .join('\n');
    return { data: { ...o }, text };
  },
});
