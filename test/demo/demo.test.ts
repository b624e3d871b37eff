import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
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
  first_sha: string;
  pushed_sha: string;
  merge_sha: string;
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
  test('drives a whole run to DONE offline: CI fails and a reviewer comments, the run iterates with the packet, pushes again, goes green and is merged', async () => {
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
    for (const tool of ['create-run', 'run-prepare', 'mark-plan-ready', 'start-implementation', 'run-agent-step', 'run-finish', 'request-open-pr', 'approve-open-pr', 'CI (round 1)', 'review comment', 'sync-github', 'CI (round 2)', 'webhook (review)', 'webhook (merged)']) {
      expect(r.stdout).toContain(` ${tool}`);
    }
    expect(r.stdout).toMatch(/check run "ci \/ test and lint" failure on the simulator, annotations: src\/calc\.js:6 no-index-loop/);
    expect(r.stdout).toContain('record-pr-state');

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
        // The first push fails CI (and gets a review requesting changes): the run iterates.
        'github.check.completed->ITERATING',
        'github.review.submitted->ITERATING',
        'command.local.validation.passed->LOCAL_VALIDATING',
        'worker.push.completed->PUSHED',
        'command.pr.linked->CI_WAIT',
        'github.check.completed->REVIEW_WAIT',
        'github.review.submitted->REVIEW_WAIT',
        // The merged webhook ends the run; nobody calls mark-done.
        'github.pr.merged->DONE',
      ]);
      // The iteration push went back to CI on the same PR with its new head, with no second approval.
      const relinks = (db.prepare("SELECT payload_json FROM events WHERE run_id = ? AND event_type = 'command.pr.linked' ORDER BY event_id").all(s.run_id) as Array<{ payload_json: string }>).map(
        (e) => JSON.parse(e.payload_json) as Record<string, unknown>,
      );
      expect(relinks[1]).toMatchObject({ pr_number: 1, iteration_push: true, head_sha: s.pushed_sha });
      expect(db.prepare("SELECT COUNT(*) AS n FROM artifacts WHERE run_id = ? AND artifact_type = 'pr_open_request'").get(s.run_id)).toEqual({ n: 1 });

      // The iteration packet, built from the simulator for the first head: the failed check with its
      // annotation and the tail of the job's log, and the review comment.
      const packetFile = db.prepare("SELECT uri FROM artifacts WHERE run_id = ? AND artifact_type = 'iteration_packet'").get(s.run_id) as { uri: string };
      const packet = JSON.parse(readFileSync(packetFile.uri, 'utf8')) as {
        head_sha: string;
        failed_checks: Array<{ name: string; annotations: unknown[]; log_tail: string }>;
        review_comments: Array<{ path: string; line: number; body: string }>;
      };
      expect(packet.head_sha).toBe(s.first_sha);
      expect(packet.failed_checks).toHaveLength(1);
      expect(packet.failed_checks[0]).toMatchObject({
        name: 'ci / test and lint',
        annotations: [{ path: 'src/calc.js', line: 6, level: 'failure', message: 'no-index-loop: iterate with for...of instead of an index loop' }],
      });
      expect(packet.failed_checks[0]!.log_tail).toContain('src/calc.js:6:3: error no-index-loop: iterate with for...of instead of an index loop');
      expect(packet.failed_checks[0]!.log_tail.trimEnd().split('\n').at(-1)).toBe('##[error]Process completed with exit code 1.');
      expect(packet.review_comments).toEqual([expect.objectContaining({ path: 'src/calc.js', line: 6, body: 'Please iterate with for...of here: the index loop is what hid this bug.' })]);
      const merged = db.prepare("SELECT payload_json FROM events WHERE run_id = ? AND event_type = 'github.pr.merged'").get(s.run_id) as { payload_json: string };
      expect(JSON.parse(merged.payload_json)).toMatchObject({ merge_sha: s.merge_sha });
      const prUrl = db.prepare("SELECT uri FROM artifacts WHERE run_id = ? AND artifact_type = 'pr_url'").get(s.run_id) as { uri: string };
      expect(prUrl.uri).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/demo-org\/demo-calc\/pull\/1$/);
      const deliveries = db.prepare('SELECT event_type, outcome FROM webhook_deliveries ORDER BY received_at').all() as Array<{ event_type: string; outcome: string }>;
      expect(deliveries).toEqual([
        { event_type: 'pull_request_review', outcome: 'processed' },
        { event_type: 'pull_request', outcome: 'processed' },
      ]);
    } finally {
      db.close();
    }

    // The worker's prompt in the iteration carried the packet, as data between the markers.
    const prompt = readFileSync(join(home, 'reports', s.run_id, 'agent', '2', 'prompt.txt'), 'utf8');
    const data = prompt.slice(prompt.indexOf('<<<ITERATION_PACKET'), prompt.indexOf('ITERATION_PACKET>>>'));
    expect(data).toContain('- src/calc.js:6 [failure] no-index-loop: iterate with for...of instead of an index loop');
    expect(data).toContain('src/calc.js:6:3: error no-index-loop');
    expect(data).toContain('Please iterate with for...of here: the index loop is what hid this bug.');
    expect(readFileSync(join(home, 'reports', s.run_id, 'agent', '1', 'prompt.txt'), 'utf8')).not.toContain('ITERATION_PACKET');

    // The fork (a bare repository) has two commits on top of main: the fix, then the iteration.
    expect(s.pushed_sha).not.toBe(s.first_sha);
    expect(gitIn(s.fork, ['rev-parse', `refs/heads/${s.branch}`])).toBe(s.pushed_sha);
    expect(gitIn(s.fork, ['rev-parse', `${s.pushed_sha}^`])).toBe(s.first_sha);
    expect(gitIn(s.fork, ['rev-parse', `${s.first_sha}^`])).toBe(gitIn(s.fork, ['rev-parse', 'refs/heads/main']));
    expect(gitIn(s.fork, ['log', '-1', '--format=%s', s.first_sha])).toBe('Fix sum() skipping the first value');
    expect(gitIn(s.fork, ['show', `${s.first_sha}:src/calc.js`])).toContain('for (let i = 0; i < values.length; i++)');
    expect(gitIn(s.fork, ['log', '-1', '--format=%s', s.pushed_sha])).toBe('Iterate with for...of in sum()');
    expect(gitIn(s.fork, ['diff', '--name-only', s.first_sha, s.pushed_sha])).toBe('src/calc.js');
    expect(gitIn(s.fork, ['show', `${s.pushed_sha}:src/calc.js`])).toContain('for (const value of values) total += value;');
    // The merge: upstream main is the PR's last head.
    expect(s.merge_sha).toBe(s.pushed_sha);
    expect(gitIn(s.upstream, ['rev-parse', 'refs/heads/main'])).toBe(s.pushed_sha);

    // GitHub was the local simulator: it saw the PR creation, with the demo's token.
    const requests = readFileSync(s.github_requests, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { method: string; path: string; status: number });
    expect(requests).toContainEqual(expect.objectContaining({ method: 'POST', path: '/repos/demo-org/demo-calc/pulls', status: 201 }));
    // ... and the reads the iteration packet is built from.
    for (const path of ['/repos/demo-org/demo-calc/check-runs/4200001/annotations', '/repos/demo-org/demo-calc/actions/jobs/4200001/logs', '/repos/demo-org/demo-calc/pulls/1/comments', '/repos/demo-org/demo-calc/issues/1/comments']) {
      expect(requests).toContainEqual(expect.objectContaining({ method: 'GET', path }));
    }
    expect(requests.every((q) => q.status < 400)).toBe(true);
  }, 180_000);

  test.skipIf(!NETNS)('passes with no network at all (a network namespace with only loopback)', async () => {
    const home = tempDir('agentpr-demo-test-');
    const r = await runDemo([], { ...process.env, AGENTPR_HOME: home }, { offline: true });
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stdout).toMatch(/^verdict: PASS runtime_success$/m);
    expect(summaryIn(home).state).toBe('DONE');
  }, 180_000);

  test('the replay worker iterates only on a packet that names what it fixes', async () => {
    // The demo's proof that the packet reached the worker: a packet without the lint finding makes it stop.
    const work = tempDir('agentpr-demo-replay-');
    cpSync(join(ROOT, 'demo', 'project'), work, { recursive: true });
    const prompt = 'Fix what CI reports.\n<<<ITERATION_PACKET\n# Iteration packet: nothing failed\nITERATION_PACKET>>>\n';
    const r = spawnSync(process.execPath, [join(ROOT, 'demo', 'replay-codex.mjs'), 'exec', '--sandbox', 'workspace-write', '--json', '-'], {
      cwd: work,
      input: prompt,
      encoding: 'utf8',
      env: { ...process.env, AGENTPR_REPLAY_LINE_DELAY_MS: '0' },
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('the iteration packet in the prompt does not name "src/calc.js:6", "no-index-loop", "for...of"; nothing to fix');
    expect(r.stdout).toContain('"type":"error"');
    expect(readFileSync(join(work, 'src', 'calc.js'), 'utf8')).toContain('for (let i = 1; i < values.length; i++)');
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
