import { z } from 'zod';
import { defineTool } from '../src/registry.js';
import { OwnerSchema, RepoSchema } from '../src/core/models.js';
import { UserInputError } from '../src/core/errors.js';
import { agentPolicyFor } from '../src/policy.js';
import { skillsStatus } from '../src/worker/skills.js';

export const skillsStatusTool = defineTool({
  name: 'skills-status',
  title: 'Skills status',
  description:
    "Show the project's codex skills (skills/), whether each is installed in $CODEX_HOME/skills (default ~/.codex) and up to date, and per worker stage which planned skills are missing. With owner and repo, the repository's required_skills from policy are included.",
  tier: 'read',
  annotations: { readOnlyHint: true, openWorldHint: false },
  cli: { positional: ['owner', 'repo'] },
  input: z.object({ owner: OwnerSchema.optional(), repo: RepoSchema.optional() }),
  output: z.object({
    project_dir: z.string(),
    codex_home: z.string(),
    installed_dir: z.string(),
    skills_mode: z.enum(['off', 'agentpr']),
    ready: z.boolean(),
    skills: z.array(
      z.object({
        name: z.string(),
        description: z.string(),
        in_project: z.boolean(),
        installed: z.boolean(),
        outdated: z.boolean(),
        installed_path: z.string(),
        stages: z.array(z.string()),
      }),
    ),
    stages: z.array(z.object({ stage: z.string(), plan: z.array(z.string()), missing: z.array(z.string()) })),
  }),
  handler: (args, { app }) => {
    if ((args.owner === undefined) !== (args.repo === undefined)) throw new UserInputError('give both owner and repo (or neither)');
    const policy = agentPolicyFor(app.policy, args.owner, args.repo);
    const report = skillsStatus(policy, app.env);
    const lines = [
      `skills mode: ${policy.skills_mode}; installed in ${report.installed_dir}`,
      ...report.skills.map(
        (s) => `  ${s.installed ? (s.outdated ? 'outdated ' : 'ok       ') : 'missing  '}${s.name}${s.in_project ? '' : ' (not in the project)'} [${s.stages.join(', ') || 'no stage'}]`,
      ),
      ...report.stages.filter((s) => s.missing.length).map((s) => `  ${s.stage} is missing: ${s.missing.join(', ')}`),
      report.ready
        ? 'all stage skills are installed'
        : `not ready: run install-skills${report.skills.some((s) => !s.in_project && !s.installed) ? ' (and add the required skills that are not in the project)' : ''}`,
    ];
    return { data: { ...report, skills_mode: policy.skills_mode }, text: lines.join('\n') };
  },
});
