import { createHash } from 'node:crypto';
import type { Grade } from './verdict.js';

/**
 * The raw event stream is kept for every non-PASS attempt; a PASS attempt keeps it when
 * `int(sha1("<run_id>:<attempt_no>")[:8], 16) % 100 < pct`, so the same attempt always decides the same way.
 */
export function retentionBucket(runId: string, attemptNo: number): number {
  const hex = createHash('sha1').update(`${runId}:${attemptNo}`).digest('hex').slice(0, 8);
  return Number.parseInt(hex, 16) % 100;
}

export function shouldKeepStream(grade: Grade, runId: string, attemptNo: number, samplePct: number): boolean {
  if (grade !== 'PASS') return true;
  return retentionBucket(runId, attemptNo) < samplePct;
}
