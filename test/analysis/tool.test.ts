import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Registry } from '../../src/registry.js';
import { TOOLS } from '../../tools/index.js';
import type { App } from '../../src/app.js';
import { makeTestApp } from '../helpers/app.js';
import { FIXTURES } from './helpers.js';

const DEXTER2 = join(FIXTURES, 'calib_dexter_20260225_r2_20260225T010449205273Z.jsonl');
let app: App;
let home: string;
let cleanup: () => Promise<void>;
const registry = new Registry(TOOLS);

beforeAll(() => {
  ({ app, home, cleanup } = makeTestApp());
});
afterAll(async () => cleanup());

describe('analyze-stream tool', () => {
  it('returns the digest and prints the insight as its text', async () => {
    const r = await registry.call('analyze-stream', { path: DEXTER2, state: 'LOCAL_VALIDATING', attempt_no: 2 }, { app, entry: 'cli' });
    if (!r.ok) throw new Error(r.error);
    const data = r.data as { digest: { classification: { reason_code: string }; commands: { total: number }; run: { run_id: string | null } }; insight_markdown: string; keep_stream: boolean; target_state: string };
    expect(data.digest.classification.reason_code).toBe('test_command_failed');
    expect(data.digest.commands.total).toBe(11);
    expect(data.digest.run.run_id).toBeNull();
    expect(data.keep_stream).toBe(true);
    expect(data.target_state).toBe('NEEDS_HUMAN_REVIEW');
    expect(r.text).toBe(data.insight_markdown);
    expect(r.text).toMatch(/^# Manager Insight\n/);
    expect(r.text).toContain('- Run: `(no run)`');
  });

  it('applies policy overrides and exit code', async () => {
    const pass = await registry.call('analyze-stream', { path: DEXTER2, policy: { known_test_failure_allowlist: ['TS2322', 'gateway-debug\\.log'] } }, { app, entry: 'cli' });
    expect(pass.ok && (pass.data.digest as { classification: { reason_code: string } }).classification.reason_code).toBe('runtime_success_allowlisted_test_failures');
    const failed = await registry.call('analyze-stream', { path: DEXTER2, exit_code: 1, stderr: 'error: 401 Unauthorized' }, { app, entry: 'cli' });
    expect(failed.ok && (failed.data.digest as { classification: { reason_code: string } }).classification.reason_code).toBe('runtime_hard_failure');
  });

  it('a missing file is invalid input with the path in the message', async () => {
    const r = await registry.call('analyze-stream', { path: '/nope/stream.jsonl' }, { app, entry: 'cli' });
    expect(r).toMatchObject({ ok: false, code: 'invalid_input' });
    expect(!r.ok && r.error).toContain('stream file not found: /nope/stream.jsonl');
  });

  it('remote entries may read only streams under the agentpr home or workspace root', async () => {
    const outside = await registry.call('analyze-stream', { path: DEXTER2 }, { app, entry: 'telegram' });
    expect(outside).toMatchObject({ ok: false, code: 'invalid_input' });
    expect(!outside.ok && outside.error).toContain('is outside the allowed roots');
    const stored = join(home, 'reports', 'run_0123456789ab');
    mkdirSync(stored, { recursive: true });
    copyFileSync(DEXTER2, join(stored, 'agent_1.jsonl'));
    const inside = await registry.call('analyze-stream', { path: join(stored, 'agent_1.jsonl') }, { app, entry: 'telegram' });
    expect(inside.ok).toBe(true);
  });

  it('is a read-tier tool', () => {
    expect(registry.get('analyze-stream')).toMatchObject({ tier: 'read', annotations: { readOnlyHint: true } });
  });
});
