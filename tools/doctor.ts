import { z } from 'zod';
import { defineTool } from '../src/registry.js';
import { DOCTOR_CHECKS, DOCTOR_FEATURES, runDoctor } from '../src/worker/doctor.js';

export const doctorTool = defineTool({
  name: 'doctor',
  title: 'Doctor (startup prerequisites)',
  description:
    'Check the prerequisites agentpr needs: git, the codex binary (AGENTPR_CODEX_BIN or codex on PATH, --version), how workers are contained (containment: pidns, a PID namespace of their own, or session, their own session plus a /proc sweep; AGENTPR_WORKER_CONTAINMENT), the database writable, the policy file valid, the workspace root writable, and the tokens of the features you name (github_sync, telegram, manager_llm, webhook). Each check says ok or what failed and how to fix it. The same checks run automatically before every write/admin tool (git, database, policy; codex for run-agent-step and manager-tick) unless skip_doctor is passed.',
  tier: 'read',
  annotations: { readOnlyHint: true, openWorldHint: false },
  input: z.object({
    features: z.array(z.enum(DOCTOR_FEATURES)).max(DOCTOR_FEATURES.length).optional().describe('Features you use, whose tokens must be present'),
    worker: z.boolean().default(true).describe('Also check the codex worker binary (default true)'),
  }),
  output: z.object({
    ok: z.boolean(),
    failed: z.array(z.enum(DOCTOR_CHECKS)),
    checks: z.array(z.object({ name: z.enum(DOCTOR_CHECKS), ok: z.boolean(), detail: z.string(), fix: z.string().nullable() })),
  }),
  handler: async (args, { app }) => {
    const report = await runDoctor(app, { worker: args.worker, features: args.features ?? [] });
    const text = [
      report.ok ? 'doctor: all checks passed' : `doctor: ${report.failed.length} check(s) failed: ${report.failed.join(', ')}`,
      ...report.checks.map((c) => `  ${c.ok ? 'ok  ' : 'FAIL'} ${c.name}: ${c.detail}${c.fix ? `\n       fix: ${c.fix}` : ''}`),
    ].join('\n');
    return { data: report, text };
  },
});
