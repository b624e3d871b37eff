import type { Service } from '../service.js';

interface Job {
  fn: () => unknown;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

/**
 * Group commit: the ledger writes of deliveries whose bodies arrived in the same turn of the event
 * loop go into one IMMEDIATE transaction, run once that turn's I/O has been read (setImmediate),
 * instead of one transaction each. A busy receiver then takes SQLite's write lock, writes the WAL
 * and commits once per batch.
 *
 * - Each job's promise settles only after the batch has committed, so a delivery's answer never
 *   goes out before its own write is in the database; if the process dies first, nothing of the
 *   batch was answered and GitHub's redelivery finds nothing recorded.
 * - Jobs run in order, each in a savepoint: a job that throws is rolled back alone and rejects its
 *   own promise; the others commit.
 * - If BEGIN or COMMIT fails (the database is locked past the busy timeout, the disk is full),
 *   nothing of the batch is written and every job rejects with that error.
 */
export class GroupCommit {
  private jobs: Job[] = [];
  private scheduled = false;
  private readonly service: Service;
  private readonly savepoint: (fn: () => unknown) => unknown;
  private readonly maxJobs: number;

  constructor(service: Service, opts: { maxJobs?: number } = {}) {
    this.service = service;
    this.maxJobs = opts.maxJobs ?? 256;
    // Inside the outer transaction, better-sqlite3 runs a nested transaction function as a savepoint.
    this.savepoint = service.db.transaction((fn: () => unknown) => fn());
  }

  /** Runs `fn` in the next batch's transaction; resolves with its result once the batch is committed. */
  run<T>(fn: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.jobs.push({ fn, resolve: resolve as (value: unknown) => void, reject });
      if (this.jobs.length >= this.maxJobs) this.flush();
      else if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /** Commits what is queued now (also called on a schedule; a no-op when nothing is queued). */
  flush(): void {
    this.scheduled = false;
    const jobs = this.jobs;
    if (!jobs.length) return;
    this.jobs = [];
    let results: Array<{ ok: true; value: unknown } | { ok: false; err: unknown }>;
    try {
      results = this.service.transaction(() =>
        jobs.map((job) => {
          try {
            return { ok: true as const, value: this.savepoint(job.fn) };
          } catch (err) {
            return { ok: false as const, err };
          }
        }),
      );
    } catch (err) {
      for (const job of jobs) job.reject(err);
      return;
    }
    for (let i = 0; i < jobs.length; i++) {
      const r = results[i]!;
      if (r.ok) jobs[i]!.resolve(r.value);
      else jobs[i]!.reject(r.err);
    }
  }
}
