import type { Statement } from 'better-sqlite3';
import { RefusedError } from '../registry.js';
import type { DB } from './db.js';
import { describeHolder, type Holder } from './holder.js';

/** The steps that hold a run's lease while they run. */
export type LeasedStep = 'prepare' | 'preflight' | 'agent' | 'finish' | 'pr_create' | 'github_sync' | (string & {});

export interface Lease {
  run_id: string;
  step: LeasedStep;
  attempt_id: number;
  holder: Holder;
  acquired_at: string;
  heartbeat_at: string;
  expires_at: string;
}

export type AcquireResult = { ok: true; lease: Lease; reclaimed: { lease: Lease; why: string } | null } | { ok: false; held: Lease };

/**
 * One active step per run, across processes. Each call runs inside the caller's write
 * transaction: `acquire` in the one that inserts the attempt, `release` in the one that closes
 * it, so an attempt is running exactly while its lease exists.
 *
 * A PostgreSQL store implements the same contract with `SELECT ... FROM run_leases WHERE run_id
 * = $1 FOR UPDATE SKIP LOCKED` (a row locked by another transaction counts as held) followed by
 * the same INSERT / UPDATE; `heartbeat` and `expired` are plain UPDATE / SELECT statements.
 */
export interface LeaseStore {
  /**
   * Takes the run's lease for `attempt_id`. A lease whose holder is gone (`gone` returns why) is
   * reclaimed and returned so the caller can close its attempt; a live one is returned as held.
   */
  acquire(input: { run_id: string; step: LeasedStep; attempt_id: number; holder: Holder; ttl_ms: number; now: number; gone: (l: Lease) => string | null }): AcquireResult;
  /** Drops the lease of this attempt, if it still has it. */
  release(attemptId: number): boolean;
  /** Extends every lease this holder has; returns how many. */
  heartbeat(holder: Holder, ttlMs: number, now: number): number;
  get(runId: string): Lease | undefined;
  forAttempt(attemptId: number): Lease | undefined;
  list(): Lease[];
}

/** A second caller's refusal: names the holder and the step it runs. */
export class LeaseHeldError extends RefusedError {
  readonly lease: Lease;
  constructor(lease: Lease, wanted: string) {
    super(
      `run ${lease.run_id} is busy: its ${lease.step} step (attempt ${lease.attempt_id}) is held by ${describeHolder(lease.holder)} since ${lease.acquired_at} (heartbeat ${lease.heartbeat_at}); ${wanted} was not started and nothing changed. Wait for it to finish (inspect-run shows it) or stop that process.`,
    );
    this.name = 'LeaseHeldError';
    this.lease = lease;
  }
}

interface LeaseRow {
  run_id: string;
  step: string;
  attempt_id: number;
  holder_host: string;
  holder_boot_id: string | null;
  holder_pid: number;
  holder_proc_start: string | null;
  acquired_at: string;
  heartbeat_at: string;
  expires_at: string;
}

function toLease(r: LeaseRow): Lease {
  return {
    run_id: r.run_id,
    step: r.step,
    attempt_id: r.attempt_id,
    holder: { host: r.holder_host, boot_id: r.holder_boot_id, pid: r.holder_pid, proc_start: r.holder_proc_start },
    acquired_at: r.acquired_at,
    heartbeat_at: r.heartbeat_at,
    expires_at: r.expires_at,
  };
}

const iso = (ms: number) => new Date(ms).toISOString();

/** The default store: a row per run in `run_leases`, guarded by SQLite's write lock. */
export class SqliteLeaseStore implements LeaseStore {
  private readonly st: Record<'get' | 'forAttempt' | 'list' | 'insert' | 'delete' | 'release' | 'heartbeat', Statement>;

  constructor(private readonly db: DB) {
    this.st = {
      get: db.prepare(`SELECT * FROM run_leases WHERE run_id = ?`),
      forAttempt: db.prepare(`SELECT * FROM run_leases WHERE attempt_id = ?`),
      list: db.prepare(`SELECT * FROM run_leases ORDER BY acquired_at`),
      insert: db.prepare(`INSERT INTO run_leases (run_id, step, attempt_id, holder_host, holder_boot_id, holder_pid, holder_proc_start, acquired_at, heartbeat_at, expires_at)
        VALUES (@run_id, @step, @attempt_id, @host, @boot_id, @pid, @proc_start, @now, @now, @expires)`),
      delete: db.prepare(`DELETE FROM run_leases WHERE run_id = ?`),
      release: db.prepare(`DELETE FROM run_leases WHERE attempt_id = ?`),
      heartbeat: db.prepare(`UPDATE run_leases SET heartbeat_at = @now, expires_at = @expires
        WHERE holder_host = @host AND holder_pid = @pid AND holder_boot_id IS @boot_id AND holder_proc_start IS @proc_start`),
    };
  }

  private assertInTransaction(): void {
    if (!this.db.inTransaction) throw new Error('lease store calls must run inside the write transaction that starts or closes the attempt');
  }

  acquire(input: Parameters<LeaseStore['acquire']>[0]): AcquireResult {
    this.assertInTransaction();
    let reclaimed: { lease: Lease; why: string } | null = null;
    const row = this.st.get.get(input.run_id) as LeaseRow | undefined;
    if (row) {
      const held = toLease(row);
      const why = input.gone(held);
      if (why === null) return { ok: false, held };
      this.st.delete.run(input.run_id);
      reclaimed = { lease: held, why };
    }
    const now = iso(input.now);
    this.st.insert.run({ run_id: input.run_id, step: input.step, attempt_id: input.attempt_id, ...input.holder, now, expires: iso(input.now + input.ttl_ms) });
    return { ok: true, lease: this.get(input.run_id)!, reclaimed };
  }

  release(attemptId: number): boolean {
    this.assertInTransaction();
    return this.st.release.run(attemptId).changes > 0;
  }

  heartbeat(holder: Holder, ttlMs: number, now: number): number {
    return this.st.heartbeat.run({ ...holder, now: iso(now), expires: iso(now + ttlMs) }).changes;
  }

  get(runId: string): Lease | undefined {
    const row = this.st.get.get(runId) as LeaseRow | undefined;
    return row ? toLease(row) : undefined;
  }

  forAttempt(attemptId: number): Lease | undefined {
    const row = this.st.forAttempt.get(attemptId) as LeaseRow | undefined;
    return row ? toLease(row) : undefined;
  }

  list(): Lease[] {
    return (this.st.list.all() as LeaseRow[]).map(toLease);
  }
}
