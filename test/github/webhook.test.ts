import { existsSync, readFileSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { sign } from '@octokit/webhooks-methods';
import { makeTestApp } from '../helpers/app.js';
import { FakeGitHub } from '../helpers/fake-github.js';
import type { App } from '../../src/app.js';
import { Registry } from '../../src/registry.js';
import { TOOLS } from '../../tools/index.js';
import { startWebhookServer, type WebhookServer } from '../../src/github/webhook-server.js';
import { runGithubWebhook } from '../../src/commands/run-github-webhook.js';
import { deliver, deliveryId, fixture, linkedRun } from './runs.js';

const SECRET = 'test-secret';
const OWNER = 'Codertocat';
const REPO = 'Hello-World';
const NO_TOKEN = { GITHUB_TOKEN: '', AGENTPR_GITHUB_TOKEN: '', GH_TOKEN: '' };

interface Ledger {
  delivery_id: string;
  outcome: string;
  event_type: string;
}

function ledger(app: App): Ledger[] {
  return app.db.prepare('SELECT delivery_id, outcome, event_type FROM webhook_deliveries ORDER BY received_at').all() as Ledger[];
}

function auditLines(path: string): Array<Record<string, unknown>> {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .slice(0, -1) // a line still being written has no newline yet
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** Waits for the audit stream to flush the line of the request just answered. */
async function auditFor(path: string, delivery: string): Promise<Record<string, unknown>> {
  for (let i = 0; i < 100; i++) {
    const line = auditLines(path).find((l) => l.delivery === delivery);
    if (line) return line;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`no audit line for ${delivery}`);
}

describe('GitHub webhook receiver', () => {
  let ctx: ReturnType<typeof makeTestApp>;
  let app: App;
  let hook: WebhookServer;

  beforeEach(async () => {
    ctx = makeTestApp({ env: NO_TOKEN });
    app = ctx.app;
    hook = await startWebhookServer({ app, host: '127.0.0.1', port: 0, secrets: [SECRET, 'old-secret'] });
  });
  afterEach(async () => {
    await hook.close();
    await ctx.cleanup();
  });

  it('answers alive on GET and 404 elsewhere', async () => {
    const alive = await fetch(hook.url);
    expect(alive.status).toBe(200);
    expect(await alive.json()).toMatchObject({ ok: true, alive: true });
    const wrong = await fetch(hook.url.replace('/github/webhook', '/other'), { method: 'POST', body: '{}' });
    expect(wrong.status).toBe(404);
  });

  it('applies a failed check run to the linked run once, however often it is delivered', async () => {
    const run = linkedRun(app, OWNER, REPO, 2);
    expect(run.state).toBe('CI_WAIT');
    const payload = fixture('check_run.completed.failure');
    const first = await deliver(hook.url, { event: 'check_run', payload });
    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({ outcome: 'processed', processed: 1 });
    expect(app.service.getRun(run.run_id)).toMatchObject({ state: 'ITERATING', last_error: 'github_check:failure' });

    // GitHub's redelivery carries the same X-GitHub-Delivery.
    const replay = await deliver(hook.url, { event: 'check_run', payload, delivery: first.delivery });
    expect(replay.status).toBe(200);
    expect(replay.body.outcome).toBe('duplicate_delivery');

    // The same check seen again under a new delivery id is a duplicate event (key from the check run id).
    const again = await deliver(hook.url, { event: 'check_run', payload });
    expect(again.status).toBe(200);
    const checks = app.service.listEvents(run.run_id).filter((e) => e.event_type === 'github.check.completed');
    expect(checks).toHaveLength(1);
    expect(checks[0]!.idempotency_key).toBe(`github.check.completed:${run.run_id}:check_run:128620228:ec26c3e57ca3:failure`);
    expect(ledger(app).map((l) => l.outcome)).toEqual(['processed', 'processed']);

    const line = await auditFor(hook.auditPath, first.delivery);
    expect(line).toMatchObject({ event: 'check_run', status_code: 200, outcome: 'processed', processed: 1, ignored: 0, error: null });
    expect(typeof line.ts).toBe('string');
    expect((await auditFor(hook.auditPath, replay.delivery)).outcome).toBeDefined();
  });

  it('answers 200 ignored for PRs no run tracks', async () => {
    const res = await deliver(hook.url, { event: 'pull_request', payload: fixture('pull_request.opened') });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ outcome: 'ignored', processed: 0, ignored: 1 });
    expect((res.body.notes as string[])[0]).toContain('PR #2 in Codertocat/Hello-World is not linked to any run');
    expect(ledger(app)).toEqual([{ delivery_id: res.delivery, outcome: 'ignored', event_type: 'pull_request' }]);
    // Reserved with its final outcome in one write; a redelivery is still a duplicate.
    const again = await deliver(hook.url, { event: 'pull_request', payload: fixture('pull_request.opened'), delivery: res.delivery });
    expect(again.body).toMatchObject({ outcome: 'duplicate_delivery', first_outcome: 'ignored' });
    expect(ledger(app)).toHaveLength(1);
  });

  it('never processes a forged or missing signature, and accepts a rotated secret', async () => {
    const run = linkedRun(app, OWNER, REPO, 2);
    const payload = fixture('check_run.completed.failure');
    const forged = await deliver(hook.url, { event: 'check_run', payload, secret: 'attacker' });
    expect(forged.status).toBe(401);
    const tampered = JSON.stringify(payload);
    const sig = await sign(SECRET, tampered);
    const altered = await deliver(hook.url, { event: 'check_run', raw: tampered.replace('"failure"', '"success"'), payload: null, signature: sig });
    expect(altered.status).toBe(401);
    const missing = await deliver(hook.url, { event: 'check_run', payload, signature: null });
    expect(missing.status).toBe(401);
    expect(app.service.getRun(run.run_id).state).toBe('CI_WAIT');
    expect(ledger(app)).toEqual([]);
    expect((await auditFor(hook.auditPath, forged.delivery)).outcome).toBe('invalid_signature');

    const rotated = await deliver(hook.url, { event: 'check_run', payload, secret: 'old-secret' });
    expect(rotated.status).toBe(200);
    expect(app.service.getRun(run.run_id).state).toBe('ITERATING');
  });

  it('refuses a declared oversized body with 413 without reading it', async () => {
    const max = app.policy.github_webhook.max_payload_bytes;
    const res = await fetch(hook.url, {
      method: 'POST',
      headers: { 'x-github-event': 'ping', 'x-github-delivery': deliveryId() },
      body: Buffer.alloc(max + 1, 0x20),
    }).catch((err: unknown) => err as Error);
    // The server may close before the client finishes sending; either way nothing is recorded.
    if (!(res instanceof Error)) expect(res.status).toBe(413);
    expect(ledger(app)).toEqual([]);
  });

  it('answers 413 while a chunked body is still streaming in, before it ends', async () => {
    const max = app.policy.github_webhook.max_payload_bytes;
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(hook.url, { method: 'POST', headers: { 'x-github-event': 'ping', 'x-github-delivery': deliveryId(), 'transfer-encoding': 'chunked' } });
      req.on('response', (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
        req.destroy();
      });
      req.on('error', reject);
      // More than the limit, and the body never ends: only a streaming check can answer.
      req.write(Buffer.alloc(max + 4096, 0x20));
    });
    expect(status).toBe(413);
    // The audit line is written after the answer went out: wait for it (a loaded machine may take a while).
    let line = auditLines(hook.auditPath).at(-1);
    for (let i = 0; line === undefined && i < 200; i++) {
      await new Promise((r) => setTimeout(r, 25));
      line = auditLines(hook.auditPath).at(-1);
    }
    expect(line).toMatchObject({ status_code: 413, outcome: 'payload_too_large' });
    expect(ledger(app)).toEqual([]);
  });

  it('refuses a request without a length (400) or without X-GitHub-Event (400)', async () => {
    const port = Number(new URL(hook.url).port);
    const raw = await new Promise<string>((resolve, reject) => {
      const sock = connect(port, '127.0.0.1', () => sock.write('POST /github/webhook HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: ping\r\n\r\n'));
      let out = '';
      sock.on('data', (d) => (out += d.toString()));
      sock.on('end', () => resolve(out));
      sock.on('error', reject);
    });
    expect(raw.startsWith('HTTP/1.1 400')).toBe(true);
    expect(raw).toContain('missing Content-Length');

    const noEvent = await fetch(hook.url, { method: 'POST', body: '{}', headers: { 'x-github-delivery': deliveryId() } });
    expect(noEvent.status).toBe(400);
    expect(await noEvent.json()).toMatchObject({ error: 'missing X-GitHub-Event header' });
  });

  it('releases the reservation on invalid JSON, so a corrected redelivery is processed', async () => {
    const delivery = deliveryId();
    const bad = await deliver(hook.url, { event: 'ping', raw: '{"zen": ', payload: null, delivery });
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatch(/not valid JSON/);
    expect(ledger(app)).toEqual([]);
    const good = await deliver(hook.url, { event: 'ping', payload: fixture('ping'), delivery });
    expect(good.status).toBe(200);
    expect(good.body.outcome).toBe('pong');
  });

  it('releases the reservation when processing fails (500), so the redelivery is processed', async () => {
    const run = linkedRun(app, OWNER, REPO, 2);
    let failures = 1;
    app.preCallHooks.push(() => {
      if (failures-- > 0) throw new Error('database is locked');
    });
    const payload = fixture('check_run.completed.failure');
    const first = await deliver(hook.url, { event: 'check_run', payload });
    expect(first.status).toBe(500);
    expect(first.body.error).toMatch(/database is locked.*redeliver/);
    expect(ledger(app)).toEqual([]);
    expect(app.service.getRun(run.run_id).state).toBe('CI_WAIT');
    expect(await auditFor(hook.auditPath, first.delivery)).toMatchObject({ status_code: 500, outcome: 'error' });

    const redelivery = await deliver(hook.url, { event: 'check_run', payload, delivery: first.delivery });
    expect(redelivery.status).toBe(200);
    expect(redelivery.body.outcome).toBe('processed');
    expect(app.service.getRun(run.run_id).state).toBe('ITERATING');
  });

  it('applies a changes_requested review to the run of that PR', async () => {
    const run = linkedRun(app, OWNER, REPO, 2);
    app.service.applyEvent({ run_id: run.run_id, event_type: 'github.check.completed', payload: { conclusion: 'success' } });
    const payload = fixture<{ review: { state: string } }>('pull_request_review.submitted');
    const commented = await deliver(hook.url, { event: 'pull_request_review', payload });
    expect(commented.body.outcome).toBe('processed');
    expect(app.service.getRun(run.run_id).state).toBe('REVIEW_WAIT');
    payload.review.state = 'changes_requested';
    const res = await deliver(hook.url, { event: 'pull_request_review', payload });
    expect(res.status).toBe(200);
    expect(app.service.getRun(run.run_id)).toMatchObject({ state: 'ITERATING', last_error: 'github_review:changes_requested' });
    const keys = app.service.listEvents(run.run_id).map((e) => e.idempotency_key);
    expect(keys).toContain(`github.review.submitted:${run.run_id}:review:237895671:changes_requested`);
  });

  it('matches a failed commit status to the run by its head SHA', async () => {
    const payload = fixture<{ state: string; sha: string }>('status');
    const run = linkedRun(app, OWNER, REPO, 2, 'changes', payload.sha);
    payload.state = 'pending';
    const pending = await deliver(hook.url, { event: 'status', payload });
    expect(pending.body.outcome).toBe('ignored');
    payload.state = 'failure';
    const failed = await deliver(hook.url, { event: 'status', payload });
    expect(failed.body).toMatchObject({ outcome: 'processed', processed: 1 });
    expect(app.service.getRun(run.run_id).state).toBe('ITERATING');
  });

  it('does not trust one green check: without a token it waits, with one it asks GitHub for the whole picture', async () => {
    const run = linkedRun(app, OWNER, REPO, 2);
    const green = await deliver(hook.url, { event: 'check_suite', payload: fixture('check_suite.completed') });
    expect(green.body).toMatchObject({ outcome: 'ignored' });
    expect((green.body.notes as string[]).join()).toMatch(/without GITHUB_TOKEN/);
    expect(app.service.getRun(run.run_id).state).toBe('CI_WAIT');

    const gh = await new FakeGitHub().start();
    const withToken = makeTestApp({ env: { GITHUB_API_URL: gh.url, GITHUB_TOKEN: gh.token } });
    const hook2 = await startWebhookServer({ app: withToken.app, port: 0, secrets: [SECRET] });
    try {
      const run2 = linkedRun(withToken.app, OWNER, REPO, 2);
      gh.addPull(OWNER, REPO, { number: 2, head: 'changes', head_sha: 'ec26c3e57ca3a959ca5aad62de7213c562f8c821' });
      gh.setChecks(OWNER, REPO, 'ec26c3e57ca3a959ca5aad62de7213c562f8c821', [
        { id: 1, name: 'build', status: 'completed', conclusion: 'success' },
        { id: 2, name: 'lint', status: 'in_progress', conclusion: null },
      ]);
      const pending = await deliver(hook2.url, { event: 'check_run', payload: fixture('check_run.completed.success') });
      expect(pending.body).toMatchObject({ outcome: 'processed', processed: 1 });
      await hook2.followups!.idle();
      expect(withToken.app.service.getRun(run2.run_id).state).toBe('CI_WAIT');

      gh.setChecks(OWNER, REPO, 'ec26c3e57ca3a959ca5aad62de7213c562f8c821', [
        { id: 1, name: 'build', status: 'completed', conclusion: 'success' },
        { id: 2, name: 'lint', status: 'completed', conclusion: 'neutral' },
      ]);
      const done = await deliver(hook2.url, { event: 'check_suite', payload: fixture('check_suite.completed') });
      expect(done.body.outcome).toBe('processed');
      await hook2.followups!.idle();
      expect(withToken.app.service.getRun(run2.run_id).state).toBe('REVIEW_WAIT');
      expect(gh.requestsTo('GET', '/check-runs')).toHaveLength(2);
      expect(gh.requests.every((r) => r.authorization === `token ${gh.token}`)).toBe(true);
    } finally {
      await hook2.close();
      await withToken.cleanup();
      await gh.stop();
    }
  });

  it('answers ping with pong and comments on a tracked PR as ignored', async () => {
    linkedRun(app, OWNER, REPO, 1);
    const ping = await deliver(hook.url, { event: 'ping', payload: fixture('ping') });
    expect(ping.body.outcome).toBe('pong');
    const comment = fixture<{ issue: Record<string, unknown> }>('issue_comment.created');
    const onIssue = await deliver(hook.url, { event: 'issue_comment', payload: comment });
    expect((onIssue.body.notes as string[])[0]).toMatch(/not a pull request/);
    comment.issue.pull_request = { url: 'https://api.github.com/repos/Codertocat/Hello-World/pulls/1' };
    const onPr = await deliver(hook.url, { event: 'issue_comment', payload: comment });
    expect(onPr.body).toMatchObject({ outcome: 'ignored', ignored: 1 });
    expect((onPr.body.notes as string[])[0]).toMatch(/issue_comment.created changes no run state/);
    const push = await deliver(hook.url, { event: 'push', payload: fixture('push') });
    expect((push.body.notes as string[])[0]).toMatch(/event 'push' is not handled/);
  });

  it('an event header naming an object property (constructor, __proto__) is an event not handled, not a crash', async () => {
    for (const event of ['constructor', '__proto__', 'toString']) {
      const res = await deliver(hook.url, { event, payload: fixture('ping') });
      expect(res.status, event).toBe(200);
      expect(res.body.outcome, event).toBe('ignored');
      expect((res.body.notes as string[])[0]).toContain(`event '${event}' is not handled`);
    }
  });

  it('summarizes the audit log and cleans the ledger through the tools', async () => {
    linkedRun(app, OWNER, REPO, 2);
    await deliver(hook.url, { event: 'check_run', payload: fixture('check_run.completed.failure') });
    await deliver(hook.url, { event: 'check_run', payload: fixture('check_run.completed.failure'), secret: 'nope' });
    await deliver(hook.url, { event: 'pull_request', payload: fixture('pull_request.closed') });
    await fetch(hook.url);
    await hook.close(); // flushes the audit stream
    const registry = new Registry(TOOLS);
    const summary = await registry.call('webhook-audit-summary', { hours: 1 }, { app, entry: 'cli' });
    expect(summary.ok).toBe(true);
    if (!summary.ok) return;
    // The closed (unmerged) PR is recorded too: the run goes to NEEDS_HUMAN_REVIEW (pr_closed).
    expect(summary.data).toMatchObject({
      total: 4,
      by_outcome: { processed: 2, invalid_signature: 1, alive: 1 },
      by_status_code: { '200': 3, '401': 1 },
      by_event: { check_run: 2, pull_request: 1, '(none)': 1 },
      processed: 2,
      ledger_by_outcome: { processed: 2 },
    });
    expect((summary.data.last_errors as Array<{ outcome: string }>)[0]!.outcome).toBe('invalid_signature');

    app.db.prepare(`UPDATE webhook_deliveries SET received_at = '2020-01-01T00:00:00.000Z' WHERE event_type = 'pull_request'`).run();
    const dry = await registry.call('cleanup-webhook-deliveries', { keep_days: 7, dry_run: true }, { app, entry: 'cli' });
    expect(dry.ok && dry.data).toMatchObject({ deleted: 1, dry_run: true });
    expect(ledger(app)).toHaveLength(2);
    const clean = await registry.call('cleanup-webhook-deliveries', { keep_days: 7 }, { app, entry: 'cli' });
    expect(clean.ok && clean.data).toMatchObject({ deleted: 1, remaining: 1 });
    expect(ledger(app).map((l) => l.outcome)).toEqual(['processed']);
  });
});

describe('webhook receiver startup', () => {
  let ctx: ReturnType<typeof makeTestApp>;
  beforeAll(() => {
    ctx = makeTestApp({ env: { AGENTPR_GITHUB_WEBHOOK_SECRET: '', AGENTPR_GITHUB_WEBHOOK_SECRETS: '' } });
  });
  afterAll(async () => {
    await ctx.cleanup();
  });

  it('refuses to start without a secret unless unsigned deliveries are allowed', async () => {
    await expect(startWebhookServer({ app: ctx.app, port: 0 })).rejects.toThrow(/AGENTPR_GITHUB_WEBHOOK_SECRET/);
    const code = await runGithubWebhook.run(['--port', '0'], { globals: {}, openApp: () => ctx.app });
    expect(code).toBe(2);
    const hook = await startWebhookServer({ app: ctx.app, port: 0, allowUnsigned: true });
    try {
      const res = await deliver(hook.url, { event: 'ping', payload: fixture('ping'), signature: null });
      expect(res.status).toBe(200);
      expect(res.body.outcome).toBe('pong');
    } finally {
      await hook.close();
    }
  });
});
