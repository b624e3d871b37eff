import { z } from 'zod';
import { defineTool } from '../src/registry.js';
import { RunIdSchema } from '../src/core/models.js';
import { runFinish } from '../src/worker/forge.js';
import { ForgeOutcomeSchema, describeForge } from './_forge-output.js';

export const runFinishTool = defineTool({
  name: 'run-finish',
  title: 'Run finish (commit, push)',
  description:
    "Run forge_integration/scripts/finish.sh in the run's clone: stage every change except .agentpr_runtime/, commit with a one-line title, push the feature branch to origin. Needs LOCAL_VALIDATING; success applies worker.push.completed {branch, head_sha} (-> PUSHED, branch artifact); failure worker.step.failed script_failed (-> FAILED_RETRYABLE).",
  tier: 'write',
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true },
  cli: { positional: ['run_id', 'changes'] },
  input: z.object({
    run_id: RunIdSchema,
    changes: z.string().trim().min(1, 'changes must describe the change').max(10_000).describe('What the commit changes; the commit body, and the title when none is given'),
    project: z.string().min(1).max(100).optional().describe('Project name used as the title prefix ("<project>: <changes>") when no title is given'),
    title: z.string().min(1).max(200).optional().describe('Commit title (newlines collapse; cut to 72 characters)'),
    timeout_sec: z.number().int().min(1).max(7200).optional().describe('Kill the script after this many seconds (default 900)'),
  }),
  output: ForgeOutcomeSchema,
  handler: async (args, { app, signal }) => {
    const o = await runFinish(app, args, signal);
    return { data: o, text: describeForge(o) };
  },
});
