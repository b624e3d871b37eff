import { z } from 'zod';
import { defineTool } from '../src/registry.js';
import { notAnOption } from '../src/trust.js';
import { RunIdSchema } from '../src/core/models.js';
import { runPrepare } from '../src/worker/forge.js';
import { ForgeOutcomeSchema, describeForge } from './_forge-output.js';

const BranchName = z
  .string()
  .min(1)
  .max(255)
  .regex(/^(?!-)[^\s~^:?*[\\]+$/, { message: 'must be a git branch name (no spaces or ~^:?*[\\, not starting with -)' });

export const runPrepareTool = defineTool({
  name: 'run-prepare',
  title: 'Run prepare (fork, clone, branch)',
  description:
    "Run forge_integration/scripts/prepare.sh for a run: fork and clone the repository into the run's workspace (or reuse the clone), sync the upstream default branch and create or rebase the feature branch. A QUEUED run is moved to DISCOVERY first; on success the run stays in DISCOVERY and the branch is recorded on the prepare attempt; on failure worker.step.failed script_failed (-> FAILED_RETRYABLE). Uses gh to fork unless upstream_url/fork_url (or AGENTPR_FORGE_UPSTREAM_URL/AGENTPR_FORGE_FORK_URL) name the remotes.",
  tier: 'write',
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true },
  cli: { positional: ['run_id'] },
  input: z.object({
    run_id: RunIdSchema,
    upstream_url: notAnOption(z.string().min(1).max(4096), 'upstream_url').optional().describe('Upstream git remote (default https://github.com/<owner>/<repo>.git)'),
    fork_url: notAnOption(z.string().min(1).max(4096), 'fork_url').optional().describe('The git remote to push to (your fork); with either URL, gh is not used'),
    base: BranchName.optional().describe('Base branch (default: the upstream default branch)'),
    feature: BranchName.optional().describe('Feature branch (default feature/forge-<UTC timestamp>); an existing one is rebased'),
    timeout_sec: z.number().int().min(1).max(7200).optional().describe('Kill the script after this many seconds (default 900)'),
  }),
  output: ForgeOutcomeSchema,
  handler: async (args, { app, signal }) => {
    const o = await runPrepare(app, args, signal);
    return { data: o, text: describeForge(o) };
  },
});
