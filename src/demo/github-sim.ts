import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A small local server speaking the GitHub REST endpoints agentpr calls (src/github/client.ts):
 * repos.get, pulls.list / create / get / listReviews / listReviewComments, checks.listForRef /
 * listAnnotations, the Actions job-log redirect, issues.listComments and
 * repos.getCombinedStatusForRef. The demo points GITHUB_API_URL at it, so approve-open-pr and
 * sync-github run their real octokit code with no network and no real token. It checks the
 * token like GitHub (401 otherwise), answers 404 for what it does not know, and records every
 * request. The PRs' html_url pages are served too, as a short text summary.
 *
 * Extension point (the tests' FakeGitHub builds on it): a subclass may override `intercept`, which
 * sees every request that passed the token check and may answer it instead of the simulator
 * (rate limits, injected failures); `findRepo` / `state` / `nextPullNumber` give it the data.
 */

export interface SimRequest {
  at: string;
  method: string;
  path: string;
  query: Record<string, string>;
  status: number;
  /** The Authorization header as sent; recorded only with `recordDetails`. */
  authorization?: string;
  /** The parsed JSON body (undefined when none); recorded only with `recordDetails`. */
  body?: unknown;
}

/** A request as `intercept` sees it. */
export interface SimIncoming {
  method: string;
  path: string;
  query: Record<string, string>;
  authorization: string | undefined;
  /** The parsed JSON body, or undefined when there is none or it is not JSON. */
  body: unknown;
}

/** An answer `intercept` gives instead of the simulator. */
export interface SimReply {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

export interface SimPull {
  number: number;
  title: string;
  body: string | null;
  /** As sent: `branch` or `owner:branch`. */
  head: string;
  head_ref: string;
  head_sha: string;
  base: string;
  draft: boolean;
  state: 'open' | 'closed';
  html_url: string;
  created_at: string;
  merged?: boolean;
  merge_commit_sha?: string | null;
  closed_at?: string | null;
  /** The repository the head branch lives in; default: the `owner:` of `head`, else the base repository. */
  head_owner?: string;
  maintainer_can_modify?: boolean;
}

/** Which answer a subclass's `shape` is asked to dress (e.g. in GitHub's recorded response examples). */
export type SimShape = 'pull' | 'combined-status' | 'check-runs' | 'reviews' | 'annotations' | 'review-comments' | 'issue-comments';

export interface SimCheckRun {
  id: number;
  name: string;
  status: 'queued' | 'in_progress' | 'completed';
  conclusion: string | null;
  /** The app that ran it; `github-actions` makes the check run's id a job id with a log. */
  app?: string;
  output?: { title?: string | null; summary?: string | null; text?: string | null };
  annotations?: Array<{ path: string; start_line: number; end_line?: number; annotation_level: 'notice' | 'warning' | 'failure'; message: string; title?: string }>;
  /** The job's log (GitHub Actions), served through the logs redirect. */
  log?: string;
}

export interface SimReviewComment {
  id: number;
  user: string;
  path: string;
  line: number | null;
  diff_hunk: string;
  body: string;
  /** null: outdated (the line is gone from the diff). */
  position: number | null;
  created_at: string;
}

export interface SimIssueComment {
  id: number;
  user: string;
  author_association: 'OWNER' | 'MEMBER' | 'COLLABORATOR' | 'CONTRIBUTOR' | 'NONE';
  body: string;
  created_at: string;
}

export interface SimStatus {
  id: number;
  context: string;
  state: 'pending' | 'success' | 'failure' | 'error';
}

export interface SimReview {
  id: number;
  user: string;
  state: 'APPROVED' | 'CHANGES_REQUESTED' | 'COMMENTED' | 'DISMISSED';
  body?: string;
  submitted_at: string;
}

export interface SimRepo {
  owner: string;
  name: string;
  default_branch: string;
  pulls: SimPull[];
  reviews: Map<number, SimReview[]>;
  checks: Map<string, SimCheckRun[]>;
  statuses: Map<string, SimStatus[]>;
  reviewComments: Map<number, SimReviewComment[]>;
  issueComments: Map<number, SimIssueComment[]>;
}

export interface GitHubSimOptions {
  /** The token clients must send (`token X` or `Bearer X`). */
  token: string;
  /**
   * The commit a branch points at, for new PRs (the demo reads the fork's bare repository).
   * `head` is the PR's head as sent (`branch` or `owner:branch`).
   */
  resolveHeadSha?: (owner: string, repo: string, branch: string, head: string) => string | undefined;
  /** Where new PRs' html_url points (default: this server, which serves the page). */
  htmlBase?: string;
  /** Also record each request's Authorization header and body (off: the demo's log holds no token). */
  recordDetails?: boolean;
  /** Called after every answered request. */
  onRequest?: (r: SimRequest) => void;
}

export class GitHubSim {
  readonly requests: SimRequest[] = [];
  url = '';
  /** Milliseconds added before every API answer (a slow GitHub, for tests of who waits on it). */
  latencyMs = 0;
  private readonly opts: GitHubSimOptions;
  private readonly repos = new Map<string, SimRepo>();
  private server?: Server;
  private nextPull = 1;

  constructor(opts: GitHubSimOptions) {
    this.opts = opts;
  }

  /** Listens on 127.0.0.1 with a free port. */
  async start(): Promise<this> {
    const server = createServer((req, res) => {
      void this.handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ message: `github-sim failed: ${err instanceof Error ? err.message : String(err)}` }));
      });
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    this.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    return this;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  addRepo(owner: string, name: string, defaultBranch = 'main'): void {
    this.repos.set(key(owner, name), { owner, name, default_branch: defaultBranch, pulls: [], reviews: new Map(), checks: new Map(), statuses: new Map(), reviewComments: new Map(), issueComments: new Map() });
  }

  pulls(owner: string, name: string): SimPull[] {
    return [...this.state(owner, name).pulls];
  }

  /** The check runs GitHub would report for a commit (replaces earlier ones). */
  setCheckRuns(owner: string, name: string, sha: string, runs: SimCheckRun[]): void {
    this.state(owner, name).checks.set(sha, runs);
  }

  setStatuses(owner: string, name: string, sha: string, statuses: SimStatus[]): void {
    this.state(owner, name).statuses.set(sha, statuses);
  }

  addReview(owner: string, name: string, pullNumber: number, review: SimReview): void {
    const r = this.state(owner, name);
    r.reviews.set(pullNumber, [...(r.reviews.get(pullNumber) ?? []), review]);
  }

  /** A review comment on a line of the PR's diff (served by pulls/{n}/comments). */
  addReviewComment(owner: string, name: string, pullNumber: number, comment: SimReviewComment): void {
    const r = this.state(owner, name);
    r.reviewComments.set(pullNumber, [...(r.reviewComments.get(pullNumber) ?? []), comment]);
  }

  /** A push to the PR's branch: the PR's head moves to `sha`. */
  setPullHead(owner: string, name: string, pullNumber: number, sha: string): void {
    this.pull(owner, name, pullNumber).head_sha = sha;
  }

  /** Merges the PR (state closed, merged, with the merge commit); answers the PR as it now is. */
  mergePull(owner: string, name: string, pullNumber: number, mergeCommitSha: string): SimPull {
    const p = this.pull(owner, name, pullNumber);
    Object.assign(p, { state: 'closed', merged: true, merge_commit_sha: mergeCommitSha, closed_at: new Date().toISOString() });
    return { ...p };
  }

  private pull(owner: string, name: string, pullNumber: number): SimPull {
    const p = this.state(owner, name).pulls.find((x) => x.number === pullNumber);
    if (!p) throw new Error(`github-sim has no pull request #${pullNumber} in ${owner}/${name}`);
    return p;
  }

  /** Dresses an answer before it is sent; the simulator's own fields are the ones that matter. */
  protected shape(_kind: SimShape, json: unknown): unknown {
    return json;
  }

  /** Answers a request before the simulator does (after the token check); undefined lets it through. */
  protected intercept(_req: SimIncoming): SimReply | undefined {
    return undefined;
  }

  protected findRepo(owner: string, name: string): SimRepo | undefined {
    return this.repos.get(key(owner, name));
  }

  protected state(owner: string, name: string): SimRepo {
    const r = this.findRepo(owner, name);
    if (!r) throw new Error(`github-sim has no repository ${owner}/${name}; call addRepo first`);
    return r;
  }

  protected nextPullNumber(): number {
    return this.nextPull++;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    const url = new URL(req.url ?? '/', 'http://github-sim');
    const method = req.method ?? 'GET';
    let body: unknown;
    let badJson = false;
    try {
      body = text ? (JSON.parse(text) as unknown) : undefined;
    } catch {
      badJson = true;
    }
    const authorization = req.headers.authorization;
    const rec: SimRequest = { at: new Date().toISOString(), method, path: url.pathname, query: Object.fromEntries(url.searchParams), status: 0 };
    if (this.opts.recordDetails) Object.assign(rec, { authorization, body });
    const answer = (status: number, payload: unknown, type = 'application/json; charset=utf-8', headers: Record<string, string> = {}) => {
      rec.status = status;
      this.requests.push(rec);
      this.opts.onRequest?.(rec);
      res.writeHead(status, { 'content-type': type, ...headers });
      res.end(typeof payload === 'string' ? payload : JSON.stringify(payload));
    };

    // The PR page a person opens (html_url): no token needed, like a public repository.
    const page = /^\/([^/]+)\/([^/]+)\/pull\/(\d+)$/.exec(url.pathname);
    if (page && method === 'GET') {
      const repo = this.findRepo(page[1]!, page[2]!);
      const pr = repo?.pulls.find((p) => p.number === Number(page[3]));
      if (!repo || !pr) return answer(404, 'Not Found\n', 'text/plain; charset=utf-8');
      return answer(200, this.describe(repo, pr), 'text/plain; charset=utf-8');
    }

    // Where a job-log redirect points (GitHub: a short-lived signed storage URL, no token needed).
    const stored = /^\/_job-logs\/([^/]+)\/([^/]+)\/(\d+)$/.exec(url.pathname);
    if (stored && method === 'GET') {
      const run = [...(this.findRepo(stored[1]!, stored[2]!)?.checks.values() ?? [])].flat().find((c) => c.id === Number(stored[3]));
      return run?.log !== undefined ? answer(200, run.log, 'text/plain; charset=utf-8') : answer(404, 'Not Found\n', 'text/plain; charset=utf-8');
    }

    if (authorization !== `token ${this.opts.token}` && authorization !== `Bearer ${this.opts.token}`) {
      return answer(401, { message: 'Bad credentials', documentation_url: 'https://docs.github.com/rest' });
    }
    if (this.latencyMs > 0) await new Promise((r) => setTimeout(r, this.latencyMs));
    const over = this.intercept({ method, path: rec.path, query: rec.query, authorization, body });
    if (over) return answer(over.status, over.body, undefined, over.headers);
    const m = /^\/repos\/([^/]+)\/([^/]+)(\/.*)?$/.exec(url.pathname);
    const repo = m ? this.findRepo(m[1]!, m[2]!) : undefined;
    if (!m || !repo) return answer(404, { message: 'Not Found' });
    const rest = m[3] ?? '';
    const owner = repo.owner;
    const pullJson = (p: SimPull) => {
      const headOwner = p.head_owner ?? (p.head.includes(':') ? p.head.split(':')[0]! : owner);
      return this.shape('pull', {
        number: p.number,
        html_url: p.html_url,
        url: `${this.url}/repos/${owner}/${repo.name}/pulls/${p.number}`,
        state: p.state,
        draft: p.draft,
        title: p.title,
        body: p.body,
        created_at: p.created_at,
        closed_at: p.closed_at ?? null,
        merged_at: p.merged ? (p.closed_at ?? p.created_at) : null,
        merged: p.merged ?? false,
        merge_commit_sha: p.merge_commit_sha ?? null,
        maintainer_can_modify: p.maintainer_can_modify ?? false,
        head: {
          ref: p.head_ref,
          sha: p.head_sha,
          label: `${headOwner}:${p.head_ref}`,
          repo: { name: repo.name, full_name: `${headOwner}/${repo.name}`, owner: { login: headOwner }, fork: headOwner.toLowerCase() !== owner.toLowerCase() },
        },
        base: { ref: p.base, repo: { name: repo.name, full_name: `${owner}/${repo.name}`, owner: { login: owner }, fork: false } },
      });
    };
    const sameHead = (p: SimPull, head: string) => p.head === head || `${owner}:${p.head}` === head || p.head === `${owner}:${head}`;
    let mm: RegExpExecArray | null;

    if (rest === '' && method === 'GET') {
      return answer(200, { name: repo.name, full_name: `${owner}/${repo.name}`, owner: { login: owner }, default_branch: repo.default_branch, private: false });
    }
    if (rest === '/pulls' && method === 'GET') {
      const head = rec.query.head;
      const state = rec.query.state ?? 'open';
      return answer(200, repo.pulls.filter((p) => (state === 'all' || p.state === state) && (!head || sameHead(p, head))).map(pullJson));
    }
    if (rest === '/pulls' && method === 'POST') {
      if (badJson) return answer(400, { message: 'Problems parsing JSON' });
      const b = (body ?? {}) as { title?: unknown; head?: unknown; base?: unknown; body?: unknown; draft?: unknown; maintainer_can_modify?: unknown };
      if (typeof b.title !== 'string' || !b.title.trim() || typeof b.head !== 'string' || !b.head || typeof b.base !== 'string' || !b.base) {
        return answer(422, { message: 'Validation Failed', errors: [{ resource: 'PullRequest', code: 'missing_field' }] });
      }
      const head = b.head;
      if (repo.pulls.some((p) => p.state === 'open' && sameHead(p, head))) {
        return answer(422, { message: 'Validation Failed', errors: [{ resource: 'PullRequest', code: 'custom', message: `A pull request already exists for ${head}.` }] });
      }
      const headRef = head.includes(':') ? head.slice(head.indexOf(':') + 1) : head;
      const sha = this.opts.resolveHeadSha?.(owner, repo.name, headRef, head);
      if (!sha) {
        return answer(422, { message: 'Validation Failed', errors: [{ resource: 'PullRequest', field: 'head', code: 'invalid' }] });
      }
      const n = this.nextPullNumber();
      const pull: SimPull = {
        number: n,
        title: b.title,
        body: typeof b.body === 'string' ? b.body : null,
        head,
        head_ref: headRef,
        head_sha: sha,
        base: b.base,
        draft: b.draft === true,
        state: 'open',
        html_url: `${this.opts.htmlBase ?? this.url}/${owner}/${repo.name}/pull/${n}`,
        created_at: new Date().toISOString(),
        maintainer_can_modify: b.maintainer_can_modify === true,
      };
      repo.pulls.push(pull);
      return answer(201, pullJson(pull));
    }
    if ((mm = /^\/pulls\/(\d+)$/.exec(rest)) && method === 'GET') {
      const p = repo.pulls.find((x) => x.number === Number(mm![1]));
      return p ? answer(200, pullJson(p)) : answer(404, { message: 'Not Found' });
    }
    if ((mm = /^\/pulls\/(\d+)\/reviews$/.exec(rest)) && method === 'GET') {
      const list = repo.reviews.get(Number(mm[1])) ?? [];
      return answer(200, this.shape('reviews', list.map((r) => ({ id: r.id, user: { login: r.user }, state: r.state, body: r.body ?? '', submitted_at: r.submitted_at }))));
    }
    if ((mm = /^\/commits\/([^/]+)\/check-runs$/.exec(rest)) && method === 'GET') {
      const sha = decodeURIComponent(mm[1]!);
      const list = repo.checks.get(sha) ?? [];
      const checkJson = (c: SimCheckRun) => ({
        id: c.id,
        name: c.name,
        status: c.status,
        conclusion: c.conclusion,
        head_sha: sha,
        external_id: '',
        app: { slug: c.app ?? 'agentpr-sim' },
        html_url: `${this.url}/${owner}/${repo.name}/runs/${c.id}`,
        details_url: `${this.url}/${owner}/${repo.name}/runs/${c.id}`,
        started_at: c.status === 'queued' ? null : new Date().toISOString(),
        completed_at: c.status === 'completed' ? new Date().toISOString() : null,
        output: { title: c.output?.title ?? null, summary: c.output?.summary ?? null, text: c.output?.text ?? null, annotations_count: c.annotations?.length ?? 0 },
      });
      return answer(200, this.shape('check-runs', { total_count: list.length, check_runs: list.map(checkJson) }));
    }
    if ((mm = /^\/check-runs\/(\d+)\/annotations$/.exec(rest)) && method === 'GET') {
      const run = [...repo.checks.values()].flat().find((c) => c.id === Number(mm![1]));
      if (!run) return answer(404, { message: 'Not Found' });
      return answer(200, this.shape('annotations', (run.annotations ?? []).map((a) => ({ path: a.path, start_line: a.start_line, end_line: a.end_line ?? a.start_line, start_column: null, end_column: null, annotation_level: a.annotation_level, message: a.message, title: a.title ?? null, raw_details: null }))));
    }
    if ((mm = /^\/actions\/jobs\/(\d+)\/logs$/.exec(rest)) && method === 'GET') {
      const run = [...repo.checks.values()].flat().find((c) => c.id === Number(mm![1]));
      if (!run || run.app !== 'github-actions' || run.log === undefined) return answer(404, { message: 'Not Found' });
      return answer(302, '', 'text/plain', { location: `${this.url}/_job-logs/${owner}/${repo.name}/${run.id}` });
    }
    if ((mm = /^\/pulls\/(\d+)\/comments$/.exec(rest)) && method === 'GET') {
      const list = repo.reviewComments.get(Number(mm[1])) ?? [];
      const pr = repo.pulls.find((x) => x.number === Number(mm![1]));
      const prApi = `${this.url}/repos/${owner}/${repo.name}/pulls/${mm[1]}`;
      return answer(
        200,
        this.shape(
          'review-comments',
          list.map((c) => ({
            id: c.id,
            pull_request_review_id: null,
            user: { login: c.user },
            path: c.path,
            line: c.line,
            original_line: c.line,
            side: 'RIGHT',
            diff_hunk: c.diff_hunk,
            body: c.body,
            position: c.position,
            commit_id: pr?.head_sha ?? null,
            in_reply_to_id: null,
            created_at: c.created_at,
            updated_at: c.created_at,
            html_url: `${pr?.html_url ?? prApi}#discussion_r${c.id}`,
            pull_request_url: prApi,
          })),
        ),
      );
    }
    if ((mm = /^\/issues\/(\d+)\/comments$/.exec(rest)) && method === 'GET') {
      const list = repo.issueComments.get(Number(mm[1])) ?? [];
      return answer(200, this.shape('issue-comments', list.map((c) => ({ id: c.id, user: { login: c.user }, author_association: c.author_association, body: c.body, created_at: c.created_at }))));
    }
    if ((mm = /^\/commits\/([^/]+)\/status$/.exec(rest)) && method === 'GET') {
      const sha = decodeURIComponent(mm[1]!);
      const list = repo.statuses.get(sha) ?? [];
      // Like GitHub: the overall state covers every status; the list is paged (per_page at most 100) with a Link header.
      const state = list.some((s) => s.state === 'failure' || s.state === 'error') ? 'failure' : list.length && list.every((s) => s.state === 'success') ? 'success' : 'pending';
      const perPage = Math.min(100, Math.max(1, Number(rec.query.per_page ?? 30) || 30));
      const page = Math.max(1, Number(rec.query.page ?? 1) || 1);
      const pages = Math.max(1, Math.ceil(list.length / perPage));
      const link = (n: number, rel: string) => `<${this.url}/repos/${owner}/${repo.name}/commits/${encodeURIComponent(sha)}/status?per_page=${perPage}&page=${n}>; rel="${rel}"`;
      const links = [...(page < pages ? [link(page + 1, 'next'), link(pages, 'last')] : []), ...(page > 1 ? [link(1, 'first'), link(page - 1, 'prev')] : [])];
      const body = this.shape('combined-status', { state, sha, total_count: list.length, statuses: list.slice((page - 1) * perPage, page * perPage) });
      return answer(200, body, undefined, links.length ? { link: links.join(', ') } : {});
    }
    return answer(404, { message: `Not Found (the demo's GitHub simulator does not serve ${method} ${rest || '/'})` });
  }

  private describe(repo: SimRepo, pr: SimPull): string {
    const checks = repo.checks.get(pr.head_sha) ?? [];
    const reviews = repo.reviews.get(pr.number) ?? [];
    return [
      `${repo.owner}/${repo.name} pull request #${pr.number} (${pr.state}${pr.draft ? ', draft' : ''}) - served by the agentpr demo's local GitHub simulator`,
      `title: ${pr.title}`,
      `${pr.head} -> ${pr.base} at ${pr.head_sha}`,
      `checks: ${checks.length ? checks.map((c) => `${c.name} ${c.conclusion ?? c.status}`).join(', ') : 'none yet'}`,
      `reviews: ${reviews.length ? reviews.map((r) => `${r.user} ${r.state}`).join(', ') : 'none yet'}`,
      '',
      pr.body ?? '',
      '',
    ].join('\n');
  }
}

function key(owner: string, name: string): string {
  return `${owner}/${name}`.toLowerCase();
}
