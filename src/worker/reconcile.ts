import { existsSync } from 'node:fs';
import type { App } from '../app.js';
import { defaultIdempotencyKey } from '../core/events.js';
import { errorMessage } from '../core/errors.js';
import type { AttemptView } from '../core/models.js';
import { canTransition, isTerminal, type RunState } from '../core/states.js';
import { agentPolicyFor } from '../policy.js';
import { groupAlive } from './runner.js';
import { signalTree } from './contain.js';
import { currentHolder, holderGone, pidAlive, procStart } from '../store/holder.js';

export { procStart };

/**
 * Orphaned attempts (issue 5, item 7): an attempt row says `running` but the process that owned
 * it is gone (crash, kill -9, reboot). At startup such rows are closed as failed with reason
 * `orchestrator_restarted` and the run is moved per policy, so nothing stays stuck.
 *
 * Ownership is read from the attempt's metadata, written by `attemptOwnerMetadata()` when the
 * attempt starts: pid, host, the kernel boot id and the process's start time (so a reused pid is
 * not mistaken for the owner).
 */
export const ORPHAN_REASON = 'orchestrator_restarted';

export type AttemptOwner = {
  owner_pid: number;
  owner_host: string;
  /** Linux: /proc/sys/kernel/random/boot_id; absent elsewhere. */
  owner_boot_id?: string;
  /** Linux: the process start time in clock ticks since boot (/proc/<pid>/stat field 22). */
  owner_proc_start?: string;
};

let ownerCache: AttemptOwner | undefined;

/** Put this into the metadata of every attempt you start (spread it): who owns the attempt. */
export function attemptOwnerMetadata(): AttemptOwner {
  if (!ownerCache) {
    const h = currentHolder();
    ownerCache = {
      owner_pid: h.pid,
      owner_host: h.host,
      ...(h.boot_id ? { owner_boot_id: h.boot_id } : {}),
      ...(h.proc_start ? { owner_proc_start: h.proc_start } : {}),
    };
  }
  return { ...ownerCache };
}

/** Attempts without owner metadata (or from another host) are only declared orphans when this old. */
export const UNOWNED_STALE_MS = 6 * 60 * 60 * 1000;

/**
 * Why this running attempt is an orphan, or null when its owner may still be working on it. An
 * attempt with a lease is judged by its lease's holder (its process, or its heartbeat from
 * another host); only attempts from before leases fall back to the owner in their metadata.
 */
export function orphanReason(attempt: AttemptView, now = Date.now(), lease?: { holder: Parameters<typeof holderGone>[0]; expires_at: string }): string | null {
  if (lease) return holderGone(lease.holder, lease.expires_at, now);
  const me = attemptOwnerMetadata();
  const m = attempt.metadata;
  const pid = typeof m.owner_pid === 'number' ? m.owner_pid : undefined;
  const host = typeof m.owner_host === 'string' ? m.owner_host : undefined;
  const startedMs = Date.parse(attempt.started_at);
  const stale = Number.isFinite(startedMs) && now - startedMs > UNOWNED_STALE_MS;
  if (pid === undefined || host === undefined) {
    return stale ? `no owner recorded and started ${attempt.started_at}, over ${UNOWNED_STALE_MS / 3_600_000} h ago` : null;
  }
  if (host !== me.owner_host) {
    return stale ? `owned by host ${host} and started ${attempt.started_at}, over ${UNOWNED_STALE_MS / 3_600_000} h ago` : null;
  }
  if (typeof m.owner_boot_id === 'string' && me.owner_boot_id && m.owner_boot_id !== me.owner_boot_id) {
    return `owner pid ${pid} ran before the machine rebooted`;
  }
  if (!pidAlive(pid)) return `owner pid ${pid} is gone`;
  if (typeof m.owner_proc_start === 'string') {
    const start = procStart(pid);
    if (start !== undefined && start !== m.owner_proc_start) return `pid ${pid} now belongs to another process`;
  }
  return null;
}

/**
 * Ends the process group of an orphaned attempt's worker (recorded as `worker_pid`, the group
 * leader, by the agent step) when it provably is still that worker's: same host and boot, and the
 * leader's start time unchanged, or the leader gone while members of its group remain (a pid is
 * not reused while it names a live process group). Its owner died with the timer that would have
 * ended it, and a retry must not share the clone with it. Linux only; elsewhere nothing is
 * signalled. Returns the group's id when it was signalled.
 */
export function stopOrphanedWorker(attempt: AttemptView): number | null {
  const m = attempt.metadata;
  const me = attemptOwnerMetadata();
  const pid = m.worker_pid;
  // Processes that left the worker's group (setsid, daemons) still carry its marker.
  const swept = typeof m.worker_marker === 'string' && m.owner_host === me.owner_host && m.owner_boot_id === me.owner_boot_id ? signalTree(null, m.worker_marker, 'SIGKILL') : 0;
  if (typeof pid !== 'number' || !Number.isInteger(pid) || pid <= 1) return null;
  if (m.owner_host !== me.owner_host || !me.owner_boot_id || m.owner_boot_id !== me.owner_boot_id) return null;
  if (!groupAlive(pid)) return swept ? pid : null;
  const start = procStart(pid);
  if (start !== undefined ? start !== m.worker_proc_start : !existsSync('/proc/self/stat')) return null;
  try {
    process.kill(-pid, 'SIGKILL');
    return pid;
  } catch {
    return null;
  }
}

export interface ReconciledAttempt {
  attempt_id: number;
  run_id: string;
  step: string;
  attempt_no: number;
  why: string;
  state_before: RunState;
  state_after: RunState;
}

/**
 * Close every orphaned running attempt: finishAttempt(failed, orchestrator_restarted) and the
 * run moved by `worker.step.failed` towards the policy's `on_retryable_state`, in one
 * transaction per attempt. Where the state machine does not allow that move (a terminal or
 * paused run, PLAN_READY, ...), or the policy says UNCHANGED, only the attempt is closed.
 * Cheap when nothing is running: one indexed query.
 */
export type ReconcileBy = 'startup' | 'manager' | 'reconcile-runs';

export function reconcileOrphanedAttempts(app: App, now = Date.now(), by: ReconcileBy = 'startup'): ReconciledAttempt[] {
  const done: ReconciledAttempt[] = [];
  for (const attempt of app.service.runningAttempts()) {
    const why = orphanReason(attempt, now, app.service.leases.forAttempt(attempt.attempt_id));
    if (!why) continue;
    try {
      const r = app.service.transaction((): ReconciledAttempt | null => {
        // Another process may have closed it since the list was read.
        if (app.service.attemptById(attempt.attempt_id).status !== 'running') return null;
        const lease = app.service.leases.forAttempt(attempt.attempt_id);
        if (lease && holderGone(lease.holder, lease.expires_at, now) === null) return null; // its holder came back with a heartbeat
        const run = app.service.getRun(attempt.run_id);
        const stopped = stopOrphanedWorker(attempt);
        const message = `${attempt.step} attempt ${attempt.attempt_no} was left running (${why}); closed ${by === 'startup' ? 'at startup' : `by ${by}`}${stopped ? `, its worker (process group ${stopped}) killed` : ''}`;
        app.service.finishAttempt(attempt.attempt_id, {
          status: 'failed',
          reason_code: ORPHAN_REASON,
          exit_code: null,
          duration_ms: Number.isFinite(Date.parse(attempt.started_at)) ? Math.max(0, now - Date.parse(attempt.started_at)) : null,
          metadata: { reconciled: { at: new Date(now).toISOString(), by: attemptOwnerMetadata(), via: by, why, worker_killed: stopped } },
        });
        // A run that moved on since the attempt started (a PR linked meanwhile, a person's retry)
        // is healthy as it is: the orphan is closed, the run is left alone.
        const movedOn = app.service.stateChangedSince(run.run_id, attempt.started_at);
        // A GitHub sync writes everything in its last transaction: one that died wrote nothing, and
        // its run is as healthy as before it started.
        const target = movedOn || attempt.step === 'github_sync' ? null : retryTarget(run.state, agentPolicyFor(app.policy, run.owner, run.repo).on_retryable_state);
        let after = run.state;
        if (target !== null) {
          const payload: Record<string, unknown> = { step: attempt.step, reason_code: ORPHAN_REASON, error_message: message, attempt_no: attempt.attempt_no };
          if (target.explicit) payload.to_state = target.state;
          after = app.service.applyEvent({
            run_id: run.run_id,
            event_type: 'worker.step.failed',
            payload,
            idempotency_key: defaultIdempotencyKey('worker.step.failed', run.run_id, { attempt_id: attempt.attempt_id, reason_code: ORPHAN_REASON }),
          }).state;
        }
        return { attempt_id: attempt.attempt_id, run_id: run.run_id, step: attempt.step, attempt_no: attempt.attempt_no, why, state_before: run.state, state_after: after };
      });
      if (r) {
        done.push(r);
        app.logger.warn({ run_id: r.run_id, step: r.step, attempt_no: r.attempt_no, why, state: r.state_after }, 'closed an orphaned step attempt');
      }
    } catch (err) {
      app.logger.error({ run_id: attempt.run_id, attempt_id: attempt.attempt_id, err: errorMessage(err) }, 'could not close an orphaned step attempt');
    }
  }
  return done;
}

const STEP_FAILED_TARGETS = new Set<RunState>(['FAILED_RETRYABLE', 'NEEDS_HUMAN_REVIEW', 'FAILED_TERMINAL']);

/** Where worker.step.failed should take the run, or null to leave its state alone. */
function retryTarget(from: RunState, policyState: string): { state: RunState; explicit: boolean } | null {
  if (isTerminal(from) || from === 'PAUSED' || policyState === 'UNCHANGED') return null;
  if (STEP_FAILED_TARGETS.has(policyState as RunState) && canTransition(from, policyState as RunState) && from !== policyState) {
    return { state: policyState as RunState, explicit: true };
  }
  // The default of worker.step.failed: PUSHED -> NEEDS_HUMAN_REVIEW, else FAILED_RETRYABLE.
  const fallback: RunState = from === 'PUSHED' ? 'NEEDS_HUMAN_REVIEW' : 'FAILED_RETRYABLE';
  return canTransition(from, fallback) && from !== fallback ? { state: fallback, explicit: false } : null;
}

/** The reconcile a server runs when it starts (and the manager loop before each tick); never throws. */
export function reconcileAtStart(app: App, by: ReconcileBy = 'startup'): ReconciledAttempt[] {
  try {
    return reconcileOrphanedAttempts(app, Date.now(), by);
  } catch (err) {
    app.logger.error({ err: errorMessage(err) }, 'could not reconcile orphaned step attempts');
    return [];
  }
}
