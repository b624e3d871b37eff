import type { App } from '../app.js';
import { sha1Hex } from '../core/events.js';
import type { ApplyResult, RunView } from '../core/models.js';
import { errorMessage } from '../core/errors.js';
import { describeHolder } from '../store/holder.js';
import { LeaseHeldError, type Lease } from '../store/leases.js';
import { GitHubApiError, RateLimitedError, type CheckRunInfo, type CommitStatusInfo, type GitHubClient, type ReviewInfo } from './client.js';

const GREEN = new Set(['success', 'neutral', 'skipped']);
/** How many times one sync reads GitHub when the run keeps changing under it. */
const SYNC_READS = 3;

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
 * Any failure -> failure; any pending -> nothing; all green -> success. Check runs and
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

export interface PlannedEvent {
  event_type: string;
  payload: Record<string, unknown>;
  idempotency_key: string;
}

export interface PreviewedEvent {
  event_type: string;
  outcome: string;
  from_state: string;
  to_state: string;
  note: string | null;
}

export interface SyncResult {
  run_id: string;
  pr_number: number | null;
  status: 'synced' | 'rate_limited' | 'error' | 'skipped' | 'busy' | 'stale';
  message: string;
  /** With status busy: the step that holds the run's lease, and its holder. */
  busy?: { step: string; attempt_id: number; holder: string; since: string };
  head_sha?: string;
  pr_state?: string;
  checks?: CheckSummary;
  review?: ReviewDecision | null;
  applied: ApplyResult[];
  /** With dry_run: what each event would do; nothing was written. */
  would?: PreviewedEvent[];
  retry_after_s?: number;
}

/** Keys of the PR lifecycle events, shared by the webhook and sync so one change seen both ways is applied once. */
export function prMergedKey(runId: string, prNumber: number, mergeSha: string | null): string {
  return `github.pr.merged:${runId}:pr:${prNumber}:${(mergeSha ?? 'unknown').slice(0, 12)}`;
}
export function prClosedKey(runId: string, prNumber: number, closedAt: string | null): string {
  return `github.pr.closed:${runId}:pr:${prNumber}:${closedAt ?? 'unknown'}`;
}
/** A reopen is keyed on the run's latest event: the next close and reopen are new events. */
export function prReopenedKey(runId: string, prNumber: number, afterEventId: number): string {
  return `github.pr.reopened:${runId}:pr:${prNumber}:after:${afterEventId}`;
}

/** What a merged, closed or reopened PR means for the run (nothing for an open PR of a run not stopped by a close). */
export function lifecycleEvent(app: App, run: RunView, pr: { number: number; state: string; merged: boolean; merge_commit_sha: string | null; closed_at: string | null }, source: string): PlannedEvent | undefined {
  if (pr.merged) {
    const toState = app.policy.github.on_pr_merged === 'wait_human' ? 'NEEDS_HUMAN_REVIEW' : 'DONE';
    return { event_type: 'github.pr.merged', payload: { pr_number: pr.number, merge_sha: pr.merge_commit_sha, to_state: toState, source }, idempotency_key: prMergedKey(run.run_id, pr.number, pr.merge_commit_sha) };
  }
  if (pr.state === 'closed') return { event_type: 'github.pr.closed', payload: { pr_number: pr.number, closed_at: pr.closed_at, source }, idempotency_key: prClosedKey(run.run_id, pr.number, pr.closed_at) };
  if (run.state === 'NEEDS_HUMAN_REVIEW' && run.last_error === 'pr_closed') {
    return { event_type: 'github.pr.reopened', payload: { pr_number: pr.number, source }, idempotency_key: prReopenedKey(run.run_id, pr.number, app.service.lastEventId(run.run_id)) };
  }
  return undefined;
}

/** Counts GitHub's overall combined state too: a failure (or pending) it reports that no listed status shows still counts. */
export function withCombinedState(summary: CheckSummary, combined: { state: string; total_count: number }): CheckSummary {
  const state = combined.state.toLowerCase();
  if ((state === 'failure' || state === 'error') && summary.conclusion !== 'failure' && !summary.failing.length) {
    return { ...summary, failed: summary.failed + 1, conclusion: 'failure', failing: [...summary.failing, `combined-status:${state}`] };
  }
  if (state === 'pending' && combined.total_count > 0 && summary.conclusion === 'success') {
    return { ...summary, pending: summary.pending + 1, conclusion: null, pending_names: [...summary.pending_names, 'combined-status:pending'] };
  }
  return summary;
}

/**
 * Read one PR's state, checks and reviews and apply what they say (nothing when pending). The PR's
 * head is recorded; a merged or closed PR ends the waiting instead; with `dryRun` nothing is written.
 */
export async function syncRun(app: App, client: GitHubClient, run: RunView, opts: { dryRun?: boolean } = {}): Promise<SyncResult> {
  const base = { run_id: run.run_id, pr_number: run.pr_number, applied: [] as ApplyResult[] };
  if (!run.pr_number) return { ...base, status: 'skipped', message: `${run.run_id} has no linked PR (state ${run.state}); link one with approve-open-pr or link-pr` };
  const log = app.logger.child({ run_id: run.run_id, pr: run.pr_number });
  // A sync that writes holds the run's lease from the first GitHub read to the last write, so two
  // syncs of one run, or a sync and a running step, never apply observations side by side.
  let attemptId: number | undefined;
  if (!opts.dryRun) {
    try {
      attemptId = app.service.startAttempt(run.run_id, 'github_sync', { pr_number: run.pr_number }).attempt_id;
    } catch (err) {
      if (err instanceof LeaseHeldError) return busyResult(base, err.lease);
      throw err;
    }
    // What the run is now, under the lease (the caller's view may be older).
    run = app.service.getRun(run.run_id);
  }
  const started = Date.now();
  const close = (status: 'succeeded' | 'failed', reason: string | null, extra: { stderr_log?: string; metadata?: Record<string, unknown> } = {}) => {
    if (attemptId === undefined) return;
    app.service.finishAttempt(attemptId, { status, reason_code: reason, duration_ms: Date.now() - started, ...extra });
    attemptId = undefined;
  };
  // A sync that recorded no new event leaves no attempt behind (last_observed_at says it ran).
  const discard = () => {
    if (attemptId === undefined) return;
    app.service.discardAttempt(attemptId);
    attemptId = undefined;
  };
  const prNumber = run.pr_number;
  if (!prNumber) {
    discard();
    return { ...base, status: 'skipped', message: `${run.run_id} has no linked PR any more (state ${run.state}); nothing synced` };
  }
  try {
    for (let round = 1; ; round++) {
      const seen = app.service.lastEventId(run.run_id);
      const pr = await client.getPull(run.owner, run.repo, prNumber);
      const planned: PlannedEvent[] = [];
      const lifecycle = lifecycleEvent(app, run, pr, 'sync');
      let checks: CheckSummary | undefined;
      let review: ReviewDecision | null = null;
      if (lifecycle && lifecycle.event_type !== 'github.pr.reopened') {
        planned.push(lifecycle);
      } else {
        if (lifecycle) planned.push(lifecycle);
        const [checkRuns, combined, reviews] = await Promise.all([
          client.listCheckRuns(run.owner, run.repo, pr.head_sha),
          client.combinedStatus(run.owner, run.repo, pr.head_sha),
          client.listReviews(run.owner, run.repo, prNumber),
        ]);
        checks = withCombinedState(summarizeChecks(checkRuns, combined.statuses), combined);
        review = reviewDecision(reviews);
        if (checks.conclusion !== null) {
          planned.push({
            event_type: 'github.check.completed',
            payload: { conclusion: checks.conclusion, pr_number: prNumber, head_sha: pr.head_sha, source: 'sync', failing: checks.failing },
            idempotency_key: syncCheckEventKey(run.run_id, pr.head_sha, checkRuns, combined.statuses),
          });
        }
        if (review) {
          planned.push({
            event_type: 'github.review.submitted',
            payload: { state: review.state, pr_number: prNumber, review_id: review.review_id, user: review.user, source: 'sync' },
            idempotency_key: reviewEventKey(run.run_id, review.review_id, review.state),
          });
        }
      }
      const prState = pr.merged ? 'merged' : pr.state;
      if (opts.dryRun) {
        const would = planned.map((e) => ({ event_type: e.event_type, ...app.service.previewEvent({ run_id: run.run_id, ...e }) }));
        const moves = would.filter((w) => w.outcome === 'applied').map((w) => `${w.event_type}: ${w.from_state} -> ${w.to_state}`);
        return {
          ...base,
          status: 'synced',
          message: `dry run, nothing written: PR #${prNumber} ${prState} @ ${pr.head_sha.slice(0, 7)}${checks ? `: ${checkText(checks)}` : ''}; ${moves.length ? `would apply ${moves.join(', ')}` : `would leave the run in ${run.state}`}`,
          head_sha: pr.head_sha,
          pr_state: prState,
          ...(checks ? { checks } : {}),
          review,
          would,
        };
      }
      // One transaction: the PR's head, the events, and the time GitHub was last heard from.
      const applied = app.service.transaction(() => {
        // Another writer (a webhook delivery, a person's command) changed the run while GitHub was
        // read: what was read may be older than what it applied, so nothing is written from it.
        if (app.service.lastEventId(run.run_id) !== seen) return null;
        app.service.github.recordHead(run.run_id, pr.head_sha, 'sync', pr.head_owner, pr.head_repo);
        const out = planned.map((e) => app.service.applyEvent({ run_id: run.run_id, ...e }));
        app.service.github.touchObserved(run.run_id, { pr_state: prState, merge_sha: pr.merged ? pr.merge_commit_sha : null });
        if (out.some((a) => !a.duplicate)) close('succeeded', null, { metadata: { head_sha: pr.head_sha, pr_state: prState, applied: out.filter((a) => !a.duplicate && a.outcome === 'applied').length } });
        else discard();
        return out;
      });
      if (applied === null) {
        const now = app.service.getRun(run.run_id);
        const last = app.service.listEvents(run.run_id, { newestFirst: true, limit: 1 })[0];
        const what = `the run changed while GitHub was read (${last ? `${last.event_type}, now ${now.state}` : now.state})`;
        if (round < SYNC_READS && now.pr_number === prNumber) {
          log.debug({ round }, `${what}; reading GitHub again`);
          run = now;
          continue;
        }
        close('failed', 'run_changed', { stderr_log: what });
        return { ...base, status: 'stale', message: `not synced: ${what} ${round} time(s); nothing was written from the older read, sync again` };
      }
      const after = app.service.getRun(run.run_id);
      const changed = applied.filter((a) => !a.duplicate && a.outcome === 'applied').length;
      const message = `PR #${prNumber}${prState === 'open' ? '' : ` ${prState}`} @ ${pr.head_sha.slice(0, 7)}: ${checks ? checkText(checks) : 'checks not read'}; review ${review?.state ?? 'none'}; ${
        changed ? `${run.state} -> ${after.state}` : `state stays ${after.state}`
      }${applied.some((a) => a.duplicate) ? ' (already synced)' : ''}`;
      return { ...base, status: 'synced', message, head_sha: pr.head_sha, pr_state: prState, ...(checks ? { checks } : {}), review, applied };
    }
  } catch (err) {
    if (err instanceof RateLimitedError) {
      log.warn({ retry_after_s: err.retryAfterSec }, 'GitHub sync rate limited');
      close('failed', 'github_rate_limited', { stderr_log: errorMessage(err) });
      return { ...base, status: 'rate_limited', message: `rate limited, retry after ${err.retryAfterSec} s; run unchanged`, retry_after_s: err.retryAfterSec };
    }
    if (!(err instanceof GitHubApiError)) {
      // Never leave the attempt (and the run's lease) behind.
      close('failed', 'sync_error', { stderr_log: errorMessage(err) });
      throw err;
    }
    log.warn({ status: err.status, err: err.message }, 'GitHub sync failed');
    close('failed', `github_http_${err.status}`, { stderr_log: errorMessage(err) });
    return { ...base, status: 'error', message: err.message };
  }
}

/** A run whose lease another step holds is not synced now: reported, not failed; a later sync picks it up. */
function busyResult(base: Pick<SyncResult, 'run_id' | 'pr_number' | 'applied'>, lease: Lease): SyncResult {
  const holder = describeHolder(lease.holder);
  return {
    ...base,
    status: 'busy',
    message: `not synced: its ${lease.step} step (attempt ${lease.attempt_id}) holds the run, by ${holder} since ${lease.acquired_at}; nothing was read or written, sync again once that step is done`,
    busy: { step: lease.step, attempt_id: lease.attempt_id, holder, since: lease.acquired_at },
  };
}

function checkText(checks: CheckSummary): string {
  return checks.conclusion === null
    ? checks.total === 0
      ? 'no checks reported yet'
      : `${checks.pending} of ${checks.total} checks pending`
    : checks.conclusion === 'success'
      ? `all ${checks.total} checks green`
      : `checks failed (${checks.failing.join(', ')})`;
}
