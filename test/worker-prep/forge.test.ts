import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import type { App } from '../../src/app.js';
import { Registry } from '../../src/registry.js';
import { forgeScriptPath } from '../../src/worker/forge.js';
import { TOOLS } from '../../tools/index.js';
import { makeTestApp, tempDir } from '../helpers/app.js';
import { dbFingerprint } from '../helpers/db.js';
import { commitToBare, git, GIT_TEST_ENV, logOf, makeUpstreamAndFork, type UpstreamAndFork } from '../helpers/git.js';

const registry = new Registry(TOOLS);
const BASH = execFileSync('which', ['bash'], { encoding: 'utf8' }).trim();

let app: App;
let cleanup: () => Promise<void>;
let tmp: string;
let remotes: UpstreamAndFork;

beforeEach(() => {
  tmp = tempDir('agentpr-forge-');
  remotes = makeUpstreamAndFork(tmp, { 'README.md': '# widget\n', 'src/index.js': 'export const x = 1;\n' });
  // No git identity from the machine: finish.sh must fall back to its own.
  ({ app, cleanup } = makeTestApp({ env: { HOME: tmp, XDG_CONFIG_HOME: join(tmp, 'xdg'), GIT_CONFIG_NOSYSTEM: '1', GIT_AUTHOR_NAME: '', GIT_COMMITTER_EMAIL: '' } }));
});
afterEach(async () => {
  await cleanup();
});

/** A killed child may linger briefly as a zombie until it is reaped: that counts as dead. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
}

const call = (name: string, args: Record<string, unknown>) => registry.call(name, args, { app, entry: 'mcp' });

function ok<T extends { ok: boolean }>(r: T): Extract<T, { ok: true }> {
  if (!r.ok) throw new Error(`tool call failed: ${JSON.stringify(r)}`);
  return r as Extract<T, { ok: true }>;
}

async function preparedRun(feature?: string) {
  const run = app.service.createRun({ owner: 'acme', repo: 'widget' });
  const r = ok(await call('run-prepare', { run_id: run.run_id, upstream_url: remotes.upstreamUrl, fork_url: remotes.forkUrl, ...(feature ? { feature } : {}) }));
  return { run, data: r.data as { ok: boolean; state: string; outputs: Record<string, string>; attempt_no: number; stdout_log: string; stderr_log: string } };
}

describe('run-prepare', () => {
  test('moves QUEUED to DISCOVERY, clones the fork into the workspace and creates the feature branch', async () => {
    const { run, data } = await preparedRun();
    expect(data.ok).toBe(true);
    expect(data.state).toBe('DISCOVERY');
    expect(run.workspace_dir).toBe(join(app.config.workspaceRoot, run.owner, 'widget', run.run_id));
    expect(existsSync(join(run.workspace_dir, 'README.md'))).toBe(true);
    expect(data.outputs.branch).toMatch(/^feature\/forge-\d{8}-\d{6}$/);
    expect(data.outputs.base).toBe('main');
    expect(git(run.workspace_dir, ['symbolic-ref', '--short', 'HEAD'])).toBe(data.outputs.branch);
    expect(git(run.workspace_dir, ['remote', 'get-url', 'origin'])).toBe(remotes.forkUrl);
    expect(git(run.workspace_dir, ['remote', 'get-url', 'upstream'])).toBe(remotes.upstreamUrl);
    expect(readFileSync(join(run.workspace_dir, '.git', 'info', 'exclude'), 'utf8')).toContain('.agentpr_runtime/');

    const [attempt] = app.service.listAttempts(run.run_id, 'prepare');
    expect(attempt).toMatchObject({ status: 'succeeded', exit_code: 0, attempt_no: 1 });
    expect(attempt?.duration_ms).toBeGreaterThanOrEqual(0);
    expect(attempt?.metadata).toMatchObject({ branch: data.outputs.branch, base: 'main', base_sha: remotes.initialSha, owner_pid: process.pid });
    expect(attempt?.stdout_log).toBe(join(app.config.reportsDir, run.run_id, 'prepare-1.stdout.log'));
    expect(readFileSync(attempt?.stdout_log ?? '', 'utf8')).toContain(`AGENTPR_BRANCH=${data.outputs.branch}`);
    expect(readFileSync(attempt?.stderr_log ?? '', 'utf8')).toContain('cloning');
    const events = app.service.listEvents(run.run_id).map((e) => e.event_type);
    expect(events).toEqual(['command.run.create', 'command.start.discovery']);
  });

  test('a second prepare reuses the clone and rebases the same feature branch onto new upstream commits', async () => {
    const { run } = await preparedRun('feature/fix-x');
    writeFileSync(join(run.workspace_dir, 'local.txt'), 'mine\n');
    git(run.workspace_dir, ['add', 'local.txt']);
    git(run.workspace_dir, ['commit', '-q', '-m', 'local work']);
    const upstreamSha = commitToBare(remotes.upstreamDir, 'main', { 'CHANGELOG.md': 'new upstream\n' });
    const again = ok(await call('run-prepare', { run_id: run.run_id, feature: 'feature/fix-x', upstream_url: remotes.upstreamUrl, fork_url: remotes.forkUrl }));
    expect(again.data, JSON.stringify(again.data)).toMatchObject({ ok: true, state: 'DISCOVERY', attempt_no: 2 });
    const subjects = logOf(run.workspace_dir, 'HEAD').map((c) => c.subject);
    expect(subjects).toEqual(['local work', 'upstream change', 'initial commit']);
    expect(git(run.workspace_dir, ['merge-base', '--is-ancestor', upstreamSha, 'HEAD'])).toBe('');
  });

  test('a failing script records script_failed with its last stderr line and moves the run to FAILED_RETRYABLE', async () => {
    const run = app.service.createRun({ owner: 'acme', repo: 'widget' });
    const missing = join(tmp, 'no-such-fork.git');
    const r = ok(await call('run-prepare', { run_id: run.run_id, upstream_url: remotes.upstreamUrl, fork_url: missing }));
    expect(r.data).toMatchObject({ ok: false, state: 'FAILED_RETRYABLE' });
    const after = app.service.getRun(run.run_id);
    expect(after.state).toBe('FAILED_RETRYABLE');
    expect(after.last_error).toBe(`prepare:script_failed:prepare.sh: error: git clone ${missing} failed; check the URL and your access`);
    const [attempt] = app.service.listAttempts(run.run_id, 'prepare');
    expect(attempt).toMatchObject({ status: 'failed', reason_code: 'script_failed', exit_code: 1 });
    expect(readFileSync(attempt?.stderr_log ?? '', 'utf8')).toContain(`fatal: repository '${missing}' does not exist`);
    const failed = app.service.listEvents(run.run_id).at(-1);
    expect(failed?.event_type).toBe('worker.step.failed');
    expect(failed?.payload).toMatchObject({ step: 'prepare', reason_code: 'script_failed' });
  });

  test('a hanging script is killed with its whole process group at timeout_sec and records timer.timeout', async () => {
    const scripts = join(tmp, 'scripts');
    mkdirSync(scripts);
    const pidFile = join(tmp, 'child.pid');
    writeFileSync(join(scripts, 'prepare.sh'), `(trap '' TERM; exec sleep 300) &\necho $! > '${pidFile}'\nsleep 300\n`);
    await cleanup();
    // The script reports its child's pid: a host pid only outside a PID namespace.
    ({ app, cleanup } = makeTestApp({ env: { AGENTPR_FORGE_SCRIPTS_DIR: scripts, AGENTPR_WORKER_CONTAINMENT: 'session' } }));
    const run = app.service.createRun({ owner: 'acme', repo: 'widget' });
    const r = ok(await call('run-prepare', { run_id: run.run_id, timeout_sec: 1, upstream_url: remotes.upstreamUrl, fork_url: remotes.forkUrl }));
    expect(r.data).toMatchObject({ ok: false, timed_out: true, state: 'FAILED_RETRYABLE' });
    expect(app.service.getRun(run.run_id).last_error).toBe('timeout:prepare');
    expect(app.service.listAttempts(run.run_id, 'prepare')[0]).toMatchObject({ status: 'timed_out', reason_code: 'timeout' });
    const childPid = Number(readFileSync(pidFile, 'utf8').trim());
    expect(alive(childPid)).toBe(false);
  });

  test('refuses a run in the wrong state or with a workspace outside the root, changing nothing', async () => {
    const run = app.service.createRun({ owner: 'acme', repo: 'widget' });
    app.service.applyEvent({ run_id: run.run_id, event_type: 'command.start.discovery' });
    app.service.applyEvent({ run_id: run.run_id, event_type: 'worker.discovery.completed', payload: { contract_path: '/c.md' } });
    let before = dbFingerprint(app.db);
    const wrong = await call('run-prepare', { run_id: run.run_id, upstream_url: remotes.upstreamUrl, fork_url: remotes.forkUrl });
    expect(wrong).toMatchObject({ ok: false, code: 'invalid_input' });
    expect(!wrong.ok && wrong.error).toContain('is in PLAN_READY');
    expect(dbFingerprint(app.db)).toBe(before);

    const outside = app.service.createRun({ owner: 'acme', repo: 'gadget', workspace_dir: join(tmp, 'elsewhere', 'gadget') });
    before = dbFingerprint(app.db);
    const refused = await call('run-prepare', { run_id: outside.run_id, upstream_url: remotes.upstreamUrl, fork_url: remotes.forkUrl });
    expect(refused).toMatchObject({ ok: false, code: 'invalid_input' });
    expect(!refused.ok && refused.error).toContain(`is outside the workspace root`);
    expect(dbFingerprint(app.db)).toBe(before);
    expect(existsSync(join(tmp, 'elsewhere'))).toBe(false);
  });
});

async function toLocalValidating(runId: string) {
  app.service.applyEvent({ run_id: runId, event_type: 'worker.discovery.completed', payload: { contract_path: '/contracts/c.md' } });
  app.service.applyEvent({ run_id: runId, event_type: 'command.start.implementation' });
  app.service.applyEvent({ run_id: runId, event_type: 'command.local.validation.passed' });
}

describe('run-finish', () => {
  test('commits tracked and new files (not .agentpr_runtime), pushes to the fork and moves to PUSHED', async () => {
    const { run, data } = await preparedRun();
    await toLocalValidating(run.run_id);
    const ws = run.workspace_dir;
    writeFileSync(join(ws, 'README.md'), '# widget\n\nFixed.\n');
    writeFileSync(join(ws, 'src', 'new.test.js'), 'test("x", () => {});\n');
    mkdirSync(join(ws, '.agentpr_runtime', 'cache'), { recursive: true });
    writeFileSync(join(ws, '.agentpr_runtime', 'cache', 'junk'), 'cache\n');

    const r = ok(await call('run-finish', { run_id: run.run_id, changes: 'Fix the README\n\nand add a test', project: 'widget' }));
    expect(r.data, JSON.stringify(r.data)).toMatchObject({ ok: true, state: 'PUSHED', exit_code: 0 });
    const branch = data.outputs.branch ?? '';
    const headSha = (r.data as { outputs: Record<string, string> }).outputs.head_sha;

    const pushed = logOf(remotes.forkDir, branch);
    expect(pushed[0]).toEqual({ sha: headSha, subject: 'widget: Fix the README and add a test' });
    expect(pushed[1]?.sha).toBe(remotes.initialSha);
    const files = git(remotes.forkDir, ['show', '--name-only', '--format=', branch]).split('\n').sort();
    expect(files).toEqual(['README.md', 'src/new.test.js']);
    expect(git(remotes.forkDir, ['log', '-1', '--format=%an <%ae>', branch])).toBe('agentpr <agentpr@localhost>');
    expect(git(remotes.forkDir, ['log', '-1', '--format=%b', branch])).toBe('Fix the README\n\nand add a test');

    const after = app.service.getRun(run.run_id);
    expect(after.state).toBe('PUSHED');
    const artifact = app.service.latestArtifact(run.run_id, 'branch');
    expect(artifact).toMatchObject({ uri: branch, metadata: { head_sha: headSha } });
    const [attempt] = app.service.listAttempts(run.run_id, 'finish');
    expect(attempt).toMatchObject({ status: 'succeeded', exit_code: 0, metadata: { branch, head_sha: headSha } });
  });

  test('nothing to commit is a script failure: FAILED_RETRYABLE with the reason as last_error', async () => {
    const { run } = await preparedRun();
    await toLocalValidating(run.run_id);
    const r = ok(await call('run-finish', { run_id: run.run_id, changes: 'nothing really' }));
    expect(r.data).toMatchObject({ ok: false, state: 'FAILED_RETRYABLE', exit_code: 1 });
    expect(app.service.getRun(run.run_id).last_error).toMatch(/^finish:script_failed:finish\.sh: error: nothing to commit on feature\/forge-/);
    expect(app.service.listAttempts(run.run_id, 'finish')[0]).toMatchObject({ status: 'failed', reason_code: 'script_failed' });
  });

  test('needs LOCAL_VALIDATING', async () => {
    const { run } = await preparedRun();
    const before = dbFingerprint(app.db);
    const r = await call('run-finish', { run_id: run.run_id, changes: 'x' });
    expect(r).toMatchObject({ ok: false, code: 'invalid_input' });
    expect(!r.ok && r.error).toContain('LOCAL_VALIDATING');
    expect(dbFingerprint(app.db)).toBe(before);
  });
});

describe('the scripts themselves', () => {
  const finish = (cwd: string, args: string[], env: NodeJS.ProcessEnv = {}) => {
    try {
      const stdout = execFileSync('bash', [forgeScriptPath('finish'), ...args], { cwd, env: { ...process.env, ...GIT_TEST_ENV, ...env }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      return { code: 0, stdout, stderr: '' };
    } catch (e) {
      const err = e as { status: number; stdout: string; stderr: string };
      return { code: err.status, stdout: err.stdout, stderr: err.stderr };
    }
  };
  const prepare = (cwd: string, args: string[], env: NodeJS.ProcessEnv = {}) => {
    try {
      const stdout = execFileSync(BASH, [forgeScriptPath('prepare'), ...args], { cwd, env: { ...process.env, ...GIT_TEST_ENV, PATH: process.env.PATH, ...env }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      return { code: 0, stdout, stderr: '' };
    } catch (e) {
      const err = e as { status: number; stdout: string; stderr: string };
      return { code: err.status, stdout: err.stdout, stderr: err.stderr };
    }
  };
  const remotesEnv = () => ({ AGENTPR_FORGE_UPSTREAM_URL: remotes.upstreamUrl, AGENTPR_FORGE_FORK_URL: remotes.forkUrl });

  test('prepare.sh: usage errors exit 2; stdout holds only AGENTPR_ lines, AGENTPR_BRANCH last; base detected from a non-main default', async () => {
    expect(prepare(tmp, ['only-owner'])).toMatchObject({ code: 2 });
    expect(prepare(tmp, ['acme', 'widget', 'main', 'bad branch name'], remotesEnv()).stderr).toContain("FEATURE 'bad branch name' is not a valid branch name");
    const dev = makeUpstreamAndFork(tmp, { 'a.txt': 'a\n' }, { defaultBranch: 'develop', name: 'dev' });
    const r = prepare(tmp, ['acme', 'dev'], { AGENTPR_FORGE_UPSTREAM_URL: dev.upstreamUrl, AGENTPR_FORGE_FORK_URL: dev.forkUrl });
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines.every((l) => l.startsWith('AGENTPR_'))).toBe(true);
    expect(lines).toContain('AGENTPR_BASE=develop');
    expect(lines.at(-1)).toMatch(/^AGENTPR_BRANCH=feature\/forge-/);
    // Only one URL set is ambiguous: refused with the reason.
    const half = prepare(tmp, ['acme', 'other'], { AGENTPR_FORGE_UPSTREAM_URL: dev.upstreamUrl });
    expect(half.code).toBe(1);
    expect(half.stderr.trim().split('\n').at(-1)).toContain('AGENTPR_FORGE_FORK_URL is not');
  });

  test('prepare.sh: without remotes and without gh on PATH it says how to fix it', () => {
    const bin = join(tmp, 'bin');
    mkdirSync(bin);
    execFileSync('ln', ['-s', execFileSync('which', ['git'], { encoding: 'utf8' }).trim(), join(bin, 'git')]);
    for (const tool of ['date', 'sed', 'dirname', 'head', 'ls', 'mkdir', 'tr', 'grep', 'rmdir']) {
      const p = execFileSync('which', [tool], { encoding: 'utf8' }).trim();
      execFileSync('ln', ['-s', p, join(bin, tool)]);
    }
    const r = prepare(tmp, ['acme', 'widget'], { PATH: bin });
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n').at(-1)).toMatch(/GitHub CLI \(gh\) is not installed; install gh .* or set AGENTPR_FORGE_UPSTREAM_URL and AGENTPR_FORGE_FORK_URL/);
  });

  test('prepare.sh refuses a reused clone with uncommitted changes; finish.sh refuses the base branch and a detached HEAD', () => {
    const ws = join(tmp, 'ws');
    mkdirSync(ws);
    expect(prepare(ws, ['acme', 'widget', 'main', 'feature/a'], remotesEnv()).code).toBe(0);
    const clone = join(ws, 'widget');
    writeFileSync(join(clone, 'README.md'), 'dirty\n');
    const dirty = prepare(ws, ['acme', 'widget', 'main', 'feature/a'], remotesEnv());
    expect(dirty.code).toBe(1);
    expect(dirty.stderr).toContain('has uncommitted changes to tracked files');
    git(clone, ['checkout', '-q', '--', '.']);
    git(clone, ['checkout', '-q', 'main']);
    writeFileSync(join(clone, 'README.md'), 'on main\n');
    const onBase = finish(clone, ['change on main']);
    expect(onBase.code).toBe(1);
    expect(onBase.stderr).toContain("refusing to commit on the base branch 'main'");
    git(clone, ['checkout', '-q', '--detach']);
    expect(finish(clone, ['x']).stderr).toContain('HEAD is detached');
    expect(finish(clone, ['   \n  ']).code).toBe(2);
  });

  test('finish.sh: the title is one line, trimmed and capped at 72 characters; a given TITLE wins', () => {
    const ws = join(tmp, 'ws2');
    mkdirSync(ws);
    expect(prepare(ws, ['acme', 'widget', '', 'feature/t'], remotesEnv()).code).toBe(0);
    const clone = join(ws, 'widget');
    writeFileSync(join(clone, 'a.txt'), '1\n');
    const long = `  Make   the widget\n\tfaster ${'and better '.repeat(10)}\n`;
    const r = finish(clone, [long]);
    expect(r.code).toBe(0);
    const title = /^AGENTPR_TITLE=(.*)$/m.exec(r.stdout)?.[1] ?? '';
    expect(title.length).toBeLessThanOrEqual(72);
    expect(title).toMatch(/^Make the widget faster and better .*\.\.\.$/);
    expect(logOf(remotes.forkDir, 'feature/t')[0]?.subject).toBe(title);
    writeFileSync(join(clone, 'b.txt'), '2\n');
    const t = finish(clone, ['details\nmore', 'proj', 'Given\ntitle']);
    expect(/^AGENTPR_TITLE=(.*)$/m.exec(t.stdout)?.[1]).toBe('Given title');
    expect(/^AGENTPR_HEAD_SHA=([0-9a-f]{40})$/m.exec(t.stdout)?.[1]).toBe(logOf(remotes.forkDir, 'feature/t')[0]?.sha);
  });
});
