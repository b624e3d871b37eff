import { z } from 'zod';
import { defineTool } from '../src/registry.js';
import { OwnerSchema, RepoSchema } from '../src/core/models.js';
import { UserInputError } from '../src/core/errors.js';
import { agentPolicyFor } from '../src/policy.js';

export const showPolicy = defineTool({
  name: 'show-policy',
  title: 'Show policy',
  description:
    'Show the effective manager policy (built-in defaults merged with the policy file) and where it came from. With owner and repo, also the effective run_agent_step settings for that repository (its repo_overrides entry applied).',
  tier: 'read',
  annotations: { readOnlyHint: true, openWorldHint: false },
  cli: { positional: ['owner', 'repo'] },
  input: z.object({
    owner: OwnerSchema.optional(),
    repo: RepoSchema.optional(),
  }),
  output: z.object({
    source: z.string().describe('The policy file read, or "built-in defaults"'),
    policy: z.record(z.string(), z.unknown()),
    repo: z.string().optional(),
    repo_override: z.record(z.string(), z.unknown()).nullable().optional(),
    run_agent_step: z.record(z.string(), z.unknown()).optional(),
  }),
  handler: (args, { app }) => {
    if ((args.owner === undefined) !== (args.repo === undefined)) {
      throw new UserInputError('give both owner and repo (or neither); e.g. show-policy octocat hello-world');
    }
    const source = app.policySource ?? 'built-in defaults';
    const policy = app.policy;
    if (!args.owner || !args.repo) {
      const overrides = Object.keys(policy.run_agent_step.repo_overrides);
      const r = policy.run_agent_step;
      return {
        data: { source, policy },
        text: [
          `policy from ${source}`,
          `run_agent_step: sandbox ${r.codex_sandbox}, skills ${r.skills_mode}, timeout ${r.max_agent_seconds}s, budget ${r.max_changed_files} files / ${r.max_added_lines} lines, retries ${r.max_retryable_attempts}, min tests ${r.min_test_commands}`,
          `repo overrides: ${overrides.length ? overrides.join(', ') : 'none'}`,
        ].join('\n'),
      };
    }
    const key = `${args.owner}/${args.repo}`.toLowerCase();
    const override = policy.run_agent_step.repo_overrides[key] ?? null;
    const effective = agentPolicyFor(policy, args.owner, args.repo);
    return {
      data: { source, policy, repo: key, repo_override: override, run_agent_step: effective },
      text: [
        `policy from ${source}; run_agent_step for ${key}${override ? ` (override: ${Object.keys(override).join(', ')})` : ' (no override)'}:`,
        ...Object.entries(effective).map(([k, v]) => `  ${k}: ${JSON.stringify(v)}`),
      ].join('\n'),
    };
  },
});
