import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { GitHubSim, type SimCheckRun, type SimIncoming, type SimPull, type SimReply, type SimRepo, type SimRequest, type SimReview, type SimShape, type SimStatus } from '../../src/demo/github-sim.js';

const REST = join(import.meta.dirname, '..', 'fixtures', 'github', 'rest');
const example = (name: string): unknown => JSON.parse(readFileSync(join(REST, `${name}.json`), 'utf8'));
const EXAMPLES: Record<SimShape, unknown> = {
  pull: example('pulls.get'),
  'combined-status': example('repos.getCombinedStatusForRef'),
  'check-runs': example('checks.listForRef'),
  reviews: example('pulls.listReviews'),
  annotations: example('checks.listAnnotations'),
  'review-comments': example('pulls.listReviewComments'),
  'issue-comments': example('issues.listComments'),
};

/** `over` laid on `base` (GitHub's recorded example): objects merge, a list's items each lie on the example's first item. */
function dress(base: unknown, over: unknown): unknown {
  if (Array.isArray(over)) {
    const first = Array.isArray(base) ? base[0] : undefined;
    return over.map((item) => dress(first, item));
  }
  if (over && typeof over === 'object' && base && typeof base === 'object' && !Array.isArray(base)) {
    const out: Record<string, unknown> = { ...(base as Record<string, unknown>) };
    for (const [k, v] of Object.entries(over as Record<string, unknown>)) out[k] = dress((base as Record<string, unknown>)[k], v);
    return out;
  }
  return over;
}

/**
 * The tests' GitHub: the demo's REST simulator (src/demo/github-sim.ts) plus what tests need —
 * a default token, repos created on first use, request records with Authorization and body,
 * rate-limit plans and injected failures (through GitHubSim's `intercept`), and shortcuts to
 * add PRs, checks and reviews. New PRs get head SHA `sha-of-<head>` and a github.test html_url.
 * Answers carry the fields of GitHub's recorded REST examples (test/fixtures/github/rest), with the
 * simulator's values in the fields it knows.
 */

export type RecordedRequest = SimRequest;
export type FakePull = SimPull;
export type FakeCheckRun = SimCheckRun;
export type FakeStatus = SimStatus;
export type FakeReview = Omit<SimReview, 'submitted_at'> & { submitted_at?: string };

export interface RateLimitPlan {
  /** How many of the next requests to refuse. */
  times: number;
  kind: 'primary' | 'secondary' | 'retry-after';
  /** Seconds until the quota resets / retry-after value. */
  seconds: number;
}

export class FakeGitHub extends GitHubSim {
  readonly token: string;
  private rateLimit?: RateLimitPlan;
  private failNext: Array<{ method: string; pathIncludes: string; status: number; message: string }> = [];

  constructor(opts: { token?: string } = {}) {
    const token = opts.token ?? 'ghp_fake_test_token_123456';
    super({
      token,
      resolveHeadSha: (_owner, _repo, branch, head) => (branch.length ? `sha-of-${head}` : 'x'),
      htmlBase: 'https://github.test',
      recordDetails: true,
    });
    this.token = token;
  }

  /** The repository's state, created (with `defaultBranch`) on first use. */
  repo(owner: string, repo: string, defaultBranch = 'main'): SimRepo {
    if (!this.findRepo(owner, repo)) this.addRepo(owner, repo, defaultBranch);
    return this.state(owner, repo);
  }

  addPull(owner: string, repo: string, pull: Partial<FakePull> & { head: string; head_sha: string }): FakePull {
    const n = pull.number ?? this.nextPullNumber();
    const full: FakePull = {
      number: n,
      title: 'existing',
      body: null,
      head_ref: pull.head.includes(':') ? pull.head.split(':')[1]! : pull.head,
      base: 'main',
      draft: false,
      state: 'open',
      html_url: `https://github.test/${owner}/${repo}/pull/${n}`,
      created_at: '2024-01-01T00:00:00Z',
      ...pull,
    };
    this.repo(owner, repo).pulls.push(full);
    return full;
  }

  setChecks(owner: string, repo: string, sha: string, runs: FakeCheckRun[], statuses: FakeStatus[] = []): void {
    this.repo(owner, repo).checks.set(sha, runs);
    this.repo(owner, repo).statuses.set(sha, statuses);
  }

  setReviews(owner: string, repo: string, pr: number, reviews: FakeReview[]): void {
    this.repo(owner, repo).reviews.set(pr, reviews.map((r) => ({ ...r, submitted_at: r.submitted_at ?? '2024-01-01T00:00:00Z' })));
  }

  rateLimitNext(plan: RateLimitPlan): void {
    this.rateLimit = { ...plan };
  }

  failNextRequest(method: string, pathIncludes: string, status: number, message: string): void {
    this.failNext.push({ method, pathIncludes, status, message });
  }

  requestsTo(method: string, pathIncludes: string): RecordedRequest[] {
    return this.requests.filter((r) => r.method === method && r.path.includes(pathIncludes));
  }

  /** Every answer the simulator builds is sent in the shape of GitHub's own response example (@octokit/openapi). */
  protected override shape(kind: SimShape, json: unknown): unknown {
    return dress(EXAMPLES[kind], json);
  }

  protected override intercept(req: SimIncoming): SimReply | undefined {
    if (this.rateLimit && this.rateLimit.times > 0) {
      this.rateLimit.times--;
      const { kind, seconds } = this.rateLimit;
      if (kind === 'primary') {
        return {
          status: 403,
          body: { message: 'API rate limit exceeded for user ID 1.' },
          headers: { 'x-ratelimit-limit': '5000', 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': String(Math.floor(Date.now() / 1000) + seconds) },
        };
      }
      if (kind === 'secondary') return { status: 403, body: { message: 'You have exceeded a secondary rate limit.' }, headers: { 'retry-after': String(seconds) } };
      return { status: 429, body: { message: 'Too Many Requests' }, headers: { 'retry-after': String(seconds) } };
    }
    const fail = this.failNext.findIndex((f) => f.method === req.method && req.path.includes(f.pathIncludes));
    if (fail < 0) return undefined;
    const [f] = this.failNext.splice(fail, 1);
    return { status: f!.status, body: { message: f!.message } };
  }
}
