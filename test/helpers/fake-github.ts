import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A local HTTP server speaking the GitHub REST endpoints agentpr calls (repos.get, pulls.list /
 * create / get / listReviews, checks.listForRef, repos.getCombinedStatusForRef). Octokit's
 * baseUrl points at it. It checks the token, answers like GitHub (422 for a second PR on the same
 * head, 404 for unknown repos/PRs), records every request, and can be told to rate-limit.
 */

export interface RecordedRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  authorization: string | undefined;
  body: unknown;
}

export interface FakePull {
  number: number;
  title: string;
  body: string | null;
  head: string;
  head_ref: string;
  head_sha: string;
  base: string;
  draft: boolean;
  state: 'open' | 'closed';
  html_url: string;
}

export interface FakeCheckRun {
  id: number;
  name: string;
  status: 'queued' | 'in_progress' | 'completed';
  conclusion: string | null;
}

export interface FakeStatus {
  id: number;
  context: string;
  state: 'pending' | 'success' | 'failure' | 'error';
}

export interface FakeReview {
  id: number;
  user: string;
  state: 'APPROVED' | 'CHANGES_REQUESTED' | 'COMMENTED' | 'DISMISSED';
  submitted_at?: string;
}

interface RepoState {
  default_branch: string;
  pulls: FakePull[];
  reviews: Map<number, FakeReview[]>;
  checks: Map<string, FakeCheckRun[]>;
  statuses: Map<string, FakeStatus[]>;
}

export interface RateLimitPlan {
  /** How many of the next requests to refuse. */
  times: number;
  kind: 'primary' | 'secondary' | 'retry-after';
  /** Seconds until the quota resets / retry-after value. */
  seconds: number;
}

export class FakeGitHub {
  readonly token: string;
  readonly requests: RecordedRequest[] = [];
  private readonly repos = new Map<string, RepoState>();
  private server?: Server;
  private nextPull = 1;
  private rateLimit?: RateLimitPlan;
  private failNext: Array<{ method: string; pathIncludes: string; status: number; message: string }> = [];
  url = '';

  constructor(opts: { token?: string } = {}) {
    this.token = opts.token ?? 'ghp_fake_test_token_123456';
  }

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      void this.handle(req, res);
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', () => r()));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async stop(): Promise<void> {
    if (!this.server) return;
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server!.close(() => r()));
  }

  repo(owner: string, repo: string, defaultBranch = 'main'): RepoState {
    const key = `${owner}/${repo}`.toLowerCase();
    let r = this.repos.get(key);
    if (!r) {
      r = { default_branch: defaultBranch, pulls: [], reviews: new Map(), checks: new Map(), statuses: new Map() };
      this.repos.set(key, r);
    }
    return r;
  }

  addPull(owner: string, repo: string, pull: Partial<FakePull> & { head: string; head_sha: string }): FakePull {
    const n = pull.number ?? this.nextPull++;
    const full: FakePull = {
      number: n,
      title: 'existing',
      body: null,
      head_ref: pull.head.includes(':') ? pull.head.split(':')[1]! : pull.head,
      base: 'main',
      draft: false,
      state: 'open',
      html_url: `https://github.test/${owner}/${repo}/pull/${n}`,
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
    this.repo(owner, repo).reviews.set(pr, reviews);
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

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    const url = new URL(req.url ?? '/', 'http://fake');
    const rec: RecordedRequest = {
      method: req.method ?? 'GET',
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      authorization: req.headers.authorization,
      body: text ? (JSON.parse(text) as unknown) : undefined,
    };
    this.requests.push(rec);
    const json = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', ...headers });
      res.end(JSON.stringify(body));
    };
    const auth = req.headers.authorization ?? '';
    if (auth !== `token ${this.token}` && auth !== `Bearer ${this.token}`) {
      return json(401, { message: 'Bad credentials', documentation_url: 'https://docs.github.com/rest' });
    }
    if (this.rateLimit && this.rateLimit.times > 0) {
      this.rateLimit.times--;
      const { kind, seconds } = this.rateLimit;
      if (kind === 'primary') {
        return json(403, { message: 'API rate limit exceeded for user ID 1.' }, {
          'x-ratelimit-limit': '5000',
          'x-ratelimit-remaining': '0',
          'x-ratelimit-reset': String(Math.floor(Date.now() / 1000) + seconds),
        });
      }
      if (kind === 'secondary') return json(403, { message: 'You have exceeded a secondary rate limit.' }, { 'retry-after': String(seconds) });
      return json(429, { message: 'Too Many Requests' }, { 'retry-after': String(seconds) });
    }
    const fail = this.failNext.findIndex((f) => f.method === rec.method && rec.path.includes(f.pathIncludes));
    if (fail >= 0) {
      const [f] = this.failNext.splice(fail, 1);
      return json(f!.status, { message: f!.message });
    }

    const m = /^\/repos\/([^/]+)\/([^/]+)(\/.*)?$/.exec(url.pathname);
    if (!m) return json(404, { message: 'Not Found' });
    const [, owner, name, rest = ''] = m;
    const repo = this.repos.get(`${owner}/${name}`.toLowerCase());
    if (!repo) return json(404, { message: 'Not Found' });
    const pullJson = (p: FakePull) => ({
      number: p.number,
      html_url: p.html_url,
      state: p.state,
      draft: p.draft,
      title: p.title,
      body: p.body,
      head: { ref: p.head_ref, sha: p.head_sha, label: p.head.includes(':') ? p.head : `${owner}:${p.head}` },
      base: { ref: p.base },
    });
    let mm: RegExpExecArray | null;
    if (rest === '' && rec.method === 'GET') return json(200, { name, full_name: `${owner}/${name}`, default_branch: repo.default_branch });
    if (rest === '/pulls' && rec.method === 'GET') {
      const head = rec.query.head;
      const state = rec.query.state ?? 'open';
      const list = repo.pulls.filter(
        (p) => (state === 'all' || p.state === state) && (!head || p.head === head || `${owner}:${p.head}` === head),
      );
      return json(200, list.map(pullJson));
    }
    if (rest === '/pulls' && rec.method === 'POST') {
      const b = rec.body as { title?: string; head?: string; base?: string; body?: string; draft?: boolean };
      if (!b.title || !b.head || !b.base) return json(422, { message: 'Validation Failed', errors: [{ resource: 'PullRequest', code: 'missing_field' }] });
      const exists = repo.pulls.find((p) => p.state === 'open' && (p.head === b.head || `${owner}:${p.head}` === b.head));
      if (exists) {
        return json(422, { message: 'Validation Failed', errors: [{ resource: 'PullRequest', code: 'custom', message: `A pull request already exists for ${b.head}.` }] });
      }
      const sha = (b.head.split(':').pop() ?? '').length ? `sha-of-${b.head}` : 'x';
      const p = this.addPull(owner!, name!, { title: b.title, body: b.body ?? null, head: b.head, head_sha: sha, base: b.base, draft: b.draft ?? false });
      return json(201, pullJson(p));
    }
    if ((mm = /^\/pulls\/(\d+)$/.exec(rest)) && rec.method === 'GET') {
      const p = repo.pulls.find((x) => x.number === Number(mm![1]));
      return p ? json(200, pullJson(p)) : json(404, { message: 'Not Found' });
    }
    if ((mm = /^\/pulls\/(\d+)\/reviews$/.exec(rest)) && rec.method === 'GET') {
      const list = repo.reviews.get(Number(mm[1])) ?? [];
      return json(200, list.map((r) => ({ id: r.id, user: { login: r.user }, state: r.state, submitted_at: r.submitted_at ?? '2024-01-01T00:00:00Z' })));
    }
    if ((mm = /^\/commits\/([^/]+)\/check-runs$/.exec(rest)) && rec.method === 'GET') {
      const list = repo.checks.get(decodeURIComponent(mm[1]!)) ?? [];
      return json(200, { total_count: list.length, check_runs: list.map((c) => ({ ...c, head_sha: mm![1] })) });
    }
    if ((mm = /^\/commits\/([^/]+)\/status$/.exec(rest)) && rec.method === 'GET') {
      const list = repo.statuses.get(decodeURIComponent(mm[1]!)) ?? [];
      const state = list.some((s) => s.state === 'failure' || s.state === 'error') ? 'failure' : list.every((s) => s.state === 'success') && list.length ? 'success' : 'pending';
      return json(200, { state, sha: mm[1], total_count: list.length, statuses: list });
    }
    return json(404, { message: `Not Found (fake GitHub has no ${rec.method} ${rest})` });
  }
}
