/**
 * Whether the manager's model may be asked right now. A failed request (timeout, refused
 * connection, 5xx) marks the model down: for the rest of that tick the rules decide without
 * asking, and for `cooldownSec` after it no later tick in this process asks either, so a model
 * that is down costs one timeout, not one per run per tick.
 */
export class ModelHealth {
  private downUntil = 0;
  private reason: string | null = null;

  constructor(private readonly now: () => number = Date.now) {}

  /** Null when the model may be asked; otherwise why not, for the decision's reason. */
  unavailable(): string | null {
    if (!this.reason) return null;
    if (this.now() >= this.downUntil) {
      this.reason = null;
      return null;
    }
    return this.reason;
  }

  markDown(error: string, cooldownSec: number): void {
    this.downUntil = this.now() + cooldownSec * 1000;
    const until = new Date(this.downUntil).toISOString();
    this.reason = `the model failed (${error}); not asked again until ${until}`;
  }
}

const byApp = new WeakMap<object, ModelHealth>();

/** One health record per App (the loop's ticks share it; a new process starts fresh). */
export function modelHealthOf(app: object): ModelHealth {
  let h = byApp.get(app);
  if (!h) {
    h = new ModelHealth();
    byApp.set(app, h);
  }
  return h;
}
