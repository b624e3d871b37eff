import type { App } from '../app.js';
import { TRANSITIONS, type RunState } from '../core/states.js';
import { gatherFacts } from './facts.js';
import { decide } from './rules.js';

export interface DefaultTarget {
  state: RunState;
  /** Why this state, for the person who did not name one. */
  why: string;
}

/**
 * The state `resume` or `retry` goes to when a person names none: resume returns a PAUSED run to
 * the state it was paused in; retry goes where the manager's rules would send a FAILED_RETRYABLE
 * run (DISCOVERY until prepare and a contract exist, else IMPLEMENTING). Null when there is no
 * sensible default (the run is elsewhere, or over its retry cap): then the person chooses.
 */
export function defaultTarget(app: App, runId: string, command: 'resume' | 'retry'): DefaultTarget | null {
  const run = app.service.findRun(runId);
  if (!run) return null;
  if (command === 'resume') {
    if (run.state !== 'PAUSED') return null;
    const recent = app.service.listEvents(runId, { limit: 200, newestFirst: true });
    const pausedAt = recent.findIndex((e) => e.to_state === 'PAUSED' && e.outcome === 'applied' && e.from_state && e.from_state !== 'PAUSED');
    // A push that finished after the pause: the branch is in the fork, so the run goes on from PUSHED.
    if (recent.slice(0, Math.max(pausedAt, 0)).some((e) => e.event_type === 'worker.push.completed' && e.from_state === 'PAUSED' && e.outcome !== 'ignored')) {
      return { state: 'PUSHED', why: 'its push finished while it was paused' };
    }
    const from = (pausedAt >= 0 ? recent[pausedAt]!.from_state : undefined) as RunState | undefined;
    if (!from || !(TRANSITIONS.PAUSED as readonly string[]).includes(from)) return null;
    return { state: from, why: `the state it was paused in` };
  }
  if (run.state !== 'FAILED_RETRYABLE') return null;
  const facts = gatherFacts(app, { run_id: runId })[0];
  if (!facts) return null;
  const rule = decide(facts);
  const target = rule.action === 'retry' ? (rule.args.target_state as RunState | undefined) : undefined;
  return target ? { state: target, why: rule.reason } : null;
}
