import { z } from 'zod';
import { defineTool } from '../src/registry.js';
import { cleanupWorkspaces } from '../src/worker/workspaces.js';

export const cleanupWorkspacesTool = defineTool({
  name: 'cleanup-workspaces',
  title: 'Remove the trees of finished runs',
  description:
    'Delete the workspace (the clone under <workspace_root>/<owner>/<repo>/<run_id>) of every run in DONE, SKIPPED or FAILED_TERMINAL last updated more than older_than_days ago. Trees outside the workspace root, trees a run that is not finished still uses, and runs whose lease is held are kept and listed with the reason. The runs and their reports stay.',
  tier: 'admin',
  annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
  input: z.object({
    older_than_days: z.number().min(0).max(3650).default(7).describe('Only runs finished more than N days ago (default 7)'),
    dry_run: z.boolean().default(false).describe('Only list what would be removed'),
  }),
  output: z.object({
    dry_run: z.boolean(),
    removed: z.number().int(),
    kept: z.number().int(),
    workspaces: z.array(z.object({ run_id: z.string(), state: z.string(), workspace_dir: z.string(), action: z.enum(['removed', 'would_remove', 'kept']), why: z.string() })),
  }),
  handler: (args, { app }) => {
    const list = cleanupWorkspaces(app, { olderThanDays: args.older_than_days, dryRun: args.dry_run });
    const removed = list.filter((w) => w.action !== 'kept').length;
    const kept = list.length - removed;
    return {
      data: { dry_run: args.dry_run, removed, kept, workspaces: list },
      text: [`${args.dry_run ? 'would remove' : 'removed'} ${removed} workspace(s), kept ${kept}`, ...list.map((w) => `  ${w.action} ${w.workspace_dir} (${w.run_id}, ${w.why})`)].join('\n'),
    };
  },
});
