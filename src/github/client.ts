import type { Octokit, RequestError } from 'octokit';
import { scrubSecrets } from '../logger.js';

type OctokitModule = typeof import('octokit');
let octokitModule: Promise<OctokitModule> | undefined;
/** octokit is loaded on first use, not at server start-up (it costs a tenth of a second). */
const loadOctokit = (): Promise<OctokitModule> => (octokitModule ??= import('octokit'));
import type { Logger } from '../logger.js';
import { ConfigurationError } from '../core/errors.js';

/** Where and how to reach GitHub, from the environment (GitHub Enterprise: GITHUB_API_URL). */
export interface GitHubSettings {
  token?: string;
  /** Which variable the token came from, for error messages (never the value). */
  tokenSource?: string;
  apiUrl: string;
  /** Retries of 5xx / network failures (octokit's retry plugin); rate limits are handled separately. */
  retries: number;
  /** A rate-limit answer asking to wait at most this long is waited out once; longer ones are reported. */
  maxRateLimitWaitSec: number;
}

export const DEFAULT_GITHUB_API_URL = 'https://api.github.com';

export function githubSettings(env: NodeJS.ProcessEnv = process.env): GitHubSettings {
  const tokenSource = ['AGENTPR_GITHUB_TOKEN', 'GITHUB_TOKEN', 'GH_TOKEN'].find((k) => env[k]?.trim());
  const apiUrl = (env.GITHUB_API_URL?.trim() || DEFAULT_GITHUB_API_URL).replace(/\/+$/, '');
  if (!/^https?:\/\//.test(apiUrl)) {
    throw new ConfigurationError(`GITHUB_API_URL '${apiUrl}' is not an http(s) URL; use e.g. https://github.example.com/api/v3 or unset it for api.github.com`);
  }
  return {
    token: tokenSource ? env[tokenSource]!.trim() : undefined,
    tokenSource,
    apiUrl,
    retries: intFrom(env.AGENTPR_GITHUB_RETRIES, 2, 'AGENTPR_GITHUB_RETRIES'),
    maxRateLimitWaitSec: intFrom(env.AGENTPR_GITHUB_MAX_RATE_WAIT_SEC, 5, 'AGENTPR_GITHUB_MAX_RATE_WAIT_SEC'),
  };
}

function intFrom(value: string | undefined, fallback: number, name: string): number {
  if (value === undefined || value.trim() === '') return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new ConfigurationError(`${name} must be a whole number >= 0, got '${value}'`);
  return n;
}

/** GitHub answered with a rate limit; nothing was changed. */
export class RateLimitedError extends Error {
  readonly retryAfterSec: number;
  readonly status: number;
  constructor(status: number, retryAfterSec: number, what: string) {
    super(`GitHub rate limited ${what} (HTTP ${status}); retry after ${retryAfterSec} s`);
    this.name = 'RateLimitedError';
    this.status = status;
    this.retryAfterSec = retryAfterSec;
  }
}

/** GitHub refused a request (4xx/5xx other than a rate limit), or could not be reached (status 0). */
export class GitHubApiError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.name = 'GitHubApiError';
    this.status = status;
  }
}

type Headers = Record<string, string | number | undefined>;

/** Seconds to wait when `err` is a rate-limit answer (403/429 with the usual headers), else undefined. */
export function rateLimitRetryAfter(status: number, headers: Headers, message: string, nowMs = Date.now()): number | undefined {
  if (status !== 403 && status !== 429) return undefined;
  const retryAfter = Number(headers['retry-after']);
  if (Number.isFinite(retryAfter) && retryAfter >= 0 && headers['retry-after'] !== undefined) return Math.ceil(retryAfter);
  if (String(headers['x-ratelimit-remaining']) === '0') {
    const reset = Number(headers['x-ratelimit-reset']);
    if (Number.isFinite(reset) && reset > 0) return Math.max(0, Math.ceil(reset - nowMs / 1000) + 1);
    return 60;
  }
  if (status === 429 || /rate limit/i.test(message)) return 60;
  return undefined;
}

export interface PullRequestInfo {
  number: number;
  html_url: string;
  state: string;
  head_sha: string;
  head_ref: string;
  draft: boolean;
  merged: boolean;
  merge_commit_sha: string | null;
  closed_at: string | null;
  /** The repository the head branch lives in (a fork's owner/name); null when GitHub no longer has it. */
  head_owner: string | null;
  head_repo: string | null;
}

/** The combined status of a commit: every context's latest status (all pages) and GitHub's overall state. */
export interface CombinedStatusInfo {
  state: string;
  total_count: number;
  statuses: CommitStatusInfo[];
}

export interface CheckRunInfo {
  id: number;
  name: string;
  status: string;
  conclusion: string | null;
}

export interface CommitStatusInfo {
  id: number;
  context: string;
  state: string;
}

export interface ReviewInfo {
  id: number;
  user: string | null;
  state: string;
  submitted_at: string | null;
  body?: string | null;
}

/** A check run with what it reported (the iteration packet's material). */
export interface CheckRunDetail extends CheckRunInfo {
  app: string | null;
  details_url: string | null;
  output: { title: string | null; summary: string | null; text: string | null; annotations_count: number };
}

export interface AnnotationInfo {
  path: string;
  start_line: number | null;
  end_line: number | null;
  level: string | null;
  title: string | null;
  message: string;
}

export interface ReviewCommentInfo {
  id: number;
  user: string | null;
  path: string;
  line: number | null;
  diff_hunk: string;
  body: string;
  /** null when GitHub marks the comment outdated (its line is gone from the diff). */
  position: number | null;
  in_reply_to_id: number | null;
  created_at: string;
}

export interface IssueCommentInfo {
  id: number;
  user: string | null;
  author_association: string;
  body: string;
  created_at: string;
}

export interface CreatePullInput {
  owner: string;
  repo: string;
  title: string;
  head: string;
  base: string;
  body?: string;
  draft?: boolean;
  maintainer_can_modify?: boolean;
}

/**
 * The GitHub REST calls agentpr makes, through octokit. Errors come out as RateLimitedError or
 * GitHubApiError with a message a person can act on.
 */
export class GitHubClient {
  readonly octokit: InstanceType<typeof Octokit>;
  readonly settings: GitHubSettings;
  private readonly logger: Logger;

  private readonly mod: OctokitModule;

  constructor(settings: GitHubSettings, logger: Logger, mod: OctokitModule) {
    this.mod = mod;
    requireToken(settings);
    this.settings = settings;
    this.logger = logger.child({ component: 'github' });
    const log = this.logger;
    this.octokit = new mod.Octokit({
      auth: settings.token,
      baseUrl: settings.apiUrl,
      userAgent: 'agentpr-mcp',
      // Rate limits are answered by us (wait briefly once, else report "retry after N s") rather than
      // by the throttling plugin, which would sleep until the quota resets (up to an hour) in a tool call.
      throttle: { enabled: false },
      retry: { retries: settings.retries, doNotRetry: [400, 401, 403, 404, 410, 422, 429, 451] },
      log: {
        debug: (msg: string) => log.debug(msg),
        info: (msg: string) => log.debug(msg),
        warn: (msg: string) => log.warn(msg),
        error: (msg: string) => log.error(msg),
      },
    });
  }

  /** Runs one API call; a short rate-limit wait is taken once, anything else becomes a typed error. */
  private async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        if (!(err instanceof this.mod.RequestError)) throw err;
        const headers = (err.response?.headers ?? {}) as Headers;
        const wait = rateLimitRetryAfter(err.status, headers, err.message);
        if (wait !== undefined) {
          if (attempt === 0 && wait <= this.settings.maxRateLimitWaitSec) {
            this.logger.warn({ what, wait_s: wait }, 'GitHub rate limit; waiting once');
            await new Promise((r) => setTimeout(r, wait * 1000));
            continue;
          }
          throw new RateLimitedError(err.status, wait, what);
        }
        throw new GitHubApiError(err.status, describeRequestError(err, what, this.settings));
      }
    }
  }

  async defaultBranch(owner: string, repo: string): Promise<string> {
    const res = await this.call(`GET /repos/${owner}/${repo}`, () => this.octokit.rest.repos.get({ owner, repo }));
    return res.data.default_branch;
  }

  /** The open PR whose head is `headLabel` (`owner:branch`), if any. */
  async findOpenPull(owner: string, repo: string, headLabel: string): Promise<PullRequestInfo | undefined> {
    const res = await this.call(`GET /repos/${owner}/${repo}/pulls?head=${headLabel}`, () =>
      this.octokit.rest.pulls.list({ owner, repo, head: headLabel, state: 'open', per_page: 10 }),
    );
    const pr = res.data[0];
    return pr ? toPullInfo(pr) : undefined;
  }

  async createPull(input: CreatePullInput): Promise<PullRequestInfo> {
    const { owner, repo, ...rest } = input;
    const res = await this.call(`POST /repos/${owner}/${repo}/pulls`, () => this.octokit.rest.pulls.create({ owner, repo, ...rest }));
    return toPullInfo(res.data);
  }

  async getPull(owner: string, repo: string, pullNumber: number): Promise<PullRequestInfo> {
    const res = await this.call(`GET /repos/${owner}/${repo}/pulls/${pullNumber}`, () =>
      this.octokit.rest.pulls.get({ owner, repo, pull_number: pullNumber }),
    );
    return toPullInfo(res.data);
  }

  async listCheckRuns(owner: string, repo: string, ref: string): Promise<CheckRunInfo[]> {
    const runs = await this.call(`GET /repos/${owner}/${repo}/commits/${ref}/check-runs`, () =>
      this.octokit.paginate(this.octokit.rest.checks.listForRef, { owner, repo, ref, per_page: 100, filter: 'latest' }),
    );
    return runs.map((r) => ({ id: r.id, name: r.name, status: r.status, conclusion: r.conclusion ?? null }));
  }

  /**
   * Every page of the combined status (octokit's paginate does not know this response's shape: it
   * holds one list among many fields), with GitHub's overall state.
   */
  async combinedStatus(owner: string, repo: string, ref: string): Promise<CombinedStatusInfo> {
    const statuses: CommitStatusInfo[] = [];
    let state = 'pending';
    let total = 0;
    for (let page = 1; page <= 100; page++) {
      const res = await this.call(`GET /repos/${owner}/${repo}/commits/${ref}/status?page=${page}`, () =>
        this.octokit.rest.repos.getCombinedStatusForRef({ owner, repo, ref, per_page: 100, page }),
      );
      if (page === 1) {
        state = res.data.state;
        total = res.data.total_count;
      }
      statuses.push(...res.data.statuses.map((s) => ({ id: s.id, context: s.context, state: s.state })));
      const more = /rel="next"/.test(String(res.headers.link ?? ''));
      if (!more || res.data.statuses.length === 0 || statuses.length >= total) break;
    }
    return { state, total_count: total, statuses };
  }

  async listStatuses(owner: string, repo: string, ref: string): Promise<CommitStatusInfo[]> {
    return (await this.combinedStatus(owner, repo, ref)).statuses;
  }

  async listReviews(owner: string, repo: string, pullNumber: number): Promise<ReviewInfo[]> {
    const reviews = await this.call(`GET /repos/${owner}/${repo}/pulls/${pullNumber}/reviews`, () =>
      this.octokit.paginate(this.octokit.rest.pulls.listReviews, { owner, repo, pull_number: pullNumber, per_page: 100 }),
    );
    return reviews.map((r) => ({ id: r.id, user: r.user?.login ?? null, state: r.state, submitted_at: r.submitted_at ?? null, body: r.body ?? null }));
  }

  async listCheckRunDetails(owner: string, repo: string, ref: string): Promise<CheckRunDetail[]> {
    const runs = await this.call(`GET /repos/${owner}/${repo}/commits/${ref}/check-runs`, () =>
      this.octokit.paginate(this.octokit.rest.checks.listForRef, { owner, repo, ref, per_page: 100, filter: 'latest' }),
    );
    return runs.map((r) => ({
      id: r.id,
      name: r.name,
      status: r.status,
      conclusion: r.conclusion ?? null,
      app: r.app?.slug ?? null,
      details_url: r.details_url ?? null,
      output: { title: r.output?.title ?? null, summary: r.output?.summary ?? null, text: r.output?.text ?? null, annotations_count: r.output?.annotations_count ?? 0 },
    }));
  }

  async listAnnotations(owner: string, repo: string, checkRunId: number): Promise<AnnotationInfo[]> {
    const list = await this.call(`GET /repos/${owner}/${repo}/check-runs/${checkRunId}/annotations`, () =>
      this.octokit.paginate(this.octokit.rest.checks.listAnnotations, { owner, repo, check_run_id: checkRunId, per_page: 100 }),
    );
    return list.map((a) => ({ path: a.path, start_line: a.start_line ?? null, end_line: a.end_line ?? null, level: a.annotation_level ?? null, title: a.title ?? null, message: a.message ?? '' }));
  }

  /** A GitHub Actions job's log (GitHub answers with a redirect to the log's storage; fetch follows it). */
  async jobLog(owner: string, repo: string, jobId: number): Promise<string> {
    const res = await this.call(`GET /repos/${owner}/${repo}/actions/jobs/${jobId}/logs`, () =>
      this.octokit.rest.actions.downloadJobLogsForWorkflowRun({ owner, repo, job_id: jobId }),
    );
    const data: unknown = res.data;
    return typeof data === 'string' ? data : data instanceof ArrayBuffer ? Buffer.from(data).toString('utf8') : String(data ?? '');
  }

  async listReviewComments(owner: string, repo: string, pullNumber: number): Promise<ReviewCommentInfo[]> {
    const list = await this.call(`GET /repos/${owner}/${repo}/pulls/${pullNumber}/comments`, () =>
      this.octokit.paginate(this.octokit.rest.pulls.listReviewComments, { owner, repo, pull_number: pullNumber, per_page: 100 }),
    );
    return list.map((c) => ({
      id: c.id,
      user: c.user?.login ?? null,
      path: c.path,
      line: c.line ?? c.original_line ?? null,
      diff_hunk: c.diff_hunk,
      body: c.body,
      position: c.position ?? null,
      in_reply_to_id: c.in_reply_to_id ?? null,
      created_at: c.created_at,
    }));
  }

  async listIssueComments(owner: string, repo: string, issueNumber: number): Promise<IssueCommentInfo[]> {
    const list = await this.call(`GET /repos/${owner}/${repo}/issues/${issueNumber}/comments`, () =>
      this.octokit.paginate(this.octokit.rest.issues.listComments, { owner, repo, issue_number: issueNumber, per_page: 100 }),
    );
    return list.map((c) => ({ id: c.id, user: c.user?.login ?? null, author_association: c.author_association, body: c.body ?? '', created_at: c.created_at }));
  }
}

interface RawPull {
  number: number;
  html_url: string;
  state: string;
  draft?: boolean;
  merged?: boolean;
  merged_at?: string | null;
  merge_commit_sha?: string | null;
  closed_at?: string | null;
  head: { sha: string; ref: string; repo?: { name: string; owner: { login: string } } | null };
}

function toPullInfo(pr: RawPull): PullRequestInfo {
  return {
    number: pr.number,
    html_url: pr.html_url,
    state: pr.state,
    head_sha: pr.head.sha,
    head_ref: pr.head.ref,
    draft: pr.draft ?? false,
    // pulls.list answers carry no `merged`; merged_at says the same.
    merged: pr.merged ?? Boolean(pr.merged_at),
    merge_commit_sha: pr.merge_commit_sha ?? null,
    closed_at: pr.closed_at ?? null,
    head_owner: pr.head.repo?.owner.login ?? null,
    head_repo: pr.head.repo?.name ?? null,
  };
}

function describeRequestError(err: RequestError, what: string, settings: GitHubSettings): string {
  const data = err.response?.data as { message?: unknown; errors?: unknown } | undefined;
  const detail = [typeof data?.message === 'string' ? data.message : err.message, errorsText(data?.errors)].filter(Boolean).join(': ');
  const hint =
    err.status === 401
      ? `; the token in ${settings.tokenSource ?? 'the environment'} was refused: check it is valid and not expired`
      : err.status === 403
        ? `; the token in ${settings.tokenSource ?? 'the environment'} lacks permission for this (needs pull requests: write, checks/statuses: read)`
        : err.status === 404
          ? '; check the owner/repo and that the token can see the repository'
          : err.status >= 500 || err.status === 0
            ? `; GitHub (${settings.apiUrl}) failed or could not be reached, try again later`
            : '';
  return scrubSecrets(`GitHub ${what} failed with HTTP ${err.status}: ${detail}${hint}`);
}

function errorsText(errors: unknown): string {
  if (!Array.isArray(errors)) return '';
  return errors
    .map((e) => (e && typeof e === 'object' && 'message' in e ? String((e as { message: unknown }).message) : JSON.stringify(e)))
    .join('; ');
}

function requireToken(settings: GitHubSettings): void {
  if (!settings.token) {
    throw new ConfigurationError(
      'no GitHub token: set AGENTPR_GITHUB_TOKEN or GITHUB_TOKEN to a token that can read pull requests and checks (and create pull requests for approve-open-pr)',
    );
  }
}

/** A client for the current environment (tools call this per call, so env changes are seen). */
export async function githubClient(logger: Logger, env: NodeJS.ProcessEnv = process.env): Promise<GitHubClient> {
  const settings = githubSettings(env);
  requireToken(settings);
  return new GitHubClient(settings, logger, await loadOctokit());
}
