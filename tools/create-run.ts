import { z } from 'zod';
import { defineTool } from '../src/registry.js';
import { OwnerSchema, RepoSchema, RunIdSchema, RunViewSchema } from '../src/core/models.js';

export const createRun = defineTool({
  name: 'create-run',
  title: 'Create run',
  description:
    'Create a contribution run for a GitHub repository. The run starts in QUEUED with its own workspace at <workspace_root>/<owner>/<repo>/<run_id>. Its id is run_ + 12 hex digits unless run_id names it (e.g. calib_mem0_r1); an id already in use is refused.',
  tier: 'write',
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false },
  input: z.object({
    run_id: RunIdSchema.optional().describe('Name the run instead of a generated run_ + 12 hex id: lower-case letters, digits, _ . - (at most 64), e.g. calib_mem0_r1'),
    owner: OwnerSchema,
    repo: RepoSchema,
    prompt_version: z.string().min(1).max(64).optional().describe('Prompt version label (default v1)'),
    mode: z.enum(['push_only']).optional().describe('Run mode; push_only is the only mode today'),
    budget: z
      .record(z.string().max(64), z.union([z.number(), z.string().max(256), z.boolean()]))
      .optional()
      .describe('Free-form budget, e.g. {"max_agent_seconds": 600}'),
    workspace_dir: z
      .string()
      .min(1)
      .max(4096)
      .optional()
      .describe('Clone location; default <workspace_root>/<owner>/<repo>/<run_id> (one tree per run). Must be inside the workspace root to run a worker.'),
  }),
  output: z.object({ run: RunViewSchema }),
  handler: (args, { app }) => {
    const run = app.service.createRun(args);
    return { data: { run }, text: `created ${run.run_id} for ${run.owner}/${run.repo} in ${run.state} (workspace ${run.workspace_dir})` };
  },
});
