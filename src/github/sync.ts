import type { App } from '../app.js';
import { sha1Hex } from '../core/events.js';
import type { ApplyResult, RunView } from '../core/models.js';
import { errorMessage } from '../core/errors.js';
import { GitHubApiError, RateLimitedError, type CheckRunInfo, type CommitStatusInfo, type GitHubClient, type ReviewInfo } from './client.js';

const GREEN = new Set(['success', 'neutral', 'skipped']);

export interface CheckSummary {
  total: number;
  green: number;
  pending: number;
  failed: number;
  /** failure (or the first failing conclusion) / success / null while anything is pending or nothing reported. */
  conclusion: string | null;
  failing: string[];
  pending_names: string[];
}

/**
 * SPEC §9: any failure -> failure; any pending -> nothing; all green -> success. Check runs and
 * commit statuses count alike (a repo may use either). Nothing reported yet counts as pending.
 */
export function summarizeChecks(checkRuns: CheckRunInfo[], statuses: CommitStatusInfo[]): CheckSummary {
  const failing: Array<{ name: string; conclusion: string }> = [];
  const pending: string[] = [];
  let green = 0;
  for (const c of checkRuns) {
    if (c.status !== 'completed' || c.conclusion === null) pending.push(c.name);
    else if (GREEN.has(c.conclusion.toLowerCase())) green++;
    else failing.push({ name: c.name, conclusion: c.conclusion.toLowerCase() });
  }
  for (const s of statuses) {
    const st = s.state.toLowerCase();
    if (st === 'pending') pending.push(s.context);
    else if (st === 'success') green++;
    else failing.push({ name: s.context, conclusion: st === 'error' ? 'failure' : st });
  }
  const total = checkRuns.length + statuses.length;
  const conclusion = failing.length
    ? (failing.find((f) => f.conclusion === 'failure') ?? failing[0]!).conclusion
    : pending.length || total === 0
      ? null
      : 'success';
  return { total, green, pending: pending.length, failed: failing.length, conclusion, failing: failing.map((f) => `${f.name}:${f.conclusion}`), pending_names: pending };
}

export interface ReviewDecision {
  state: 'approved' | 'changes_requested';
  review_id: number;
  user: string | null;
}

/**
 * The PR's review decision as GitHub computes it: each reviewer's latest approving, requesting or
 * dismissed review counts (comments do not); any changes_requested wins over approvals.
 */
export function reviewDecision(reviews: ReviewInfo[]): ReviewDecision | null {
  const latest = new Map<string, ReviewInfo>();
  for (const r of reviews) {
    const st = r.state.toUpperCase();
    if (st !== 'APPROVED' && st !== 'CHANGES_REQUESTED' && st !== 'DISMISSED') continue;
    latest.set(r.user ?? `#${r.id}`, r);
  }
  const decided = [...latest.values()].filter((r) => r.state.toUpperCase() !== 'DISMISSED');
  const changes = decided.filter((r) => r.state.toUpperCase() === 'CHANGES_REQUESTED').at(-1);
  if (changes) return { state: 'changes_requested', review_id: changes.id, user: changes.user };
  const approved = decided.at(-1);
  return approved ? { state: 'approved', review_id: approved.id, user: approved.user } : null;
}

/** Key shared by the webhook and sync, so one review seen both ways is applied once. */
export function reviewEventKey(runId: string, reviewId: number, state: string): string {
  return `github.review.submitted:${runId}:review:${reviewId}:${state.toLowerCase()}`;
}

/** The checks' key is derived from the head SHA and every check/status id with its result. */
export function syncCheckEventKey(runId: string, headSha: string, checkRuns: CheckRunInfo[], statuses: CommitStatusInfo[]): string {
  const ids = [
    ...checkRuns.map((c) => `c${c.id}:${c.conclusion ?? c.status}`),
    ...statuses.map((s) => `s${s.id}:${s.state}`),
  ].sort();
  return `github.check.completed:${runId}:sync:${headSha.slice(0, 12)}:${sha1Hex(ids.join(',')).slice(0, 12)}`;
}

export interface SyncResult {
  run_id: string;
  pr_number: number | null;
  status: 'synced' | 'rate_limited' | 'error' | 'skipped';
  message: string;
  head_sha?: string;
  pr_state?: string;
  checks?: CheckSummary;
  review?: ReviewDecision | null;
  applied: ApplyResult[];
  retry_after_s?: number;
}

/** Read one PR's checks and reviews and apply what they say (nothing when pending). */
export async function syncRun(app: App, client: GitHubClient, run: RunView): Promise<SyncResult> {
  const base = { run_id: run.run_id, pr_number: run.pr_number, applied: [] as ApplyResult[] };
  if (!run.pr_number) return { ...base, status: 'skipped', message: `${run.run_id} has no linked PR (state ${run.state}); link one with approve-open-pr or link-pr` };
  const prNumber = run.pr_number;
  const log = app.logger.child({ run_id: run.run_id, pr: prNumber });
  try {
    const pr = await client.getPull(run.owner, run.repo, prNumber);
    const [checkRuns, statuses, reviews] = await Promise.all([
      client.listCheckRuns(run.owner, run.repo, pr.head_sha),
      client.listStatuses(run.owner, run.repo, pr.head_sha),
      client.listReviews(run.owner, run.repo, prNumber),
    ]);
    const checks = summarizeChecks(checkRuns, statuses);
    const review = reviewDecision(reviews);
    const applied: ApplyResult[] = [];
    if (checks.conclusion !== null) {
      applied.push(
        app.service.applyEvent({
          run_id: run.run_id,
          event_type: 'github.check.completed',
          payload: { conclusion: checks.conclusion, pr_number: prNumber, head_sha: pr.head_sha, source: 'sync', failing: checks.failing },
          idempotency_key: syncCheckEventKey(run.run_id, pr.head_sha, checkRuns, statuses),
        }),
      );
    }
    if (review) {
      applied.push(
        app.service.applyEvent({
          run_id: run.run_id,
          event_type: 'github.review.submitted',
          payload: { state: review.state, pr_number: prNumber, review_id: review.review_id, user: review.user, source: 'sync' },
          idempotency_key: reviewEventKey(run.run_id, review.review_id, review.state),
        }),
      );
    }
    const after = app.service.getRun(run.run_id);
    const checkText =
      checks.conclusion === null
        ? checks.total === 0
          ? 'no checks reported yet'
          : `${checks.pending} of ${checks.total} checks pending`
        : checks.conclusion === 'success'
          ? `all ${checks.total} checks green`
          : `checks failed (${checks.failing.join(', ')})`;
    const changed = applied.filter((a) => !a.duplicate && a.outcome === 'applied').length;
    const message = `PR #${prNumber} @ ${pr.head_sha.slice(0, 7)}: ${checkText}; review ${review?.state ?? 'none'}; ${
      changed ? `${run.state} -> ${after.state}` : `state stays ${after.state}`
    }${applied.some((a) => a.duplicate) ? ' (already synced)' : ''}`;
    return { ...base, status: 'synced', message, head_sha: pr.head_sha, pr_state: pr.state, checks, review, applied };
  } catch (err) {
    if (err instanceof RateLimitedError) {
      log.warn({ retry_after_s: err.retryAfterSec }, 'GitHub sync rate limited');
      return { ...base, status: 'rate_limited', message: `rate limited, retry after ${err.retryAfterSec} s; run unchanged`, retry_after_s: err.retryAfterSec };
    }
    if (!(err instanceof GitHubApiError)) throw err;
    log.warn({ status: err.status, err: err.message }, 'GitHub sync failed');
    // A record of the failure, opened and closed at once: it needs no lease.
    const attempt = app.service.startAttempt(run.run_id, 'github_sync', { pr_number: prNumber }, { lease: false });
    app.service.finishAttempt(attempt.attempt_id, { status: 'failed', reason_code: `github_http_${err.status}`, stderr_log: errorMessage(err), duration_ms: 0 });
    return { ...base, status: 'error', message: err.message };
  }
}
