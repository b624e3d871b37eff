import { defineTool } from '../src/registry.js';
import { defaultRegistry } from '../src/manager/registry-ref.js';
import { TickInputSchema, TickReportSchema, describeTick, runTick } from '../src/manager/tick.js';

export const managerTick = defineTool({
  name: 'manager-tick',
  title: 'Manager tick',
  description:
    'Decide the next step for one run or every non-terminal run (the built-in rules, or a model in llm/hybrid mode) and, unless dry_run, execute it through the same tools (start-discovery, run-prepare, mark-plan-ready, start-implementation, run-agent-step, run-finish, retry, sync-github). A run advances until it waits for a person or a limit is reached. Returns every decision with its reason and outcome; decisions are stored and shown by inspect-run.',
  tier: 'write',
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true },
  paths: ['prompt_file'],
  input: TickInputSchema,
  output: TickReportSchema,
  handler: async (args, ctx) => {
    // The registry comes in lazily (see registry-ref.ts); ctx.signal stops the tick between actions.
    const registry = await defaultRegistry();
    const report = await runTick(ctx.app, registry, args, {
      stopSignal: ctx.signal,
      skipDoctor: ctx.skipDoctor,
      actor: ctx.actor ? `manager-tick via ${ctx.entry}:${ctx.actor}` : undefined,
      progress: ctx.progress,
    });
    return { data: report, text: describeTick(report) };
  },
});
