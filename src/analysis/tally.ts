/** One count, held by reference so a hot path can keep it and skip the map lookup. */
export interface Slot {
  n: number;
}

export const OTHER_KEY = '(other)';

/**
 * Counts per key with at most `maxKeys` distinct keys: once full, new keys count under
 * `(other)`, so a hostile stream cannot grow it. Keys are never removed, so the slot a key
 * resolves to stays its slot for the tally's life, and a caller may keep it.
 */
export class Tally {
  private readonly slots = new Map<string, Slot>();

  constructor(private readonly maxKeys: number) {}

  add(key: string): void {
    this.slot(key).n++;
  }

  /** The slot `key` counts into (created at 0, in first-seen order). Take it only to count into it at once. */
  slot(key: string): Slot {
    const known = this.slots.get(key);
    if (known) return known;
    const into = this.slots.size < this.maxKeys ? key : OTHER_KEY;
    let slot = this.slots.get(into);
    if (!slot) {
      slot = { n: 0 };
      this.slots.set(into, slot);
    }
    return slot;
  }

  /** Counts by key, in the order keys were first seen. */
  toRecord(): Record<string, number> {
    const out: Array<[string, number]> = [];
    for (const [k, s] of this.slots) out.push([k, s.n]);
    return Object.fromEntries(out);
  }
}
