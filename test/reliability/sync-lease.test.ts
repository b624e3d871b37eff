import type { ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { killLive, spawnCli, type CliDone, type CliProcess } from '../helpers/cli-process.js';
import { afterEach, describe, expect, test } from 'vitest';
import { FakeGitHub } from '../helpers/fake-github.js';
import { makeHarness, preparedRun, scenario, toImplementing, waitFor, type Harness } from '../worker/harness.js';
import { makeTestApp } from '../helpers/app.js';
import { startWebhookServer, type WebhookServer } from '../../src/github/webhook-server.js';
import { deliver, fixture, linkedRun } from '../github/runs.js';

/**
 * Issue 14, the sync step: `sync-github` (the CLI, the manager's re-sync, the webhook receiver's
 * follow-up queue) holds the run's lease like every other step. Real `agentpr` processes race on
 * one SQLite file; GitHub is a local REST server speaking GitHub's recorded shapes.
 */

const SHA = 'c'.repeat(40);

let h: Harness | undefined;
let gh: FakeGitHub | undefined;
const closers: Array<() => Promise<unknown> | unknown> = [];
const live: ChildProcess[] = [];
afterEach(async () => {
  killLive(live);
  for (const c of closers.splice(0).reverse()) await c();
  await h?.cleanup();
  h = undefined;
  await gh?.stop();
  gh = undefined;
});

function cli(args: string[], env: NodeJS.ProcessEnv): CliProcess {
  return spawnCli(h!.home, args, env, live);
}

interface SyncOut {
  results: Array<{ run_id: string; status: string; message: string; busy?: { step: string; attempt_id: number; holder: string; since: string } }>;
}

function syncOut(d: CliDone): SyncOut {
  expect(d.code, `${d.stdout}\n${d.stderr}`).toBe(0);
  return JSON.parse(d.stdout) as SyncOut;
}

/**
 * A door in front of GitHub: each request is answered by GitHub at once, but the answer waits at
 * the door until `open()` is called (so the caller holds what GitHub said at that moment).
 * `seen` counts the requests that arrived.
 */
async function gate(target: string): Promise<{ url: string; seen: string[]; open: () => void; server: Server }> {
  let release!: () => void;
  const opened = new Promise<void>((r) => (release = r));
  const seen: string[] = [];
  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const headers = Object.fromEntries(Object.entries(req.headers).filter(([k]) => k !== 'host' && k !== 'connection') as Array<[string, string]>);
    const r = await fetch(`${target}${req.url}`, { method: req.method, headers, body: chunks.length ? Buffer.concat(chunks) : undefined });
    const body = Buffer.from(await r.arrayBuffer());
    seen.push(`${req.method} ${req.url}`);
    await opened;
    const out: Record<string, string> = {};
    r.headers.forEach((v, k) => {
      if (!['content-encoding', 'content-length', 'transfer-encoding', 'connection'].includes(k)) out[k] = v;
    });
    res.writeHead(r.status, out).end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  closers.push(() => new Promise((r) => server.close(r)));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen, open: release, server };
}

const pullReads = (seen: string[], n: number) => seen.filter((s) => new RegExp(`^GET /repos/[^/]+/[^/]+/pulls/${n}$`).test(s)).length;

describe('sync holds the run lease across processes', () => {
  test('two sync-github processes on one run: one reads GitHub and applies, the other is reported busy naming the holder', async () => {
    gh = await new FakeGitHub().start();
    const door = await gate(gh.url);
    h = makeHarness({ env: { GITHUB_API_URL: door.url, AGENTPR_GITHUB_TOKEN: gh.token, GITHUB_TOKEN: '' } });
    const run = linkedRun(h.app, 'octo', 'widgets', 5);
    gh.addPull('octo', 'widgets', { number: 5, head: 'changes', head_sha: SHA });
    gh.setChecks('octo', 'widgets', SHA, [{ id: 51, name: 'test', status: 'completed', conclusion: 'failure' }]);

    const a = cli(['sync-github', run.run_id, '--json'], h.app.env);
    // The first sync is inside GitHub's first answer (held at the door).
    await waitFor('the first sync to ask GitHub for the PR', () => pullReads(door.seen, 5) >= 1, 30_000);
    const b = cli(['sync-github', run.run_id, '--json'], h.app.env);
    // Without a lease the second one would reach GitHub too: open the door then, or once it is done.
    const second = await Promise.race([b.done.then((d) => ({ d })), waitFor('a second reader', () => pullReads(door.seen, 5) >= 2, 60_000).then(() => undefined)]);
    // While the first sync holds the run, inspect-run (a read) names it and its process.
    const seen = await cli(['inspect-run', run.run_id, '--json'], h.app.env).done;
    door.open();
    expect(seen.code, seen.stderr).toBe(0);
    expect(JSON.parse(seen.stdout).lease).toMatchObject({ step: 'github_sync', pid: a.pid, holder: `pid ${a.pid} on ${hostname()}` });
    const rb = second?.d ?? (await b.done);
    const ra = await a.done;

    expect(syncOut(ra).results).toMatchObject([{ run_id: run.run_id, status: 'synced' }]);
    const lost = syncOut(rb).results;
    expect(lost).toMatchObject([{ run_id: run.run_id, status: 'busy', busy: { step: 'github_sync', holder: expect.stringContaining(`pid ${a.pid} on `) } }]);
    expect(lost[0]!.message).toMatch(/not synced: its github_sync step \(attempt \d+\) holds the run, by pid \d+ on \S+ since .*nothing was read or written/);
    expect(pullReads(door.seen, 5)).toBe(1);
    expect(h.app.service.getRun(run.run_id)).toMatchObject({ state: 'ITERATING', last_error: 'github_check:failure' });
    expect(h.app.service.listEvents(run.run_id).filter((e) => e.event_type === 'github.check.completed')).toHaveLength(1);
    expect(h.app.service.listAttempts(run.run_id, 'github_sync').map((x) => x.status)).toEqual(['succeeded']);
    expect(h.app.service.leases.list()).toEqual([]);
    // A re-sync that records nothing new leaves no attempt behind (a sync loop adds no rows).
    const again = await h.call('sync-github', { run_id: run.run_id });
    expect(again.ok && again.data.results).toMatchObject([{ status: 'synced', message: expect.stringContaining('(already synced)') }]);
    expect(h.app.service.listAttempts(run.run_id, 'github_sync').map((x) => x.status)).toEqual(['succeeded']);
    expect(h.app.service.leases.list()).toEqual([]);
  }, 90_000);

  test('a sync while an agent step works on the ITERATING run: busy, nothing applied; once the holder is gone (kill -9) the next sync reclaims and applies', async () => {
    gh = await new FakeGitHub().start();
    h = makeHarness({ env: { GITHUB_API_URL: gh.url, AGENTPR_GITHUB_TOKEN: gh.token, GITHUB_TOKEN: '' } });
    const { runId } = await preparedRun(h);
    await toImplementing(h, runId);
    for (const [event_type, payload] of [
      ['command.local.validation.passed', {}],
      ['worker.push.completed', { branch: 'changes', head_sha: SHA }],
      ['command.pr.linked', { pr_number: 9 }],
      ['github.check.completed', { conclusion: 'failure', pr_number: 9, head_sha: SHA }],
    ] as const) {
      h.app.service.applyEvent({ run_id: runId, event_type, payload });
    }
    expect(h.app.service.getRun(runId).state).toBe('ITERATING');
    gh.addPull('octo', 'demo', { number: 9, head: 'changes', head_sha: SHA });
    gh.setChecks('octo', 'demo', SHA, [{ id: 91, name: 'test', status: 'completed', conclusion: 'failure' }]);

    const env = { ...h.app.env, FAKE_CODEX_SCENARIO: scenario('hang') };
    const agent = cli(['run-agent-step', runId, '--prompt', 'Fix the failing test.', '--max-agent-seconds', '120'], env);
    const lease = await waitFor('the agent step to hold the lease', () => h!.app.service.leases.get(runId), 30_000);
    expect(lease).toMatchObject({ step: 'agent', holder: { pid: agent.pid } });
    // A person merges the PR while the worker is still working.
    gh.mergePull('octo', 'demo', 9, 'm'.repeat(40));
    const pullsBefore = gh.requestsTo('GET', '/pulls/9').length;
    const eventsBefore = h.app.service.listEvents(runId).length;
    const observedBefore = h.app.service.github.github(runId);

    const busy = syncOut(await cli(['sync-github', runId, '--json'], h.app.env).done).results;
    expect(busy).toMatchObject([{ status: 'busy', busy: { step: 'agent', attempt_id: lease.attempt_id, holder: expect.stringContaining(`pid ${agent.pid}`) } }]);
    // GitHub was not asked and nothing was written.
    expect(gh.requestsTo('GET', '/pulls/9').length).toBe(pullsBefore);
    expect(h.app.service.listEvents(runId)).toHaveLength(eventsBefore);
    expect(h.app.service.listAttempts(runId, 'github_sync')).toEqual([]);
    expect(h.app.service.github.github(runId)).toEqual(observedBefore);
    expect(h.app.service.getRun(runId).state).toBe('ITERATING');
    expect(h.app.service.listEvents(runId).some((e) => e.event_type === 'github.pr.merged')).toBe(false);

    // The holder dies without closing its step: the next sync takes the lease over and applies the merge.
    agent.kill();
    await agent.done;
    const after = syncOut(await cli(['sync-github', runId, '--json'], h.app.env).done).results;
    expect(after).toMatchObject([{ status: 'synced' }]);
    expect(h.app.service.getRun(runId).state).toBe('DONE');
    expect(h.app.service.attemptById(lease.attempt_id)).toMatchObject({ status: 'failed', reason_code: 'lease_reclaimed' });
    expect(h.app.service.listAttempts(runId, 'github_sync').map((x) => x.status)).toEqual(['succeeded']);
    expect(h.app.service.leases.list()).toEqual([]);
  }, 120_000);
});

describe('a sync whose process died', () => {
  test('kill -9 mid-read: reconcile-runs closes the orphan and the waiting run stays as it was', async () => {
    gh = await new FakeGitHub().start();
    const door = await gate(gh.url);
    h = makeHarness({ env: { GITHUB_API_URL: door.url, AGENTPR_GITHUB_TOKEN: gh.token, GITHUB_TOKEN: '' } });
    const run = linkedRun(h.app, 'octo', 'widgets', 5);
    gh.addPull('octo', 'widgets', { number: 5, head: 'changes', head_sha: SHA });
    const sync = cli(['sync-github', run.run_id, '--json'], h.app.env);
    await waitFor('the sync to read the PR', () => pullReads(door.seen, 5) >= 1, 30_000);
    expect(h.app.service.leases.get(run.run_id)).toMatchObject({ step: 'github_sync', holder: { pid: sync.pid } });
    sync.kill();
    await sync.done;
    door.open();
    const real = await cli(['reconcile-runs', '--json'], h.app.env).done;
    expect(real.code, real.stderr).toBe(0);
    expect(JSON.parse(real.stdout)).toMatchObject({ closed: [{ run_id: run.run_id, step: 'github_sync', state_before: 'CI_WAIT', state_after: 'CI_WAIT' }] });
    expect(h.app.service.getRun(run.run_id)).toMatchObject({ state: 'CI_WAIT', last_error: null });
    expect(h.app.service.listAttempts(run.run_id, 'github_sync')).toMatchObject([{ status: 'failed', reason_code: 'orchestrator_restarted' }]);
    expect(h.app.service.leases.list()).toEqual([]);
  }, 60_000);
});

describe('a webhook delivery while a sync reads GitHub', () => {
  test('the PR closed meanwhile: the older read is not applied over it (the run stays NEEDS_HUMAN_REVIEW, pr_state closed)', async () => {
    gh = await new FakeGitHub().start();
    const door = await gate(gh.url);
    h = makeHarness({ env: { GITHUB_API_URL: door.url, AGENTPR_GITHUB_TOKEN: gh.token, GITHUB_TOKEN: '' } });
    const closed = fixture<{ pull_request: { closed_at: string; head: { sha: string } } }>('pull_request.closed');
    const sha = closed.pull_request.head.sha;
    const run = linkedRun(h.app, 'Codertocat', 'Hello-World', 2, 'changes', sha);
    gh.addPull('Codertocat', 'Hello-World', { number: 2, head: 'changes', head_sha: sha });
    gh.setChecks('Codertocat', 'Hello-World', sha, [{ id: 7, name: 'test', status: 'completed', conclusion: 'failure' }]);
    const hook = await startWebhookServer({ app: h.app, port: 0, secrets: ['test-secret'], followups: false });
    closers.push(() => hook.close());

    const sync = cli(['sync-github', run.run_id, '--json'], h.app.env);
    // GitHub answered "open" and that answer waits at the door; then the PR is closed and GitHub says so.
    await waitFor('the sync to read the PR', () => pullReads(door.seen, 2) >= 1, 30_000);
    Object.assign(gh.repo('Codertocat', 'Hello-World').pulls[0]!, { state: 'closed', closed_at: closed.pull_request.closed_at });
    const d = await deliver(hook.url, { event: 'pull_request', payload: closed });
    expect(d.body).toMatchObject({ outcome: 'processed' });
    expect(h.app.service.getRun(run.run_id)).toMatchObject({ state: 'NEEDS_HUMAN_REVIEW', last_error: 'pr_closed' });
    door.open();

    const out = syncOut(await sync.done).results;
    expect(out).toMatchObject([{ status: 'synced', pr_state: 'closed' }]);
    // Read again after the change: GitHub's newer answer, not the one from before the close.
    expect(pullReads(door.seen, 2)).toBe(2);
    expect(h.app.service.getRun(run.run_id)).toMatchObject({ state: 'NEEDS_HUMAN_REVIEW', last_error: 'pr_closed' });
    expect(h.app.service.github.github(run.run_id)).toMatchObject({ pr_state: 'closed' });
    expect(h.app.service.listEvents(run.run_id).some((e) => e.event_type === 'github.check.completed' && e.outcome === 'applied')).toBe(false);
    // The newer read only confirmed what the webhook said: nothing new, no attempt kept.
    expect(h.app.service.listAttempts(run.run_id, 'github_sync')).toEqual([]);
    expect(h.app.service.leases.list()).toEqual([]);
  }, 90_000);
});

describe('the webhook follow-up queue', () => {
  test('a follow-up sync for a run busy with a step stays queued (no try used up) and runs once the step is done', async () => {
    gh = await new FakeGitHub().start();
    const ctx = makeTestApp({ env: { GITHUB_API_URL: gh.url, GITHUB_TOKEN: gh.token, AGENTPR_GITHUB_WEBHOOK_SECRET: '' } });
    closers.push(() => ctx.cleanup());
    const app = ctx.app;
    const hook: WebhookServer = await startWebhookServer({ app, port: 0, secrets: ['test-secret'], followups: { pollMs: 50, busyRetryMs: 150 } });
    closers.push(() => hook.close());
    const payload = fixture<{ check_suite: { head_sha: string } }>('check_suite.completed');
    const sha = payload.check_suite.head_sha;
    const run = linkedRun(app, 'Codertocat', 'Hello-World', 2, 'changes', sha);
    gh.addPull('Codertocat', 'Hello-World', { number: 2, head: 'changes', head_sha: sha });
    gh.setChecks('Codertocat', 'Hello-World', sha, [{ id: 1, name: 'build', status: 'completed', conclusion: 'success' }]);
    // Another step of the run is in flight (a finish pushing, say).
    const step = app.service.startAttempt(run.run_id, 'finish', {});

    const green = await deliver(hook.url, { event: 'check_suite', payload });
    expect(green.body).toMatchObject({ outcome: 'processed' });
    // Several busy rounds pass; the follow-up is still there, with no try counted.
    await waitFor('the follow-up to meet the busy run', () => app.service.github.followups({ run_id: run.run_id })[0]?.last_error?.startsWith('run busy'), 20_000);
    await new Promise((r) => setTimeout(r, 600));
    const kept = app.service.github.followups({ run_id: run.run_id });
    expect(kept).toMatchObject([{ status: expect.stringMatching(/^(queued|running)$/), attempts: expect.any(Number) }]);
    expect(kept[0]!.attempts).toBeLessThanOrEqual(1);
    expect(kept[0]!.last_error).toMatch(/run busy: not synced: its finish step \(attempt \d+\) holds the run/);
    expect(app.service.getRun(run.run_id).state).toBe('CI_WAIT');
    expect(gh.requestsTo('GET', '/pulls/2')).toHaveLength(0);

    app.service.finishAttempt(step.attempt_id, { status: 'succeeded' });
    await waitFor('the follow-up to run', () => app.service.github.followups({ run_id: run.run_id })[0]?.status === 'done', 20_000);
    expect(app.service.getRun(run.run_id).state).toBe('REVIEW_WAIT');
    expect(app.service.listAttempts(run.run_id, 'github_sync').map((x) => x.status)).toEqual(['succeeded']);
  }, 60_000);
});
