import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { makeTestApp } from '../helpers/app.js';
import { FakeGitHub } from '../helpers/fake-github.js';
import type { App } from '../../src/app.js';
import { Registry } from '../../src/registry.js';
import { TOOLS } from '../../tools/index.js';
import { reviewDecision, summarizeChecks } from '../../src/github/sync.js';
import { rateLimitRetryAfter } from '../../src/github/client.js';
import { linkedRun } from './runs.js';

const OWNER = 'octo-org';
const REPO = 'widgets';
const SHA = 'a'.repeat(40);

describe('check and review aggregation', () => {
  it('any failure -> failure, any pending -> nothing, all green -> success', () => {
    const ok = { id: 1, name: 'build', status: 'completed', conclusion: 'success' };
    expect(summarizeChecks([ok, { id: 2, name: 'docs', status: 'completed', conclusion: 'skipped' }], [{ id: 3, context: 'ci', state: 'success' }]).conclusion).toBe('success');
    expect(summarizeChecks([ok, { id: 2, name: 'lint', status: 'in_progress', conclusion: null }], []).conclusion).toBeNull();
    const failed = summarizeChecks([{ id: 2, name: 'lint', status: 'in_progress', conclusion: null }, { id: 3, name: 'e2e', status: 'completed', conclusion: 'timed_out' }], [{ id: 4, context: 'legacy', state: 'error' }]);
    expect(failed).toMatchObject({ conclusion: 'failure', failed: 2, pending: 1, failing: ['e2e:timed_out', 'legacy:failure'] });
    expect(summarizeChecks([], []).conclusion).toBeNull();
  });

  it("takes each reviewer's latest decision; changes requested wins, dismissal clears", () => {
    expect(reviewDecision([{ id: 1, user: 'a', state: 'CHANGES_REQUESTED', submitted_at: null }, { id: 2, user: 'a', state: 'APPROVED', submitted_at: null }])).toMatchObject({ state: 'approved', review_id: 2 });
    expect(reviewDecision([{ id: 1, user: 'a', state: 'APPROVED', submitted_at: null }, { id: 2, user: 'b', state: 'CHANGES_REQUESTED', submitted_at: null }, { id: 3, user: 'b', state: 'COMMENTED', submitted_at: null }])).toMatchObject({ state: 'changes_requested', review_id: 2 });
    expect(reviewDecision([{ id: 1, user: 'b', state: 'CHANGES_REQUESTED', submitted_at: null }, { id: 2, user: 'b', state: 'DISMISSED', submitted_at: null }])).toBeNull();
  });

  it('reads rate-limit answers: retry-after, exhausted quota reset, neither', () => {
    expect(rateLimitRetryAfter(429, { 'retry-after': '7' }, 'Too Many Requests')).toBe(7);
    expect(rateLimitRetryAfter(403, { 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': '1000' }, 'API rate limit exceeded', 900_000)).toBe(101);
    expect(rateLimitRetryAfter(403, {}, 'Resource not accessible by integration')).toBeUndefined();
  });
});

describe('sync-github against a GitHub REST server', () => {
  let ctx: ReturnType<typeof makeTestApp>;
  let app: App;
  let gh: FakeGitHub;
  const registry = new Registry(TOOLS);
  const sync = (args: Record<string, unknown> = {}) => registry.call('sync-github', args, { app, entry: 'manager' });

  beforeEach(async () => {
    gh = await new FakeGitHub().start();
    gh.repo(OWNER, REPO);
    ctx = makeTestApp({ env: { GITHUB_API_URL: gh.url, AGENTPR_GITHUB_TOKEN: gh.token, GITHUB_TOKEN: '', AGENTPR_GITHUB_MAX_RATE_WAIT_SEC: '2' } });
    app = ctx.app;
  });
  afterEach(async () => {
    await ctx.cleanup();
    await gh.stop();
  });

  it('applies a failed check once; a re-sync changes nothing', async () => {
    const run = linkedRun(app, OWNER, REPO, 5);
    gh.addPull(OWNER, REPO, { number: 5, head: 'changes', head_sha: SHA });
    gh.setChecks(OWNER, REPO, SHA, [
      { id: 11, name: 'build', status: 'completed', conclusion: 'success' },
      { id: 12, name: 'test', status: 'completed', conclusion: 'failure' },
    ]);
    const first = await sync({ run_id: run.run_id });
    expect(first.ok).toBe(true);
    if (!first.ok) return;
    expect(first.data.results).toMatchObject([{ status: 'synced', head_sha: SHA, checks: { conclusion: 'failure', failing: ['test:failure'] } }]);
    expect(app.service.getRun(run.run_id)).toMatchObject({ state: 'ITERATING', last_error: 'github_check:failure' });
    expect(gh.requestsTo('GET', `/commits/${SHA}/check-runs`)[0]!.authorization).toBe(`token ${gh.token}`);
    expect(gh.requestsTo('GET', '/pulls/5/reviews')).toHaveLength(1);

    const eventsBefore = app.service.listEvents(run.run_id).length;
    const second = await sync({ run_id: run.run_id });
    expect(second.ok && second.data.results).toMatchObject([{ status: 'synced', applied: [{ duplicate: true }] }]);
    expect(app.service.listEvents(run.run_id)).toHaveLength(eventsBefore);
  });

  it('waits while checks are pending, moves to REVIEW_WAIT when all are green, then to ITERATING on changes requested', async () => {
    const run = linkedRun(app, OWNER, REPO, 6);
    gh.addPull(OWNER, REPO, { number: 6, head: 'changes', head_sha: SHA });
    gh.setChecks(OWNER, REPO, SHA, [{ id: 21, name: 'build', status: 'in_progress', conclusion: null }], [{ id: 22, context: 'ci/legacy', state: 'success' }]);
    const pending = await sync({ run_id: run.run_id });
    expect(pending.ok && pending.data.results).toMatchObject([{ status: 'synced', applied: [], checks: { pending: 1, conclusion: null } }]);
    expect(app.service.getRun(run.run_id).state).toBe('CI_WAIT');

    gh.setChecks(OWNER, REPO, SHA, [{ id: 21, name: 'build', status: 'completed', conclusion: 'success' }], [{ id: 22, context: 'ci/legacy', state: 'success' }]);
    gh.setReviews(OWNER, REPO, 6, [{ id: 901, user: 'maintainer', state: 'COMMENTED' }]);
    await sync();
    expect(app.service.getRun(run.run_id).state).toBe('REVIEW_WAIT');

    gh.setReviews(OWNER, REPO, 6, [{ id: 901, user: 'maintainer', state: 'COMMENTED' }, { id: 902, user: 'maintainer', state: 'CHANGES_REQUESTED' }]);
    const all = await sync();
    expect(all.ok && all.data.results).toMatchObject([{ run_id: run.run_id, review: { state: 'changes_requested', review_id: 902 } }]);
    expect(app.service.getRun(run.run_id)).toMatchObject({ state: 'ITERATING', last_error: 'github_review:changes_requested' });
    expect(app.service.listEvents(run.run_id).at(-1)!.idempotency_key).toBe(`github.review.submitted:${run.run_id}:review:902:changes_requested`);
  });

  it('reports a long rate limit as "retry after N s" and leaves every run unchanged', async () => {
    const a = linkedRun(app, OWNER, REPO, 7);
    const b = linkedRun(app, OWNER, REPO, 8);
    gh.rateLimitNext({ times: 1, kind: 'primary', seconds: 3600 });
    const res = await sync();
    expect(res.ok).toBe(true);
    if (!res.ok) return;
    expect(res.data.rate_limited).toBe(true);
    expect(res.data.retry_after_s).toBeGreaterThanOrEqual(3600);
    expect(res.data.results).toHaveLength(2);
    for (const r of res.data.results as Array<{ status: string; message: string }>) {
      expect(r.status).toBe('rate_limited');
      expect(r.message).toMatch(/rate limited, retry after 36\d\d s/);
    }
    // One refused request; the second run was not asked for at all.
    expect(gh.requests).toHaveLength(1);
    expect(app.service.getRun(a.run_id).state).toBe('CI_WAIT');
    expect(app.service.getRun(b.run_id).state).toBe('CI_WAIT');
  });

  it('waits out a short retry-after once and then syncs', async () => {
    const run = linkedRun(app, OWNER, REPO, 9);
    gh.addPull(OWNER, REPO, { number: 9, head: 'changes', head_sha: SHA });
    gh.setChecks(OWNER, REPO, SHA, [{ id: 31, name: 'build', status: 'completed', conclusion: 'cancelled' }]);
    gh.rateLimitNext({ times: 1, kind: 'retry-after', seconds: 1 });
    const res = await sync({ run_id: run.run_id });
    expect(res.ok && res.data.results).toMatchObject([{ status: 'synced', checks: { conclusion: 'cancelled' } }]);
    expect(app.service.getRun(run.run_id).state).toBe('ITERATING');
  });

  it('says what to fix when the token is refused or missing', async () => {
    const run = linkedRun(app, OWNER, REPO, 10);
    const refused = makeTestApp({ env: { GITHUB_API_URL: gh.url, AGENTPR_GITHUB_TOKEN: 'ghp_wrong_token_000', GITHUB_TOKEN: '' } });
    try {
      const other = linkedRun(refused.app, OWNER, REPO, 10);
      const res = await registry.call('sync-github', { run_id: other.run_id }, { app: refused.app, entry: 'cli' });
      expect(res.ok && res.data.results).toMatchObject([{ status: 'error' }]);
      if (res.ok) expect((res.data.results as Array<{ message: string }>)[0]!.message).toMatch(/HTTP 401: Bad credentials; the token in AGENTPR_GITHUB_TOKEN was refused/);
      expect(refused.app.service.listAttempts(other.run_id, 'github_sync')).toMatchObject([{ status: 'failed', reason_code: 'github_http_401' }]);
    } finally {
      await refused.cleanup();
    }
    const none = makeTestApp({ env: { GITHUB_TOKEN: '', AGENTPR_GITHUB_TOKEN: '', GH_TOKEN: '' } });
    try {
      const r = linkedRun(none.app, OWNER, REPO, 10);
      const res = await registry.call('sync-github', { run_id: r.run_id }, { app: none.app, entry: 'cli' });
      expect(res).toMatchObject({ ok: false, code: 'configuration' });
      if (!res.ok) expect(res.error).toMatch(/set AGENTPR_GITHUB_TOKEN or GITHUB_TOKEN/);
    } finally {
      await none.cleanup();
    }
    expect(app.service.getRun(run.run_id).state).toBe('CI_WAIT');
  });
});
