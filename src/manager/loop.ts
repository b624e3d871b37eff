import { setTimeout as sleep } from 'node:timers/promises';
import { reconcileAtStart } from '../worker/reconcile.js';
import type { App } from '../app.js';
import type { CallOutcome, Registry } from '../registry.js';
import type { TickInput } from './tick.js';

export interface LoopOptions {
  intervalSec: number;
  /** Stop after this many ticks; default: until stopped. */
  maxLoops?: number;
  tick: TickInput;
  /** Aborting it stops the loop after the current action (the tick checks it between actions). */
  stopSignal: AbortSignal;
  skipDoctor?: boolean;
  /** Called after every tick, ok or not (the CLI prints it). */
  onTick?: (loop: number, outcome: CallOutcome) => void;
}

export interface LoopSummary {
  loops: number;
  failed_ticks: number;
  stopped: boolean;
}

/**
 * `run-manager-loop`: a manager tick every `intervalSec` through the registry (the same
 * `manager-tick` every other entry calls). A failed tick is logged and the loop goes on.
 */
export async function runManagerLoop(app: App, registry: Registry, opts: LoopOptions): Promise<LoopSummary> {
  const log = app.logger.child({ component: 'manager-loop' });
  let loops = 0;
  let failed = 0;
  while (!opts.stopSignal.aborted && (opts.maxLoops === undefined || loops < opts.maxLoops)) {
    loops++;
    // Orphans are closed here, before each tick decides, never inside a read.
    reconcileAtStart(app, 'manager');
    const outcome = await registry.call('manager-tick', opts.tick, {
      app,
      entry: 'cli',
      actor: 'run-manager-loop',
      signal: opts.stopSignal,
      skipDoctor: opts.skipDoctor,
    });
    if (outcome.ok) {
      const d = outcome.data as { tick_id?: string; actions_executed?: number; actions_failed?: number };
      log.info({ loop: loops, tick_id: d.tick_id, executed: d.actions_executed, failed: d.actions_failed }, 'tick finished');
    } else {
      failed++;
      log.error({ loop: loops, code: outcome.code, error: outcome.error }, 'tick failed; the loop goes on');
    }
    opts.onTick?.(loops, outcome);
    if (opts.stopSignal.aborted || (opts.maxLoops !== undefined && loops >= opts.maxLoops)) break;
    try {
      await sleep(opts.intervalSec * 1000, undefined, { signal: opts.stopSignal });
    } catch {
      break; // aborted while sleeping
    }
  }
  const stopped = opts.stopSignal.aborted;
  log.info({ loops, failed_ticks: failed, stopped }, stopped ? 'manager loop stopped' : 'manager loop finished');
  return { loops, failed_ticks: failed, stopped };
}
