import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { retentionBucket, shouldKeepStream } from '../../src/analysis/index.js';

describe('stream retention', () => {
  it('the bucket is int(sha1("<run_id>:<attempt_no>")[:8], 16) % 100', () => {
    // sha1("run_0123456789ab:1") computed independently of the implementation.
    const hex = createHash('sha1').update('run_0123456789ab:1').digest('hex');
    expect(retentionBucket('run_0123456789ab', 1)).toBe(parseInt(hex.slice(0, 8), 16) % 100);
    expect(retentionBucket('run_0123456789ab', 1)).toBe(retentionBucket('run_0123456789ab', 1));
  });

  it('keeps every non-PASS stream, whatever the sample', () => {
    expect(shouldKeepStream('RETRYABLE', 'run_0123456789ab', 1, 0)).toBe(true);
    expect(shouldKeepStream('HUMAN_REVIEW', 'run_0123456789ab', 2, 0)).toBe(true);
  });

  it('keeps a PASS stream exactly when its bucket is under the sample percentage', () => {
    const b = retentionBucket('run_0123456789ab', 3);
    expect(shouldKeepStream('PASS', 'run_0123456789ab', 3, b)).toBe(false);
    expect(shouldKeepStream('PASS', 'run_0123456789ab', 3, b + 1)).toBe(true);
    expect(shouldKeepStream('PASS', 'run_0123456789ab', 3, 0)).toBe(false);
    expect(shouldKeepStream('PASS', 'run_0123456789ab', 3, 100)).toBe(true);
  });

  it('samples about pct% of PASS attempts', () => {
    let kept = 0;
    for (let i = 0; i < 2000; i++) if (shouldKeepStream('PASS', `run_${i.toString(16).padStart(12, '0')}`, 1, 15)) kept++;
    expect(kept).toBeGreaterThan(200);
    expect(kept).toBeLessThan(400);
  });
});
