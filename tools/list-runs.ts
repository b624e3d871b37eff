import { z } from 'zod';
import { defineTool } from '../src/registry.js';
import { OwnerSchema, RepoSchema, RunViewSchema } from '../src/core/models.js';
import { RunStateSchema } from '../src/core/states.js';

export const listRuns = defineTool({
  name: 'list-runs',
  title: 'List runs',
  description: 'List runs, newest first, optionally filtered by state and repository. Paginated with limit/offset.',
  tier: 'read',
  annotations: { readOnlyHint: true, openWorldHint: false },
  input: z.object({
    state: z.array(RunStateSchema).max(15).or(RunStateSchema).optional().describe('Only runs in this state (or any of these states)'),
    owner: OwnerSchema.optional(),
    repo: RepoSchema.optional(),
    limit: z.number().int().min(1).max(500).default(50).describe('Page size (1-500, default 50)'),
    offset: z.number().int().min(0).max(10_000_000).default(0).describe('Runs to skip'),
  }),
  output: z.object({
    runs: z.array(RunViewSchema),
    total: z.number().int(),
    limit: z.number().int(),
    offset: z.number().int(),
    next_offset: z.number().int().nullable(),
  }),
  handler: (args, { app }) => {
    const { runs, total } = app.service.listRuns(args);
    const next = args.offset + runs.length < total ? args.offset + runs.length : null;
    const lines = runs.map((r) => `${r.run_id}  ${r.state.padEnd(18)} ${r.owner}/${r.repo}${r.pr_number ? ` #${r.pr_number}` : ''}`);
    const text = runs.length
      ? `${lines.join('\n')}\n(${args.offset + 1}-${args.offset + runs.length} of ${total}${next !== null ? `; next offset ${next}` : ''})`
      : `no runs${total ? ` at offset ${args.offset} (total ${total})` : ''}`;
    return { data: { runs, total, limit: args.limit, offset: args.offset, next_offset: next }, text };
  },
});
