import { z } from 'zod';
import { RunStateSchema } from '../src/core/states.js';
import type { ForgeOutcome } from '../src/worker/forge.js';

export const ForgeOutcomeSchema = z.object({
  run_id: z.string(),
  step: z.enum(['prepare', 'finish']),
  attempt_no: z.number().int(),
  ok: z.boolean(),
  exit_code: z.number().int().nullable(),
  timed_out: z.boolean(),
  duration_ms: z.number().int(),
  state: RunStateSchema,
  last_error: z.string().nullable(),
  stdout_log: z.string(),
  stderr_log: z.string(),
  outputs: z.record(z.string(), z.string()).describe('AGENTPR_* lines the script printed (branch, base, head_sha, ...)'),
  error: z.string().optional(),
  git_warnings: z.array(z.string()).optional().describe("What had changed in the clone's .git since run-prepare (config keys, attributes) and was put back before the script ran"),
});

export function describeForge(o: ForgeOutcome): string {
  const head = `${o.run_id}: ${o.step}.sh attempt ${o.attempt_no} ${o.ok ? 'succeeded' : o.timed_out ? 'timed out' : `failed (exit ${o.exit_code})`} in ${(o.duration_ms / 1000).toFixed(1)} s; state ${o.state}`;
  const lines = [head];
  if (o.outputs.branch) lines.push(`branch: ${o.outputs.branch}${o.outputs.head_sha ? ` at ${o.outputs.head_sha}` : ''}${o.outputs.base ? ` (base ${o.outputs.base})` : ''}`);
  if (o.error) lines.push(`error: ${o.error}`);
  for (const w of o.git_warnings ?? []) lines.push(`warning: ${w}`);
  lines.push(`logs: ${o.stdout_log}, ${o.stderr_log}`);
  return lines.join('\n');
}
