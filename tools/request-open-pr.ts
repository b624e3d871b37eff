import { z } from 'zod';
import { defineTool } from '../src/registry.js';
import { RunIdSchema } from '../src/core/models.js';
import { EvidenceSchema, GateSchema, requestOpenPr } from '../src/github/pr-open.js';

export const requestOpenPrTool = defineTool({
  name: 'request-open-pr',
  title: 'Request to open a PR',
  description:
    'First step of opening a pull request for a PUSHED run: stores a pr_open_request with a short confirm token and its expiry, and shows the definition-of-done gate result now (what would block the PR) and whether the branch head still matches the evidence. Nothing is sent to GitHub; an admin opens the PR with approve-open-pr and the token.',
  tier: 'write',
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false },
  cli: { positional: ['run_id'] },
  paths: ['body_file'],
  input: z.object({
    run_id: RunIdSchema,
    title: z
      .string()
      .trim()
      .min(1)
      .max(256)
      .refine((t) => !/[\r\n]/.test(t), 'title must be one line')
      .describe('PR title (one line)'),
    body: z.string().max(65_536).optional().describe('PR body (Markdown)'),
    body_file: z.string().min(1).max(4096).optional().describe('Read the PR body from this file instead'),
    base: z.string().min(1).max(255).optional().describe("Base branch; default the repository's default branch"),
    head: z
      .string()
      .min(1)
      .max(300)
      .optional()
      .describe("Head branch ('branch' or 'fork-owner:branch'); default the run's pushed branch, prefixed with the origin's owner when it is a fork"),
    draft: z.boolean().default(false).describe('Open as a draft PR'),
    ttl_minutes: z.number().int().min(1).max(1440).default(30).describe('Minutes the confirm token stays valid (default 30)'),
  }),
  output: z.object({
    run_id: z.string(),
    request_id: z.string(),
    token: z.string(),
    expires_at: z.string(),
    title: z.string(),
    base: z.string().nullable(),
    head: z.string(),
    head_sha: z.string(),
    draft: z.boolean(),
    gate: GateSchema,
    evidence: EvidenceSchema,
    artifact_id: z.number().int(),
  }),
  handler: async (args, { app, entry, actor }) => {
    const { request, gate, evidence, artifact_id } = await requestOpenPr(app, args, { entry, actor });
    const blocking = [
      ...gate.failed_checks.map((c) => `  - ${c.code}: ${c.message}`),
      ...(evidence.ok ? [] : [`  - head SHA: ${evidence.problem}`]),
    ];
    const text = [
      `PR request ${request.request_id} for ${args.run_id}: "${request.title}" ${request.head} -> ${request.base ?? '(default branch)'}${request.draft ? ' (draft)' : ''} at ${request.head_sha.slice(0, 12)}`,
      `confirm token: ${request.token} (expires ${request.expires_at})`,
      gate.ok && evidence.ok ? 'DoD gate: ok' : `would block the PR:\n${blocking.join('\n')}`,
      `to open it: approve-open-pr ${args.run_id} --token ${request.token} --confirm${gate.ok ? '' : ' [--allow-dod-bypass]'} (admin)`,
    ].join('\n');
    return {
      data: {
        run_id: args.run_id,
        request_id: request.request_id,
        token: request.token,
        expires_at: request.expires_at,
        title: request.title,
        base: request.base,
        head: request.head,
        head_sha: request.head_sha,
        draft: request.draft,
        gate,
        evidence,
        artifact_id,
      },
      text,
    };
  },
});
