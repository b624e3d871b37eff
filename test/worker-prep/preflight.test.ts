import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import type { App } from '../../src/app.js';
import { Registry } from '../../src/registry.js';
import { checkWorkspaceInsideRoot, runPreflight } from '../../src/worker/preflight.js';
import { TOOLS } from '../../tools/index.js';
import { makeTestApp, tempDir } from '../helpers/app.js';
import { git, makeUpstreamAndFork } from '../helpers/git.js';

const registry = new Registry(TOOLS);
const which = (t: string) => execFileSync('which', [t], { encoding: 'utf8' }).trim();

let app: App;
let cleanup: () => Promise<void>;
let tmp: string;
/** A PATH with only git and node, so toolchain detection is deterministic. */
let bin: string;

beforeEach(() => {
  tmp = tempDir('agentpr-preflight-');
  bin = join(tmp, 'bin');
  mkdirSync(bin);
  for (const t of ['git', 'node']) symlinkSync(which(t), join(bin, t));
  ({ app, cleanup } = makeTestApp({ env: { PATH: bin } }));
});
afterEach(async () => {
  await cleanup();
});

function cloneInto(repo: string, files: Record<string, string>): string {
  const remotes = makeUpstreamAndFork(tmp, files, { name: repo });
  const dir = join(app.config.workspaceRoot, repo);
  git(tmp, ['clone', '-q', remotes.forkUrl, dir]);
  return dir;
}

type Report = { ok: boolean; failed: string[]; toolchain: string[]; checks: Array<{ name: string; ok: boolean; message: string; fix: string | null }>; report_path: string; attempt_no: number };

async function preflight(runId: string): Promise<Report> {
  const r = await registry.call('run-preflight', { run_id: runId }, { app, entry: 'cli' });
  if (!r.ok) throw new Error(r.error);
  return r.data as Report;
}

describe('run-preflight', () => {
  test('a clean clone passes; the report is stored as a preflight_report artifact and a preflight attempt; the state does not change', async () => {
    cloneInto('widget', { 'README.md': 'x\n', 'package.json': '{"name":"w"}\n' });
    const stub = join(bin, 'npm');
    writeFileSync(stub, '#!/bin/sh\nexit 0\n');
    chmodSync(stub, 0o755);
    const run = app.service.createRun({ owner: 'acme', repo: 'widget', workspace_dir: join(app.config.workspaceRoot, 'widget') });
    const report = await preflight(run.run_id);
    expect(report.failed).toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.toolchain).toEqual(['node', 'npm']);
    expect(report.checks.map((c) => c.name)).toEqual(['workspace_inside_root', 'repo_present', 'git_writable', 'clean_worktree', 'toolchain', 'deps_installable']);
    const onDisk = JSON.parse(readFileSync(report.report_path, 'utf8')) as { ok: boolean; schema: string; run_id: string };
    expect(onDisk).toMatchObject({ ok: true, schema: 'agentpr.preflight_report.v1', run_id: run.run_id });
    expect(report.report_path.startsWith(join(app.config.reportsDir, run.run_id))).toBe(true);
    expect(app.service.latestArtifact(run.run_id, 'preflight_report')).toMatchObject({ uri: report.report_path, metadata: { ok: true, attempt_no: 1 } });
    expect(app.service.listAttempts(run.run_id, 'preflight')[0]).toMatchObject({ status: 'succeeded', attempt_no: 1 });
    expect(app.service.getRun(run.run_id).state).toBe('QUEUED');
  });

  test('a dirty worktree fails clean_worktree naming the files; .agentpr_runtime/ does not count', async () => {
    const dir = cloneInto('widget', { 'README.md': 'x\n' });
    mkdirSync(join(dir, '.agentpr_runtime', 'cache'), { recursive: true });
    writeFileSync(join(dir, '.agentpr_runtime', 'cache', 'x'), 'cache');
    const run = app.service.createRun({ owner: 'acme', repo: 'widget', workspace_dir: join(app.config.workspaceRoot, 'widget') });
    expect((await preflight(run.run_id)).ok).toBe(true);
    writeFileSync(join(dir, 'README.md'), 'changed\n');
    writeFileSync(join(dir, 'stray.txt'), 'new\n');
    const report = await preflight(run.run_id);
    expect(report.failed).toEqual(['clean_worktree']);
    const check = report.checks.find((c) => c.name === 'clean_worktree');
    expect(check?.message).toContain('2 uncommitted changes');
    expect(check?.message).toContain('M README.md');
    expect(check?.message).toContain('?? stray.txt');
    expect(check?.fix).toContain('git stash');
    expect(report.attempt_no).toBe(2);
    expect(app.service.listAttempts(run.run_id, 'preflight')[1]).toMatchObject({ status: 'failed', reason_code: 'preflight_failed' });
  });

  test('a missing toolchain is named with the file that needs it', async () => {
    cloneInto('crate', { 'Cargo.toml': '[package]\nname = "c"\n', 'Makefile': 'test:\n\ttrue\n' });
    const run = app.service.createRun({ owner: 'acme', repo: 'crate', workspace_dir: join(app.config.workspaceRoot, 'crate') });
    const report = await preflight(run.run_id);
    expect(report.failed).toEqual(['toolchain']);
    const check = report.checks.find((c) => c.name === 'toolchain');
    expect(check?.message).toBe('missing from PATH: cargo (needed for Cargo.toml), make (needed for Makefile)');
    expect(check?.fix).toContain('install cargo, make');
  });

  test('a workspace outside the root fails, also when reached through a symlink inside the root', async () => {
    const outside = join(tmp, 'outside', 'widget');
    mkdirSync(join(tmp, 'outside'));
    git(tmp, ['clone', '-q', makeUpstreamAndFork(tmp, { 'a': 'a' }).forkUrl, outside]);
    const run = app.service.createRun({ owner: 'acme', repo: 'widget', workspace_dir: outside });
    const report = await preflight(run.run_id);
    expect(report.failed).toEqual(['workspace_inside_root']);
    expect(report.checks[0]?.message).toContain('is outside the workspace root');

    const link = join(app.config.workspaceRoot, 'sneaky');
    symlinkSync(outside, link);
    const c = checkWorkspaceInsideRoot(link, app.config.workspaceRoot);
    expect(c.ok).toBe(false);
    expect(c.message).toContain(`(really ${outside})`);
    expect(checkWorkspaceInsideRoot(app.config.workspaceRoot, app.config.workspaceRoot).message).toContain('the workspace root itself');
  });

  test('no clone yet: repo_present fails and points at run-prepare', async () => {
    const report = await runPreflight({ repoDir: join(app.config.workspaceRoot, 'absent'), workspaceRoot: app.config.workspaceRoot, env: app.env });
    expect(report.ok).toBe(false);
    expect(report.checks.find((c) => c.name === 'repo_present')).toMatchObject({ ok: false, fix: 'run run-prepare first (it clones the repository there)' });
    expect(report.failed).toContain('git_writable');
  });

  test('a stale index.lock fails git_writable', async () => {
    const dir = cloneInto('widget', { 'README.md': 'x\n' });
    writeFileSync(join(dir, '.git', 'index.lock'), '');
    const report = await runPreflight({ repoDir: dir, workspaceRoot: app.config.workspaceRoot, env: app.env });
    expect(report.checks.find((c) => c.name === 'git_writable')).toMatchObject({ ok: false });
    expect(report.checks.find((c) => c.name === 'git_writable')?.message).toContain('index.lock exists');
  });
});
