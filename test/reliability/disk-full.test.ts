import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, expect, test } from 'vitest';
import { makeHarness, ok, preparedRun, toImplementing, type Harness } from '../worker/harness.js';

/**
 * Issue 14: a disk that fills during a step ends the attempt with a reason (disk_full); nothing a
 * step does takes the server down. The reports of the run live on a 1 MiB tmpfs while the worker
 * writes 4 MiB of stream. Needs root (to mount); elsewhere the test is skipped with that reason.
 */

function canMount(): boolean {
  if (process.getuid?.() !== 0) return false;
  try {
    const probe = join('/tmp', `agentpr-mount-probe-${process.pid}`);
    mkdirSync(probe, { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', probe], { stdio: 'ignore' });
    execFileSync('umount', [probe], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const HELP_DIR = join(import.meta.dirname, '..', 'fixtures', 'codex');
const mounted: string[] = [];
let h: Harness | undefined;
afterEach(async () => {
  for (const m of mounted.splice(0)) {
    try {
      execFileSync('umount', ['-l', m], { stdio: 'ignore' });
    } catch {
      // not mounted
    }
  }
  await h?.cleanup();
  h = undefined;
});

test.runIf(canMount())('a disk that fills during the agent step: the attempt fails with disk_full and the server keeps answering (skipped unless root may mount a tmpfs)', async () => {
  h = makeHarness();
  const { runId } = await preparedRun(h);
  await toImplementing(h, runId);
  const reports = join(h.app.config.reportsDir, runId);
  mkdirSync(reports, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', reports]);
  mounted.push(reports);
  const flood = join(h.tmp, 'flood-codex');
  writeFileSync(
    flood,
    // Answers the version and help probes as codex 0.171.0 does, then floods.
    `#!/bin/bash\nif [ "$1" = "--version" ]; then cat '${HELP_DIR}/version-0.171.0.txt'; exit 0; fi\nfor a in "$@"; do if [ "$a" = "--help" ]; then cat '${HELP_DIR}/exec-help-0.171.0.txt'; exit 0; fi; done\necho '{"type":"thread.started","thread_id":"t"}'\nyes '{"type":"item.completed","item":{"id":"i","type":"agent_message","text":"filling the disk filling the disk filling the disk"}}' | head -n 50000\nsleep 30\n`,
  );
  chmodSync(flood, 0o755);
  h.setEnv({ AGENTPR_CODEX_BIN: flood });
  const t0 = Date.now();
  const r = await h.call('run-agent-step', { run_id: runId, prompt: 'Fill the disk.', max_agent_seconds: 120 });
  const data = ok(r);
  expect(data.reason_code).toBe('disk_full');
  expect(Date.now() - t0).toBeLessThan(60_000);
  expect(h.app.service.listAttempts(runId, 'agent')[0]).toMatchObject({ status: 'failed', reason_code: 'disk_full' });
  expect(h.app.service.getRun(runId)).toMatchObject({ state: 'FAILED_RETRYABLE' });
  expect(h.app.service.leases.list()).toEqual([]);
  // Still answering.
  expect(ok(await h.call('show-run', { run_id: runId })).run).toMatchObject({ run_id: runId });
}, 120_000);

test.runIf(canMount())('a full disk under the clone is reported as disk_full, not as a missing repository (skipped unless root may mount a tmpfs)', async () => {
  h = makeHarness();
  const runId = (ok(await h.call('create-run', { owner: 'octo', repo: 'demo' })).run as { run_id: string; workspace_dir: string }).run_id;
  const workspace = h.app.service.getRun(runId).workspace_dir;
  const parent = join(workspace, '..');
  mkdirSync(parent, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', parent]);
  mounted.push(parent);
  expect(ok(await h.call('run-prepare', { run_id: runId })).ok).toBe(true);
  await toImplementing(h, runId);
  writeFileSync(join(workspace, 'README.md'), 'changed\n');
  try {
    execFileSync('dd', ['if=/dev/zero', `of=${join(parent, 'fill')}`, 'bs=4k'], { stdio: 'ignore' });
  } catch {
    // dd stops with ENOSPC: the disk is full now
  }
  const r = await h.call('run-agent-step', { run_id: runId, prompt: 'Anything.' });
  expect(r.ok).toBe(false);
  expect(r.ok ? '' : r.error).toMatch(/^disk_full: checking .* failed: .*; nothing was changed/);
  expect(h.app.service.listAttempts(runId, 'agent')).toEqual([]);
}, 120_000);
