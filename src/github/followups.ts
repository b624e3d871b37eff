import { randomBytes } from 'node:crypto';
import type { App } from '../app.js';
import { errorMessage } from '../core/errors.js';
import type { Registry } from '../registry.js';
import type { Followup } from '../store/github-store.js';

/**
 * Works the durable follow-up queue (github_followups) of the webhook receiver: the sync a green
 * check asks for runs here, after the delivery was answered, so GitHub's 10 s limit never waits on
 * the GitHub API. A sync that fails (401, 5xx, rate limit) stays queued and is retried with
 * backoff; after github.followup_max_attempts it is marked failed with the error. A claim whose
 * process died is taken over after `staleMs`. A run busy with another step (its lease held) keeps its
 * follow-up queued for `busyRetryMs` without using up an attempt.
 */

export interface FollowupWorkerOptions {
  app: App;
  registry: Registry;
  /** Idle polling interval (another process may queue work too). */
  pollMs?: number;
  /** Delay before attempt n+1 (n = attempts so far). Default: 2^n s, at most 5 min. */
  backoffMs?: (attempts: number) => number;
  staleMs?: number;
  /** Delay before a follow-up whose run was busy (its lease held by a step) is tried again. Default 15 s. */
  busyRetryMs?: number;
}

export interface FollowupWorker {
  /** Look for due work now (called after a delivery queued some). */
  kick(): void;
  /** Resolves when the queue has nothing due (for tests and shutdown). */
  idle(): Promise<void>;
  stop(): Promise<void>;
}

export const defaultBackoffMs = (attempts: number): number => Math.min(300_000, 1000 * 2 ** Math.max(0, attempts));

export function startFollowupWorker(opts: FollowupWorkerOptions): FollowupWorker {
  const { app, registry } = opts;
  const log = app.logger.child({ component: 'github-followups' });
  const claimer = `followups-${process.pid}-${randomBytes(3).toString('hex')}`;
  const pollMs = opts.pollMs ?? 1000;
  const backoff = opts.backoffMs ?? defaultBackoffMs;
  const staleMs = opts.staleMs ?? 5 * 60_000;
  const busyRetryMs = opts.busyRetryMs ?? 15_000;
  let stopped = false;
  let running: Promise<void> | undefined;
  let timer: NodeJS.Timeout | undefined;
  let again = false;

  const workOne = async (f: Followup): Promise<void> => {
    const maxAttempts = app.policy.github.followup_max_attempts;
    let error: string | null = null;
    let retryAfterMs: number | undefined;
    let busy: string | undefined;
    try {
      const out = await registry.call('sync-github', { run_id: f.run_id }, { app, entry: 'webhook', actor: 'github-followup', skipDoctor: true }, { maxTier: 'write' });
      if (!out.ok) error = `${out.code}: ${out.error}`;
      else {
        const r = ((out.data.results ?? []) as Array<{ status?: string; message?: string; retry_after_s?: number }>)[0];
        if (r?.status === 'rate_limited') {
          error = r.message ?? 'rate limited';
          retryAfterMs = (r.retry_after_s ?? 60) * 1000;
        } else if (r?.status === 'error') error = r.message ?? 'sync failed';
        else if (r?.status === 'busy' || r?.status === 'stale') busy = r.message ?? r.status;
      }
    } catch (err) {
      error = errorMessage(err);
    }
    if (busy !== undefined) {
      const next = new Date(Date.now() + busyRetryMs);
      app.service.transaction(() => app.service.github.deferFollowup(f.followup_id, next, `run busy: ${busy}`));
      log.debug({ run_id: f.run_id, followup: f.followup_id, next_at: next.toISOString() }, 'run busy with another step; follow-up sync kept for later');
      return;
    }
    if (error === null) {
      app.service.transaction(() => app.service.github.finishFollowup(f.followup_id, 'done', new Date(), null));
      log.debug({ run_id: f.run_id, followup: f.followup_id }, 'follow-up sync done');
      return;
    }
    const giveUp = f.attempts >= maxAttempts;
    const next = new Date(Date.now() + (retryAfterMs ?? backoff(f.attempts)));
    app.service.transaction(() => app.service.github.finishFollowup(f.followup_id, giveUp ? 'failed' : 'queued', next, error));
    log.warn({ run_id: f.run_id, followup: f.followup_id, attempts: f.attempts, err: error, next_at: giveUp ? null : next.toISOString() }, giveUp ? 'follow-up sync failed for good' : 'follow-up sync failed; retrying later');
  };

  const drain = async (): Promise<void> => {
    do {
      again = false;
      for (;;) {
        if (stopped) return;
        let f: Followup | undefined;
        try {
          f = app.service.transaction(() => app.service.github.claimDue(claimer, staleMs));
        } catch (err) {
          log.warn({ err: errorMessage(err) }, 'could not claim a follow-up; trying again at the next poll');
          return;
        }
        if (!f) break;
        await workOne(f);
      }
    } while (again && !stopped);
  };

  const kick = (): void => {
    if (stopped) return;
    if (running) {
      again = true;
      return;
    }
    running = drain().finally(() => {
      running = undefined;
    });
  };

  const schedule = (): void => {
    if (stopped) return;
    timer = setTimeout(() => {
      kick();
      schedule();
    }, pollMs);
    timer.unref();
  };
  kick();
  schedule();

  return {
    kick,
    idle: async () => {
      while (running) await running;
    },
    stop: async () => {
      stopped = true;
      if (timer) clearTimeout(timer);
      if (running) await running;
    },
  };
}
