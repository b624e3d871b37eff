/**
 * Runs tasks one at a time per key (a chat's updates stay in the order Telegram sent them) and
 * tasks of different keys side by side, at most `concurrency` at once. The same constraint
 * grammY's runner expresses with `sequentialize`, for a poll loop that owns its own offsets.
 */
export class ChatQueue {
  private readonly tails = new Map<string, Promise<void>>();
  private readonly slots: Array<() => void> = [];
  private readonly watchers = new Set<() => void>();
  private running = 0;
  private queued = 0;

  constructor(private readonly concurrency: number) {
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError(`concurrency must be a whole number >= 1, got ${concurrency}`);
  }

  /** Tasks running or waiting. */
  get size(): number {
    return this.queued;
  }

  /** Queues `task` behind the earlier tasks of `key`; a task's failure is its own (never thrown here). */
  push(key: string, task: () => Promise<unknown>): Promise<void> {
    this.queued++;
    const prev = this.tails.get(key) ?? Promise.resolve();
    const next: Promise<void> = prev
      .then(async () => {
        await this.acquire();
        try {
          await task();
        } catch {
          // the task audits its own failures
        } finally {
          this.release();
        }
      })
      .finally(() => {
        this.queued--;
        if (this.tails.get(key) === next) this.tails.delete(key);
        for (const w of [...this.watchers]) w();
      });
    this.tails.set(key, next);
    return next;
  }

  /** Resolves when nothing is running or waiting. */
  idle(): Promise<void> {
    return this.until(() => this.queued === 0);
  }

  /** Resolves when fewer than `n` tasks are running or waiting (back-pressure for the poller). */
  belowLimit(n: number): Promise<void> {
    return this.until(() => this.queued < n);
  }

  private until(done: () => boolean): Promise<void> {
    if (done()) return Promise.resolve();
    return new Promise((resolve) => {
      const check = (): void => {
        if (!done()) return;
        this.watchers.delete(check);
        resolve();
      };
      this.watchers.add(check);
    });
  }

  private acquire(): Promise<void> {
    if (this.running < this.concurrency) {
      this.running++;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.slots.push(resolve));
  }

  private release(): void {
    const next = this.slots.shift();
    if (next) next();
    else this.running--;
  }
}
