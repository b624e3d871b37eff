import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, test } from 'vitest';
import { tempDir as makeTempDir } from '../helpers/app.js';

const ROOT = join(import.meta.dirname, '..', '..');
const DEMO = join(ROOT, 'dist', 'src', 'demo', 'main.js');
const FAKE_CODEX = join(ROOT, 'test', 'fixtures', 'bin', 'fake-codex');

const made: string[] = [];
function tempDir(prefix: string): string {
  const d = makeTempDir(prefix);
  made.push(d);
  return d;
}
afterAll(() => {
  for (const d of made) rmSync(d, { recursive: true, force: true });
});

/** A network namespace with only loopback up, where the machine allows one (root, or user namespaces). */
const NETNS = spawnSync('unshare', ['-n', 'sh', '-c', 'ip link set lo up'], { stdio: 'ignore' }).status === 0;

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The built demo as a person runs it (`npm run demo` = node dist/src/demo/main.js). */
function runDemo(args: string[], env: NodeJS.ProcessEnv, opts: { offline?: boolean } = {}): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = opts.offline
      ? spawn('unshare', ['-n', 'sh', '-c', 'ip link set lo up && exec "$0" "$@"', process.execPath, DEMO, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn(process.execPath, [DEMO, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

interface Summary {
  ok: boolean;
  run_id: string;
  state: string;
  pr_url: string;
  pushed_sha: string;
  branch: string;
  fork: string;
  upstream: string;
  database: string;
  github_requests: string;
}

function summaryIn(home: string): Summary {
  const dirs = readdirSync(join(home, 'demo'));
  expect(dirs).toHaveLength(1);
  return JSON.parse(readFileSync(join(home, 'demo', dirs[0]!, 'summary.json'), 'utf8')) as Summary;
}

function gitIn(dir: string, args: string[]): string {
  return execFileSync('git', ['--git-dir', dir, ...args], { encoding: 'utf8' }).trim();
}

describe('npm run demo (built)', () => {
  test('drives a whole run to DONE offline: fork commit, PR on the simulator, verdict PASS', async () => {
    const home = tempDir('agentpr-demo-test-');
    const decoyDb = join(tempDir('agentpr-demo-decoy-'), 'other.db');
    const r = await runDemo([], {
      ...process.env,
      AGENTPR_HOME: home,
      // Whatever points elsewhere is ignored: the demo uses its home and its local GitHub only.
      AGENTPR_DB: decoyDb,
      GITHUB_API_URL: 'http://127.0.0.1:9',
      GITHUB_TOKEN: 'ghp_must_not_be_used_by_the_demo',
      AGENTPR_CODEX_BIN: '/nonexistent/codex',
    });
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stdout).toContain('worker     REPLAY of a recorded codex run (run_policy_smoke_20260224_20260224T235433957166Z.jsonl) — not a live model');
    expect(r.stdout).toMatch(/^verdict: PASS runtime_success$/m);
    expect(r.stdout).toContain(`data home  ${home}`);
    expect(r.stdout).toMatch(/# Manager Insight/);
    expect(r.stdout).toMatch(/done: run_[0-9a-f]{12} is DONE/);
    for (const tool of ['create-run', 'run-prepare', 'mark-plan-ready', 'start-implementation', 'run-agent-step', 'run-finish', 'request-open-pr', 'approve-open-pr', 'sync-github', 'webhook (review)', 'mark-done']) {
      expect(r.stdout).toContain(` ${tool}`);
    }

    const s = summaryIn(home);
    expect(s.ok).toBe(true);
    expect(s.database).toBe(join(home, 'agentpr.db'));
    expect(existsSync(decoyDb)).toBe(false);

    // The database says DONE, with the events of every step, the webhook's review among them.
    const db = new Database(s.database, { readonly: true });
    try {
      const state = db.prepare('SELECT current_state FROM run_states WHERE run_id = ?').get(s.run_id) as { current_state: string };
      expect(state.current_state).toBe('DONE');
      const events = (db.prepare('SELECT event_type, to_state, outcome FROM events WHERE run_id = ? ORDER BY event_id').all(s.run_id) as Array<{ event_type: string; to_state: string; outcome: string }>).map(
        (e) => `${e.event_type}->${e.to_state}`,
      );
      expect(events).toEqual([
        'command.run.create->QUEUED',
        'command.start.discovery->DISCOVERY',
        'worker.discovery.completed->PLAN_READY',
        'command.start.implementation->IMPLEMENTING',
        'command.local.validation.passed->LOCAL_VALIDATING',
        'worker.push.completed->PUSHED',
        'command.pr.linked->CI_WAIT',
        'github.check.completed->REVIEW_WAIT',
        'github.review.submitted->REVIEW_WAIT',
        'command.mark.done->DONE',
      ]);
      const prUrl = db.prepare("SELECT uri FROM artifacts WHERE run_id = ? AND artifact_type = 'pr_url'").get(s.run_id) as { uri: string };
      expect(prUrl.uri).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/demo-org\/demo-calc\/pull\/1$/);
      const delivery = db.prepare("SELECT event_type, outcome FROM webhook_deliveries WHERE event_type = 'pull_request_review'").get() as
        | { event_type: string; outcome: string }
        | undefined;
      expect(delivery?.outcome).toBe('processed');
    } finally {
      db.close();
    }

    // The fork (a bare repository) has the worker's fix as one commit on top of upstream main.
    expect(gitIn(s.fork, ['rev-parse', `refs/heads/${s.branch}`])).toBe(s.pushed_sha);
    expect(gitIn(s.fork, ['log', '-1', '--format=%s', s.pushed_sha])).toBe('Fix sum() skipping the first value');
    expect(gitIn(s.fork, ['rev-parse', `${s.pushed_sha}^`])).toBe(gitIn(s.upstream, ['rev-parse', 'refs/heads/main']));
    expect(gitIn(s.fork, ['diff', '--name-only', `${s.pushed_sha}^`, s.pushed_sha])).toBe('src/calc.js');
    expect(gitIn(s.fork, ['show', `${s.pushed_sha}:src/calc.js`])).toContain('for (let i = 0; i < values.length; i++)');

    // GitHub was the local simulator: it saw the PR creation, with the demo's token.
    const requests = readFileSync(s.github_requests, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { method: string; path: string; status: number });
    expect(requests).toContainEqual(expect.objectContaining({ method: 'POST', path: '/repos/demo-org/demo-calc/pulls', status: 201 }));
    expect(requests.every((q) => q.status < 400)).toBe(true);
  });

  test.skipIf(!NETNS)('passes with no network at all (a network namespace with only loopback)', async () => {
    const home = tempDir('agentpr-demo-test-');
    const r = await runDemo([], { ...process.env, AGENTPR_HOME: home }, { offline: true });
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stdout).toMatch(/^verdict: PASS runtime_success$/m);
    expect(summaryIn(home).state).toBe('DONE');
  });

  test('--worker codex without a codex binary fails at once with a clear message and creates nothing', async () => {
    const home = join(tempDir('agentpr-demo-test-'), 'home');
    const env: NodeJS.ProcessEnv = { ...process.env, AGENTPR_HOME: home, PATH: '/nonexistent' };
    delete env.AGENTPR_CODEX_BIN;
    const r = await runDemo(['--worker', 'codex'], env);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain("codex binary not found (exit 127): 'codex' is not on PATH");
    expect(existsSync(home)).toBe(false);
  });

  test('a failed step stops the demo with a non-zero exit and says why', async () => {
    // A "codex" that does nothing: no tests run, so the verdict is HUMAN_REVIEW and the demo stops.
    const home = tempDir('agentpr-demo-test-');
    const r = await runDemo(['--worker', 'codex'], { ...process.env, AGENTPR_HOME: home, AGENTPR_CODEX_BIN: FAKE_CODEX });
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/demo FAILED \(run run_[0-9a-f]{12}\): the worker's verdict is HUMAN_REVIEW missing_test_evidence, not PASS/);
    const s = JSON.parse(readFileSync(join(home, 'demo', readdirSync(join(home, 'demo'))[0]!, 'summary.json'), 'utf8')) as { ok: boolean; run_id: string };
    expect(s.ok).toBe(false);
    const db = new Database(join(home, 'agentpr.db'), { readonly: true });
    try {
      expect((db.prepare('SELECT current_state FROM run_states WHERE run_id = ?').get(s.run_id) as { current_state: string }).current_state).toBe('NEEDS_HUMAN_REVIEW');
    } finally {
      db.close();
    }
  });
});
