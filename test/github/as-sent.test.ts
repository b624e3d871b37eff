import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sign } from '@octokit/webhooks-methods';
import { makeTestApp } from '../helpers/app.js';
import { FakeGitHub } from '../helpers/fake-github.js';
import type { App } from '../../src/app.js';
import type { RunView } from '../../src/core/models.js';
import { Registry } from '../../src/registry.js';
import { TOOLS } from '../../tools/index.js';
import { startWebhookServer, type WebhookServer } from '../../src/github/webhook-server.js';
import { gatherFacts } from '../../src/manager/facts.js';
import { decide } from '../../src/manager/rules.js';
import { deliver, fixture, pushedRun } from './runs.js';

/**
 * GitHub's own example payloads (@octokit/webhooks-examples, test/fixtures/github) and REST
 * response shapes (@octokit/openapi examples, through FakeGitHub), signed and sent as GitHub sends
 * them. Fork variants change only the fields GitHub changes for a fork's PR: `pull_requests: []`
 * on checks, `head.repo` on the PR.
 */

const SECRET = 'test-secret';
const OWNER = 'Codertocat';
const REPO = 'Hello-World';
const FORK = 'forkowner';
/** The head of PR #2 in every example payload. */
const HEAD = 'ec26c3e57ca3a959ca5aad62de7213c562f8c821';
const NEW_HEAD = 'b'.repeat(40);
const NO_TOKEN = { GITHUB_TOKEN: '', AGENTPR_GITHUB_TOKEN: '', GH_TOKEN: '' };
const registry = new Registry(TOOLS);

// Example payloads are edited in place by path; their full types would only repeat GitHub's docs.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = Record<string, any>;

function ledger(app: App): Array<{ outcome: string; event_type: string }> {
  return app.db.prepare('SELECT outcome, event_type FROM webhook_deliveries ORDER BY received_at').all() as Array<{ outcome: string; event_type: string }>;
}

function events(app: App, runId: string, type?: string) {
  return app.service.listEvents(runId).filter((e) => !type || e.event_type === type);
}

/** A run pushed at `head` and linked to PR #2; `fork`: the PR's head lives in forkowner/Hello-World. */
function linked(app: App, opts: { fork?: boolean; head?: string; pr?: number } = {}): RunView {
  const head = opts.head ?? HEAD;
  const run = pushedRun(app, OWNER, REPO, { branch: 'changes', head_sha: head });
  app.service.applyEvent({
    run_id: run.run_id,
    event_type: 'command.pr.linked',
    payload: { pr_number: opts.pr ?? 2, head_sha: head, ...(opts.fork ? { head_owner: FORK, head_repo: REPO } : {}) },
  });
  return app.service.getRun(run.run_id);
}

/** The run iterates once: ITERATING -> ... -> PUSHED at `head` -> linked again (CI_WAIT). */
function iterateTo(app: App, runId: string, head: string): void {
  for (const [event_type, payload] of [
    ['command.start.implementation', {}],
    ['command.local.validation.passed', {}],
    ['worker.push.completed', { branch: 'changes', head_sha: head }],
    ['command.pr.linked', { pr_number: 2 }],
  ] as Array<[string, Json]>) {
    app.service.applyEvent({ run_id: runId, event_type, payload, idempotency_key: `${event_type}:${runId}:${head}` });
  }
}

/** The example check_run (completed, failure); `fork`: GitHub lists no PR for a fork's head. */
function checkRun(opts: { fork?: boolean; conclusion?: string; head?: string } = {}): Json {
  const p = fixture<Json>('check_run.completed.failure');
  if (opts.fork) p.check_run.pull_requests = [];
  if (opts.conclusion) p.check_run.conclusion = opts.conclusion;
  if (opts.head) p.check_run.head_sha = opts.head;
  return p;
}

async function until(what: string, check: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('webhook deliveries as GitHub sends them', () => {
  let ctx: ReturnType<typeof makeTestApp>;
  let app: App;
  let hook: WebhookServer;

  beforeEach(async () => {
    ctx = makeTestApp({ env: NO_TOKEN });
    app = ctx.app;
    hook = await startWebhookServer({ app, port: 0, secrets: [SECRET] });
  });
  afterEach(async () => {
    await hook.close();
    await ctx.cleanup();
  });

  for (const fork of [false, true]) {
    it(`a failed check_run on the head of a ${fork ? 'fork' : 'same-repo'} PR moves the run to ITERATING`, async () => {
      const run = linked(app, { fork });
      const res = await deliver(hook.url, { event: 'check_run', payload: checkRun({ fork }) });
      expect(res.body).toMatchObject({ outcome: 'processed', processed: 1 });
      expect(app.service.getRun(run.run_id)).toMatchObject({ state: 'ITERATING', last_error: 'github_check:failure' });
      expect(events(app, run.run_id, 'github.check.completed')[0]).toMatchObject({ outcome: 'applied', payload: { head_sha: HEAD } });
      expect(ledger(app)).toEqual([{ outcome: 'processed', event_type: 'check_run' }]);
    });
  }

  it('a check_run for a commit no run has had, naming no PR, is ignored as untracked', async () => {
    const run = linked(app);
    const res = await deliver(hook.url, { event: 'check_run', payload: checkRun({ fork: true, head: 'c'.repeat(40) }) });
    expect(res.body).toMatchObject({ outcome: 'ignored' });
    expect((res.body.notes as string[])[0]).toMatch(/commit ccccccc in Codertocat\/Hello-World is not linked to any run/);
    expect(app.service.getRun(run.run_id).state).toBe('CI_WAIT');
  });

  it('a cancelled check on a superseded head is recorded as ignored with that reason', async () => {
    const run = linked(app);
    app.service.applyEvent({ run_id: run.run_id, event_type: 'github.check.completed', payload: { conclusion: 'failure', head_sha: HEAD } });
    iterateTo(app, run.run_id, NEW_HEAD);
    expect(app.service.getRun(run.run_id).state).toBe('CI_WAIT');
    const res = await deliver(hook.url, { event: 'check_run', payload: checkRun({ conclusion: 'cancelled' }) });
    expect(res.body).toMatchObject({ outcome: 'processed' });
    expect(app.service.getRun(run.run_id).state).toBe('CI_WAIT');
    const last = events(app, run.run_id, 'github.check.completed').at(-1)!;
    expect(last).toMatchObject({ outcome: 'ignored', payload: { conclusion: 'cancelled', head_sha: HEAD } });
    expect(last.note).toMatch(/ec26c3e57ca3, an older head \(the PR head is bbbbbbbbbbbb\)/);
    // The same check on the current head counts.
    await deliver(hook.url, { event: 'check_run', payload: checkRun({ conclusion: 'cancelled', head: NEW_HEAD }) });
    expect(app.service.getRun(run.run_id)).toMatchObject({ state: 'ITERATING', last_error: 'github_check:cancelled' });
  });

  it('a status on a commit that is not the PR head is not matched through `branches`', async () => {
    const run = linked(app); // head ec26c3e on branch `changes`; the example status is for 6113728, which `changes` contains
    const payload = fixture<Json>('status');
    payload.state = 'failure';
    const res = await deliver(hook.url, { event: 'status', payload });
    expect(res.body).toMatchObject({ outcome: 'ignored' });
    expect(app.service.getRun(run.run_id).state).toBe('CI_WAIT');
    expect(ledger(app)).toEqual([{ outcome: 'ignored', event_type: 'status' }]);
  });

  it("a status on a fork PR's current head counts after an iteration", async () => {
    const run = linked(app, { fork: true });
    await deliver(hook.url, { event: 'check_run', payload: checkRun({ fork: true }) });
    iterateTo(app, run.run_id, NEW_HEAD);
    const payload = fixture<Json>('status');
    Object.assign(payload, { state: 'error', sha: NEW_HEAD });
    // GitHub sends a fork's statuses from the upstream repository or from the fork.
    payload.repository.owner.login = FORK;
    const res = await deliver(hook.url, { event: 'status', payload });
    expect(res.body).toMatchObject({ outcome: 'processed', processed: 1 });
    expect(app.service.getRun(run.run_id)).toMatchObject({ state: 'ITERATING', last_error: 'github_check:failure' });
  });

  it('a status on the head of a run linked with link-pr counts', async () => {
    const payload = fixture<Json>('status');
    payload.state = 'failure';
    const run = pushedRun(app, OWNER, REPO, { head_sha: payload.sha as string });
    const link = await registry.call('link-pr', { run_id: run.run_id, pr_number: 2 }, { app, entry: 'cli' });
    expect(link.ok).toBe(true);
    const res = await deliver(hook.url, { event: 'status', payload });
    expect(res.body).toMatchObject({ outcome: 'processed', processed: 1 });
    expect(app.service.getRun(run.run_id).state).toBe('ITERATING');
  });

  it('GitHub does not move a PAUSED run; what arrived is shown and applied on resume', async () => {
    const run = linked(app);
    await registry.call('pause', { run_id: run.run_id }, { app, entry: 'cli' });
    const check = await deliver(hook.url, { event: 'check_run', payload: checkRun() });
    expect(check.status).toBe(200);
    const review = fixture<Json>('pull_request_review.submitted');
    review.review.state = 'changes_requested';
    await deliver(hook.url, { event: 'pull_request_review', payload: review });
    expect(app.service.getRun(run.run_id).state).toBe('PAUSED');
    const kept = events(app, run.run_id).filter((e) => e.event_type.startsWith('github.'));
    expect(kept.map((e) => [e.outcome, e.to_state])).toEqual([['ignored', 'PAUSED'], ['ignored', 'PAUSED']]);
    expect(kept[0]!.note).toMatch(/while the run is PAUSED: kept pending/);

    const resumed = await registry.call('resume', { run_id: run.run_id, target_state: 'CI_WAIT' }, { app, entry: 'cli' });
    expect(resumed.ok).toBe(true);
    if (!resumed.ok) return;
    expect(resumed.data).toMatchObject({ from_state: 'PAUSED', state: 'ITERATING' });
    expect(resumed.text).toMatch(/GitHub observations kept while PAUSED: github.check.completed failure \(arrived in PAUSED\) applied: CI_WAIT -> ITERATING/);
    // Applied under their own keys: the check's delivery key, not the record made while paused.
    expect(events(app, run.run_id, 'github.check.completed').map((e) => e.idempotency_key)).toContain(`github.check.completed:${run.run_id}:check_run:128620228:${HEAD.slice(0, 12)}:failure`);
  });

  it('a merged PR ends the run DONE with the merge SHA; a closed one stops at NEEDS_HUMAN_REVIEW and is not acted on; reopened returns to CI_WAIT', async () => {
    const merged = fixture<Json>('pull_request.closed');
    merged.pull_request.merged = true;
    const run = linked(app);
    app.service.applyEvent({ run_id: run.run_id, event_type: 'github.check.completed', payload: { conclusion: 'success', head_sha: HEAD } });
    expect(app.service.getRun(run.run_id).state).toBe('REVIEW_WAIT');
    const res = await deliver(hook.url, { event: 'pull_request', payload: merged });
    expect(res.body).toMatchObject({ outcome: 'processed', processed: 1 });
    expect(app.service.getRun(run.run_id)).toMatchObject({ state: 'DONE', last_error: null });
    expect(app.service.github.github(run.run_id)).toMatchObject({ pr_state: 'merged', merge_sha: merged.pull_request.merge_commit_sha });

    // A second run on another PR: closed unmerged, then a failed check, then reopened.
    const other = linked(app, { pr: 3 });
    const closed = fixture<Json>('pull_request.closed');
    closed.number = 3;
    closed.pull_request.number = 3;
    await deliver(hook.url, { event: 'pull_request', payload: closed });
    expect(app.service.getRun(other.run_id)).toMatchObject({ state: 'NEEDS_HUMAN_REVIEW', last_error: 'pr_closed' });
    const failed = checkRun();
    failed.check_run.pull_requests[0].number = 3;
    const check = await deliver(hook.url, { event: 'check_run', payload: failed });
    expect((check.body.notes as string[]).join()).toMatch(/PR #3 is closed; nothing to act on/);
    expect(app.service.getRun(other.run_id).state).toBe('NEEDS_HUMAN_REVIEW');
    const reopened = fixture<Json>('pull_request.reopened');
    reopened.number = 3;
    reopened.pull_request.number = 3;
    await deliver(hook.url, { event: 'pull_request', payload: reopened });
    expect(app.service.getRun(other.run_id)).toMatchObject({ state: 'CI_WAIT', last_error: null });
    expect(ledger(app).map((l) => l.outcome)).toEqual(['processed', 'processed', 'ignored', 'processed']);
  });

  it('a form-encoded delivery (payload= field) is accepted with the signature over the raw body', async () => {
    const run = linked(app);
    const raw = `payload=${encodeURIComponent(JSON.stringify(checkRun()))}`;
    const headers = { 'content-type': 'application/x-www-form-urlencoded' };
    const forged = await deliver(hook.url, { event: 'check_run', raw, payload: null, headers, signature: await sign(SECRET, raw.replace('failure', 'success')) });
    expect(forged.status).toBe(401);
    const res = await deliver(hook.url, { event: 'check_run', raw, payload: null, headers });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ outcome: 'processed', processed: 1 });
    expect(app.service.getRun(run.run_id).state).toBe('ITERATING');
    const empty = await deliver(hook.url, { event: 'ping', raw: 'zen=hi', payload: null, headers });
    expect(empty.status).toBe(400);
    expect(empty.body.error).toMatch(/the form field 'payload' is not valid JSON: no 'payload' field/);
  });

  // Every example payload of the events the receiver handles, same-repo and fork variants.
  const table: Array<{ name: string; event: string; payload: () => Json; fork?: (p: Json) => void; outcome: string; state: string; note?: RegExp }> = [
    { name: 'check_run created', event: 'check_run', payload: () => fixture('check_run.created'), fork: (p) => (p.check_run.pull_requests = []), outcome: 'ignored', state: 'CI_WAIT', note: /check_run.created is not a completed result/ },
    { name: 'check_run completed failure', event: 'check_run', payload: () => fixture('check_run.completed.failure'), fork: (p) => (p.check_run.pull_requests = []), outcome: 'processed', state: 'ITERATING' },
    { name: 'check_run completed success (no token)', event: 'check_run', payload: () => fixture('check_run.completed.success'), fork: (p) => (p.check_run.pull_requests = []), outcome: 'ignored', state: 'CI_WAIT', note: /without GITHUB_TOKEN/ },
    { name: 'check_suite completed (no token)', event: 'check_suite', payload: () => fixture('check_suite.completed'), fork: (p) => (p.check_suite.pull_requests = []), outcome: 'ignored', state: 'CI_WAIT', note: /without GITHUB_TOKEN/ },
    { name: 'pull_request opened (no token)', event: 'pull_request', payload: () => fixture('pull_request.opened'), fork: forkPr, outcome: 'ignored', state: 'CI_WAIT', note: /pull_request.opened may bring a new head/ },
    { name: 'pull_request synchronize (no token)', event: 'pull_request', payload: () => fixture('pull_request.synchronize'), fork: forkPr, outcome: 'ignored', state: 'CI_WAIT', note: /pull_request.synchronize may bring a new head/ },
    { name: 'pull_request closed unmerged', event: 'pull_request', payload: () => fixture('pull_request.closed'), fork: forkPr, outcome: 'processed', state: 'NEEDS_HUMAN_REVIEW' },
    { name: 'pull_request closed merged', event: 'pull_request', payload: () => ({ ...fixture<Json>('pull_request.closed'), pull_request: { ...fixture<Json>('pull_request.closed').pull_request, merged: true } }), fork: forkPr, outcome: 'processed', state: 'DONE' },
    { name: 'pull_request reopened (run not stopped by a close)', event: 'pull_request', payload: () => fixture('pull_request.reopened'), fork: forkPr, outcome: 'ignored', state: 'CI_WAIT', note: /not stopped by a closed PR/ },
    { name: 'pull_request_review submitted (commented)', event: 'pull_request_review', payload: () => fixture('pull_request_review.submitted'), fork: forkPr, outcome: 'processed', state: 'CI_WAIT' },
    { name: 'pull_request_review_comment created', event: 'pull_request_review_comment', payload: () => fixture('pull_request_review_comment.created'), fork: forkPr, outcome: 'ignored', state: 'CI_WAIT', note: /review_comment.created changes no run state/ },
    { name: 'issue_comment created on the PR', event: 'issue_comment', payload: () => ({ ...fixture<Json>('issue_comment.created'), issue: { ...fixture<Json>('issue_comment.created').issue, number: 2, pull_request: { url: 'https://api.github.com/repos/Codertocat/Hello-World/pulls/2' } } }), outcome: 'ignored', state: 'CI_WAIT', note: /issue_comment.created changes no run state/ },
    { name: 'ping', event: 'ping', payload: () => fixture('ping'), outcome: 'pong', state: 'CI_WAIT' },
  ];
  function forkPr(p: Json): void {
    const repo = p.pull_request.head.repo;
    Object.assign(repo, { full_name: `${FORK}/${REPO}`, fork: true });
    repo.owner.login = FORK;
    p.pull_request.head.label = `${FORK}:${p.pull_request.head.ref}`;
  }
  for (const row of table) {
    for (const fork of row.fork ? [false, true] : [false]) {
      it(`${row.name}${fork ? ' (fork)' : ''}: run ${row.state}, ledger ${row.outcome}`, async () => {
        const run = linked(app, { fork });
        const payload = row.payload();
        if (fork) row.fork!(payload);
        const res = await deliver(hook.url, { event: row.event, payload });
        expect(res.status).toBe(200);
        expect(res.body.outcome).toBe(row.outcome);
        if (row.note) expect((res.body.notes as string[]).join('\n')).toMatch(row.note);
        expect(app.service.getRun(run.run_id).state).toBe(row.state);
        expect(ledger(app)).toEqual([{ outcome: row.outcome, event_type: row.event }]);
      });
    }
  }
});

describe('follow-ups, sync and the PR lifecycle against a GitHub REST server', () => {
  let gh: FakeGitHub;
  let ctx: ReturnType<typeof makeTestApp>;
  let app: App;
  let hook: WebhookServer | undefined;
  const sync = (args: Json) => registry.call('sync-github', args, { app, entry: 'manager' });

  beforeEach(async () => {
    gh = await new FakeGitHub().start();
    gh.repo(OWNER, REPO);
    ctx = makeTestApp({ env: { GITHUB_API_URL: gh.url, AGENTPR_GITHUB_TOKEN: gh.token, GITHUB_TOKEN: '', AGENTPR_GITHUB_RETRIES: '0' } });
    app = ctx.app;
  });
  afterEach(async () => {
    await hook?.close();
    hook = undefined;
    await ctx.cleanup();
    await gh.stop();
  });

  const green = () => gh.setChecks(OWNER, REPO, HEAD, [{ id: 1, name: 'build', status: 'completed', conclusion: 'success' }]);

  it('a green fork check_suite (pull_requests: []) queues a sync, answered at once, that moves the run', async () => {
    hook = await startWebhookServer({ app, port: 0, secrets: [SECRET] });
    const run = linked(app, { fork: true });
    gh.addPull(OWNER, REPO, { number: 2, head: `${FORK}:changes`, head_sha: HEAD });
    green();
    const res = await deliver(hook.url, { event: 'check_suite', payload: fixture('check_suite.completed.no-pr') });
    expect(res.body).toMatchObject({ outcome: 'processed', queued: [{ run_id: run.run_id, reason: 'check_suite 118578147 is success' }] });
    await hook.followups!.idle();
    expect(app.service.getRun(run.run_id).state).toBe('REVIEW_WAIT');
    expect(app.service.github.followups({ run_id: run.run_id })).toMatchObject([{ status: 'done', attempts: 1 }]);
    // The sync recorded the head's repository as GitHub reports it (the fork).
    expect(app.service.github.currentHead(run.run_id)).toMatchObject({ head_sha: HEAD, head_owner: FORK });
  });

  it('a queued sync survives the receiver: a receiver started later works it', async () => {
    const first = await startWebhookServer({ app, port: 0, secrets: [SECRET], followups: false });
    const run = linked(app);
    gh.addPull(OWNER, REPO, { number: 2, head: 'changes', head_sha: HEAD });
    green();
    try {
      const res = await deliver(first.url, { event: 'check_run', payload: fixture('check_run.completed.success') });
      expect(res.body.outcome).toBe('processed');
    } finally {
      await first.close();
    }
    expect(app.service.github.followups({ run_id: run.run_id })).toMatchObject([{ status: 'queued', attempts: 0, reason: 'check_run 128620228 is success' }]);
    expect(app.service.getRun(run.run_id).state).toBe('CI_WAIT');
    hook = await startWebhookServer({ app, port: 0, secrets: [SECRET] });
    await until('the queued sync', () => app.service.getRun(run.run_id).state === 'REVIEW_WAIT');
  });

  it('answers a green check within a second while the GitHub API is slow', async () => {
    hook = await startWebhookServer({ app, port: 0, secrets: [SECRET] });
    const run = linked(app);
    gh.addPull(OWNER, REPO, { number: 2, head: 'changes', head_sha: HEAD });
    green();
    gh.latencyMs = 1500;
    const started = performance.now();
    const res = await deliver(hook.url, { event: 'check_run', payload: fixture('check_run.completed.success') });
    const answeredMs = performance.now() - started;
    expect(res.body.outcome).toBe('processed');
    expect(answeredMs).toBeLessThan(1000);
    expect(app.service.getRun(run.run_id).state).toBe('CI_WAIT');
    await until('the queued sync', () => app.service.getRun(run.run_id).state === 'REVIEW_WAIT', 30_000);
  });

  it('a sync refused with 401 stays queued and is retried; after the token is fixed it applies', async () => {
    hook = await startWebhookServer({ app, port: 0, secrets: [SECRET], followups: { backoffMs: () => 100, pollMs: 50 } });
    app.env.AGENTPR_GITHUB_TOKEN = 'ghp_revoked';
    const run = linked(app);
    gh.addPull(OWNER, REPO, { number: 2, head: 'changes', head_sha: HEAD });
    green();
    const res = await deliver(hook.url, { event: 'check_run', payload: fixture('check_run.completed.success') });
    expect(res.status).toBe(200);
    await until('two failed attempts', () => (app.service.github.followups({ run_id: run.run_id })[0]?.attempts ?? 0) >= 2);
    const [queued] = app.service.github.followups({ run_id: run.run_id });
    expect(queued).toMatchObject({ status: expect.stringMatching(/queued|running/) });
    expect(queued!.last_error).toMatch(/HTTP 401: Bad credentials/);
    expect(app.service.getRun(run.run_id).state).toBe('CI_WAIT');
    app.env.AGENTPR_GITHUB_TOKEN = gh.token;
    await until('the retried sync', () => app.service.getRun(run.run_id).state === 'REVIEW_WAIT');
    await until('the follow-up marked done', () => app.service.github.followups({ run_id: run.run_id })[0]?.status === 'done');
  });

  it('reads every page of the combined status and its overall state: a failure on page 2 of 120', async () => {
    const run = linked(app);
    gh.addPull(OWNER, REPO, { number: 2, head: 'changes', head_sha: HEAD });
    const statuses = Array.from({ length: 120 }, (_, i) => ({ id: 1000 + i, context: `ci/${i}`, state: i === 110 ? ('failure' as const) : ('success' as const) }));
    gh.setChecks(OWNER, REPO, HEAD, [], statuses);
    const out = await sync({ run_id: run.run_id });
    expect(out.ok && out.data.results).toMatchObject([{ status: 'synced', checks: { total: 120, failed: 1, conclusion: 'failure', failing: ['ci/110:failure'] } }]);
    expect(app.service.getRun(run.run_id).state).toBe('ITERATING');
    expect(gh.requestsTo('GET', `/commits/${HEAD}/status`).map((r) => r.query.page)).toEqual(['1', '2']);
  });

  it('sync reads the PR state: merged -> DONE (or NEEDS_HUMAN_REVIEW with wait_human), closed -> NEEDS_HUMAN_REVIEW, reopened -> CI_WAIT', async () => {
    const run = linked(app);
    const pr = gh.addPull(OWNER, REPO, { number: 2, head: 'changes', head_sha: HEAD });
    pr.state = 'closed';
    pr.closed_at = '2024-02-01T00:00:00Z';
    await sync({ run_id: run.run_id });
    expect(app.service.getRun(run.run_id)).toMatchObject({ state: 'NEEDS_HUMAN_REVIEW', last_error: 'pr_closed' });
    pr.state = 'open';
    await sync({ run_id: run.run_id });
    expect(app.service.getRun(run.run_id)).toMatchObject({ state: 'CI_WAIT', last_error: null });
    Object.assign(pr, { state: 'closed', merged: true, merge_commit_sha: 'd'.repeat(40) });
    const merged = await sync({ run_id: run.run_id });
    expect(merged.ok && (merged.data.results as Json[])[0]).toMatchObject({ pr_state: 'merged' });
    expect(app.service.getRun(run.run_id).state).toBe('DONE');
    expect(app.service.github.github(run.run_id)).toMatchObject({ pr_state: 'merged', merge_sha: 'd'.repeat(40) });

    const policy = join(ctx.home, 'policy.json');
    writeFileSync(policy, JSON.stringify({ github: { on_pr_merged: 'wait_human' } }));
    const other = makeTestApp({ env: { GITHUB_API_URL: gh.url, AGENTPR_GITHUB_TOKEN: gh.token, AGENTPR_POLICY_FILE: policy } });
    try {
      const run2 = linked(other.app);
      await registry.call('sync-github', { run_id: run2.run_id }, { app: other.app, entry: 'cli' });
      expect(other.app.service.getRun(run2.run_id)).toMatchObject({ state: 'NEEDS_HUMAN_REVIEW', last_error: 'pr_merged' });
    } finally {
      await other.cleanup();
    }
  });

  it('a changes_requested review during IMPLEMENTING is kept and applied after the push; a later sync does not undo it', async () => {
    hook = await startWebhookServer({ app, port: 0, secrets: [SECRET] });
    const run = linked(app);
    gh.addPull(OWNER, REPO, { number: 2, head: 'changes', head_sha: NEW_HEAD });
    app.service.applyEvent({ run_id: run.run_id, event_type: 'github.check.completed', payload: { conclusion: 'failure', head_sha: HEAD } });
    app.service.applyEvent({ run_id: run.run_id, event_type: 'command.start.implementation', payload: {}, idempotency_key: 'iterate' });
    const review = fixture<Json>('pull_request_review.submitted');
    review.review.state = 'changes_requested';
    await deliver(hook.url, { event: 'pull_request_review', payload: review });
    expect(app.service.getRun(run.run_id).state).toBe('IMPLEMENTING');
    expect(events(app, run.run_id, 'github.review.submitted')[0]).toMatchObject({ outcome: 'ignored', idempotency_key: `github.review.submitted:${run.run_id}:review:237895671:changes_requested:pending:IMPLEMENTING` });

    // The fix is pushed and the run waits on CI again: the kept review applies, under its own key.
    app.service.applyEvent({ run_id: run.run_id, event_type: 'command.local.validation.passed', payload: {}, idempotency_key: 'validated' });
    app.service.applyEvent({ run_id: run.run_id, event_type: 'worker.push.completed', payload: { branch: 'changes', head_sha: NEW_HEAD } });
    app.service.applyEvent({ run_id: run.run_id, event_type: 'command.pr.linked', payload: { pr_number: 2 }, idempotency_key: 'relink' });
    expect(app.service.getRun(run.run_id)).toMatchObject({ state: 'ITERATING', last_error: 'github_review:changes_requested' });

    // GitHub: checks green on the new head, the same review still requesting changes.
    gh.setChecks(OWNER, REPO, NEW_HEAD, [{ id: 2, name: 'build', status: 'completed', conclusion: 'success' }]);
    gh.setReviews(OWNER, REPO, 2, [{ id: 237895671, user: 'Codertocat', state: 'CHANGES_REQUESTED' }]);
    await sync({ run_id: run.run_id });
    expect(app.service.getRun(run.run_id)).toMatchObject({ state: 'ITERATING', last_error: 'github_review:changes_requested' });
  });

  it('a lost webhook is filled in: dry-run shows it, the loop applies it, the manager re-syncs only quiet runs', async () => {
    const run = linked(app);
    gh.addPull(OWNER, REPO, { number: 2, head: 'changes', head_sha: HEAD });
    gh.setChecks(OWNER, REPO, HEAD, [{ id: 3, name: 'test', status: 'completed', conclusion: 'failure' }]);

    let facts = gatherFacts(app, { run_id: run.run_id });
    expect(decide(facts[0]!)).toMatchObject({ action: 'sync_github' });

    const dry = await sync({ dry_run: true });
    expect(dry.ok && (dry.data.results as Json[])[0]).toMatchObject({ would: [{ event_type: 'github.check.completed', outcome: 'applied', to_state: 'ITERATING' }] });
    expect(app.service.getRun(run.run_id).state).toBe('CI_WAIT');
    expect(gh.requests.filter((r) => r.path.endsWith('/pulls/2'))).toHaveLength(1);

    const refused = await sync({ loop: true, interval_sec: 1 });
    expect(refused.ok).toBe(false);
    if (!refused.ok) expect(refused.error).toMatch(/pass max_loops/);

    const looped = await sync({ loop: true, interval_sec: 1, max_loops: 2 });
    expect(looped.ok && looped.data).toMatchObject({ loops: 2 });
    expect(app.service.getRun(run.run_id).state).toBe('ITERATING');

    // A second run GitHub just reported on is left alone until quiet for resync_after_sec.
    const quiet = linked(app, { pr: 4 });
    app.service.applyEvent({ run_id: quiet.run_id, event_type: 'github.check.completed', payload: { conclusion: 'success', head_sha: HEAD } });
    facts = gatherFacts(app, { run_id: quiet.run_id });
    expect(decide(facts[0]!)).toMatchObject({ action: 'noop' });
    app.db.prepare(`UPDATE run_github SET last_observed_at = '2020-01-01T00:00:00.000Z' WHERE run_id = ?`).run(quiet.run_id);
    facts = gatherFacts(app, { run_id: quiet.run_id });
    expect(decide(facts[0]!)).toMatchObject({ action: 'sync_github' });
    expect(decide(facts[0]!).reason).toMatch(/no word from GitHub for \d+ s/);
  });
});
