import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function tmp(prefix = 'agentpr-bench-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

export const round = (x: number, digits = 2): number => Number(x.toFixed(digits));

/** True when this module is the process's entry point (so a bench file can also run alone). */
export function isMain(metaUrl: string): boolean {
  const entry = process.argv[1];
  return Boolean(entry) && metaUrl === new URL(`file://${entry}`).href;
}

/**
 * A target as the bench reports it: the measured ratio against the same-run baseline, the bound,
 * and `pass`. Ratios are what compare across machines; absolute figures move with the load.
 */
export function ratioTarget(ratio: number, op: '>=' | '<=', bound: number, what: string): { ratio: number; target: string; pass: boolean } {
  const r = round(ratio, 3);
  return { ratio: r, target: `${what} ${op} ${bound}`, pass: op === '>=' ? ratio >= bound : ratio <= bound };
}

/**
 * How time grows from size `n` to size `10n`: `per_item_growth` is (time per item at 10x) /
 * (time per item at 1x); 1.0 is perfectly linear, 10 would be quadratic. `linear` allows 1.5.
 */
export function growth(n: number, ms1: number, ms10: number): { sizes: [number, number]; ms: [number, number]; per_item_growth: number; linear: boolean } {
  const g = ms10 / 10 / ms1;
  return { sizes: [n, n * 10], ms: [round(ms1, 1), round(ms10, 1)], per_item_growth: round(g, 2), linear: g <= 1.5 };
}
