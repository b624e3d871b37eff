import { z } from 'zod';
import { defineTool } from '../src/registry.js';
import { DigestFilterInput } from './skills-metrics.js';
import { skillsFeedback, skillsMetrics } from '../src/worker/inspect.js';

export const skillsFeedbackTool = defineTool({
  name: 'skills-feedback',
  title: 'Skills feedback',
  description:
    'Turn the skills metrics into deterministic iteration actions for prompts, skills and policy (each with priority, target, trigger, change and acceptance test), as JSON plus a Markdown report. The same digests always give the same actions.',
  tier: 'read',
  annotations: { readOnlyHint: true, openWorldHint: false },
  input: DigestFilterInput,
  output: z.object({
    generated_at: z.string(),
    scope: z.string(),
    summary: z.object({ parsed_reports: z.number().int(), pass_rate_pct: z.number(), retryable_rate_pct: z.number(), human_review_rate_pct: z.number() }),
    top_reasons: z.array(z.object({ reason_code: z.string(), count: z.number().int() })),
    actions: z.array(
      z.object({ id: z.string(), priority: z.enum(['high', 'medium', 'low']), target: z.string(), trigger: z.string(), change: z.string(), accept: z.string() }),
    ),
    suggested_versions: z.object({ prompt_version: z.string(), skills_bundle_version: z.string() }),
    markdown: z.string(),
  }),
  handler: (args, { app }) => {
    const f = skillsFeedback(skillsMetrics(app, args));
    return { data: f, text: f.markdown };
  },
});
