import { z } from 'zod';
import { defineTool } from '../src/registry.js';
import { UserInputError } from '../src/core/errors.js';
import { installSkills, projectSkillsDir, readSkills } from '../src/worker/skills.js';

export const installSkillsTool = defineTool({
  name: 'install-skills',
  title: 'Install skills',
  description:
    "Copy the project's codex skills (skills/<name>/SKILL.md) into $CODEX_HOME/skills (default ~/.codex/skills) so the worker can use them in skills mode. Unchanged skills are left alone; changed ones are replaced.",
  tier: 'admin',
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: false },
  input: z.object({
    only: z.array(z.string().min(1).max(100)).max(50).optional().describe('Install only these skill names (default: all)'),
  }),
  output: z.object({
    installed_dir: z.string(),
    skills: z.array(z.object({ name: z.string(), action: z.enum(['installed', 'updated', 'unchanged']), path: z.string() })),
  }),
  handler: (args, { app }) => {
    const available = readSkills(projectSkillsDir()).map((s) => s.name);
    const unknown = (args.only ?? []).filter((n) => !available.includes(n));
    if (unknown.length) {
      throw new UserInputError(`unknown skill${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')}; the project has: ${available.join(', ') || 'none'}`);
    }
    const r = installSkills(app.env, { only: args.only });
    return {
      data: r,
      text: [`skills in ${r.installed_dir}:`, ...r.skills.map((s) => `  ${s.action.padEnd(9)} ${s.name}`)].join('\n'),
    };
  },
});
