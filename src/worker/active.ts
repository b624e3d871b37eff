import type { App } from '../app.js';

/** A worker step running inside this process (wait: false or still waiting), for show-run / inspect-run. */
export interface ActiveAgentStep {
  run_id: string;
  attempt_no: number;
  attempt_id: number;
  started_at: string;
  pid: number | null;
  /** Latest command the worker started or finished, from the live stream. */
  latest_command: string | null;
  lines: number;
  /** Kills the worker tree; the step then records the attempt as cancelled. */
  abort: (reason: string) => void;
  done: Promise<void>;
}

const registries = new WeakMap<App, Map<string, ActiveAgentStep>>();

/** The in-process steps of an App, keyed by run id. On close, running workers are killed and awaited. */
export function activeSteps(app: App): Map<string, ActiveAgentStep> {
  let map = registries.get(app);
  if (!map) {
    const created = new Map<string, ActiveAgentStep>();
    registries.set(app, created);
    map = created;
    app.onClose(async () => {
      const steps = [...created.values()];
      for (const s of steps) s.abort('server closing');
      await Promise.allSettled(steps.map((s) => s.done));
    });
  }
  return map;
}

export function activeAgentStep(app: App, runId: string): ActiveAgentStep | undefined {
  return registries.get(app)?.get(runId);
}

export function publicActiveStep(s: ActiveAgentStep): {
  run_id: string;
  attempt_no: number;
  started_at: string;
  elapsed_ms: number;
  pid: number | null;
  latest_command: string | null;
  lines: number;
} {
  return {
    run_id: s.run_id,
    attempt_no: s.attempt_no,
    started_at: s.started_at,
    elapsed_ms: Date.now() - Date.parse(s.started_at),
    pid: s.pid,
    latest_command: s.latest_command,
    lines: s.lines,
  };
}
