import { z } from 'zod';
import { defineTool } from '../src/registry.js';
import { orphanReason, reconcileOrphanedAttempts } from '../src/worker/reconcile.js';

const Closed = z.object({
  attempt_id: z.number().int(),
  run_id: z.string(),
  step: z.string(),
  attempt_no: z.number().int(),
  why: z.string(),
  state_before: z.string(),
  state_after: z.string(),
});

export const reconcileRunsTool = defineTool({
  name: 'reconcile-runs',
  title: 'Close orphaned step attempts',
  description:
    "Close step attempts left running by a process that is gone (its lease's holder died, the machine rebooted, or a holder on another host stopped its heartbeat): each is failed with reason orchestrator_restarted, its lease dropped, a worker it left behind killed, and its run moved per policy on_retryable_state unless the run moved on since the attempt started. Servers do this when they start and the manager loop before each tick; reads never do. dry_run lists what would be closed.",
  tier: 'admin',
  annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
  input: z.object({ dry_run: z.boolean().default(false).describe('Only list the orphans, change nothing') }),
  output: z.object({ dry_run: z.boolean(), running: z.number().int(), closed: z.array(Closed), orphans: z.array(z.object({ attempt_id: z.number().int(), run_id: z.string(), step: z.string(), why: z.string() })) }),
  handler: (args, { app }) => {
    const running = app.service.runningAttempts();
    const now = Date.now();
    const orphans = running.flatMap((a) => {
      const why = orphanReason(a, now, app.service.leases.forAttempt(a.attempt_id));
      return why ? [{ attempt_id: a.attempt_id, run_id: a.run_id, step: a.step, why }] : [];
    });
    const closed = args.dry_run ? [] : reconcileOrphanedAttempts(app, now, 'reconcile-runs');
    const lines = args.dry_run
      ? orphans.map((o) => `  ${o.run_id} ${o.step} (attempt ${o.attempt_id}): ${o.why}`)
      : closed.map((o) => `  ${o.run_id} ${o.step} (attempt ${o.attempt_id}): ${o.why}; ${o.state_before} -> ${o.state_after}`);
    return {
      data: { dry_run: args.dry_run, running: running.length, closed, orphans },
      text: `${running.length} attempt(s) running; ${args.dry_run ? `${orphans.length} orphan(s) would be closed` : `${closed.length} orphan(s) closed`}${lines.length ? `\n${lines.join('\n')}` : ''}`,
    };
  },
});
