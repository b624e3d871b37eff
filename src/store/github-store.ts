import type { Statement } from 'better-sqlite3';
import type { DB } from './db.js';
import { nowIso } from '../core/ids.js';
import { parseJsonObject } from '../core/json.js';

/**
 * What agentpr knows about each run's pull request on GitHub: the heads it had, the PR's state,
 * when GitHub last said anything, observations kept for later, and the follow-up queue of the
 * webhook receiver. Plain statements; the Service calls them inside its transactions.
 */

export interface RunHead {
  run_id: string;
  head_sha: string;
  /** The repository the head commit lives in (a fork's owner/name); null when not known yet. */
  head_owner: string | null;
  head_repo: string | null;
  source: string;
  recorded_at: string;
}

export interface RunGitHubView {
  run_id: string;
  last_observed_at: string;
  pr_state: string | null;
  merge_sha: string | null;
}

export interface PendingObservation {
  pending_id: number;
  run_id: string;
  event_type: string;
  idempotency_key: string;
  payload: Record<string, unknown>;
  head_sha: string | null;
  arrived_state: string;
  received_at: string;
  resolved_at: string | null;
  resolution: string | null;
}

export type FollowupStatus = 'queued' | 'running' | 'done' | 'failed';

export interface Followup {
  followup_id: number;
  run_id: string;
  kind: 'sync';
  reason: string;
  delivery_id: string | null;
  status: FollowupStatus;
  attempts: number;
  next_at: string;
  claimed_by: string | null;
  claimed_at: string | null;
  last_error: string | null;
  created_at: string;
  updated_at: string;
}

/** Two SHAs name the same commit when equal, or when one is an abbreviation (7+ hex) of the other. */
export function sameSha(a: string, b: string): boolean {
  const x = a.toLowerCase();
  const y = b.toLowerCase();
  if (x === y) return true;
  const [short, long] = x.length < y.length ? [x, y] : [y, x];
  return short.length >= 7 && long.startsWith(short);
}

export class GitHubStore {
  private readonly db: DB;
  private readonly st: Record<string, Statement>;

  constructor(db: DB) {
    this.db = db;
    this.st = {
      currentHead: db.prepare(`SELECT * FROM run_heads WHERE run_id = ? ORDER BY head_id DESC LIMIT 1`),
      heads: db.prepare(`SELECT * FROM run_heads WHERE run_id = ? ORDER BY head_id`),
      insertHead: db.prepare(`INSERT INTO run_heads (run_id, head_sha, head_owner, head_repo, source, recorded_at) VALUES (?, ?, ?, ?, ?, ?)`),
      runsWithHead: db.prepare(`SELECT DISTINCT h.run_id FROM run_heads h JOIN runs r ON r.run_id = h.run_id
        WHERE h.head_sha = ? AND ((lower(r.owner) = lower(?) AND lower(r.repo) = lower(?)) OR (lower(h.head_owner) = lower(?) AND lower(h.head_repo) = lower(?)))`),
      touch: db.prepare(`INSERT INTO run_github (run_id, last_observed_at, pr_state, merge_sha) VALUES (@run_id, @now, @pr_state, @merge_sha)
        ON CONFLICT (run_id) DO UPDATE SET last_observed_at = @now, pr_state = COALESCE(@pr_state, pr_state), merge_sha = COALESCE(@merge_sha, merge_sha)`),
      getGithub: db.prepare(`SELECT * FROM run_github WHERE run_id = ?`),
      insertPending: db.prepare(`INSERT OR IGNORE INTO pending_observations (run_id, event_type, idempotency_key, payload_json, head_sha, arrived_state, received_at)
        VALUES (?, ?, ?, ?, ?, ?, ?)`),
      openPending: db.prepare(`SELECT * FROM pending_observations WHERE run_id = ? AND resolved_at IS NULL ORDER BY pending_id`),
      allPending: db.prepare(`SELECT * FROM pending_observations WHERE run_id = ? ORDER BY pending_id`),
      resolvePending: db.prepare(`UPDATE pending_observations SET resolved_at = ?, resolution = ? WHERE pending_id = ?`),
      enqueue: db.prepare(`INSERT OR IGNORE INTO github_followups (run_id, kind, reason, delivery_id, status, attempts, next_at, created_at, updated_at)
        VALUES (?, 'sync', ?, ?, 'queued', 0, ?, ?, ?)`),
      queuedFor: db.prepare(`SELECT * FROM github_followups WHERE run_id = ? AND kind = 'sync' AND status = 'queued'`),
      due: db.prepare(`SELECT * FROM github_followups WHERE (status = 'queued' AND next_at <= ?) OR (status = 'running' AND claimed_at < ?) ORDER BY next_at, followup_id LIMIT 1`),
      claim: db.prepare(`UPDATE github_followups SET status = 'running', claimed_by = ?, claimed_at = ?, attempts = attempts + 1, updated_at = ? WHERE followup_id = ?`),
      finish: db.prepare(`UPDATE github_followups SET status = ?, next_at = ?, last_error = ?, claimed_by = NULL, claimed_at = NULL, updated_at = ? WHERE followup_id = ?`),
      getFollowup: db.prepare(`SELECT * FROM github_followups WHERE followup_id = ?`),
      uncount: db.prepare(`UPDATE github_followups SET attempts = MAX(0, attempts - 1) WHERE followup_id = ? AND status = 'queued'`),
    };
  }

  currentHead(runId: string): RunHead | undefined {
    return this.st.currentHead.get(runId) as RunHead | undefined;
  }

  heads(runId: string): RunHead[] {
    return this.st.heads.all(runId) as RunHead[];
  }

  /**
   * Records a head when it differs from the current one (or names its repository for the first
   * time). A head without a repository stays in the one the PR's branch lives in (a fork stays the fork).
   */
  recordHead(runId: string, sha: string, source: string, headOwner?: string | null, headRepo?: string | null): boolean {
    const cur = this.currentHead(runId);
    const owner = headOwner ?? cur?.head_owner ?? null;
    const repo = headRepo ?? cur?.head_repo ?? null;
    if (cur && cur.head_sha === sha && (cur.head_owner ?? '') === (owner ?? '') && (cur.head_repo ?? '') === (repo ?? '')) return false;
    this.st.insertHead.run(runId, sha, owner, repo, source, nowIso());
    return true;
  }

  /** Runs that had `sha` as a head, in `owner/repo` (the upstream) or in the fork the head lives in. */
  runsWithHead(owner: string, repo: string, sha: string): string[] {
    return (this.st.runsWithHead.all(sha, owner, repo, owner, repo) as Array<{ run_id: string }>).map((r) => r.run_id);
  }

  touchObserved(runId: string, pr?: { pr_state?: string | null; merge_sha?: string | null }): void {
    this.st.touch.run({ run_id: runId, now: nowIso(), pr_state: pr?.pr_state ?? null, merge_sha: pr?.merge_sha ?? null });
  }

  github(runId: string): RunGitHubView | undefined {
    return this.st.getGithub.get(runId) as RunGitHubView | undefined;
  }

  addPending(runId: string, eventType: string, key: string, payload: Record<string, unknown>, state: string): void {
    const head = typeof payload.head_sha === 'string' ? payload.head_sha : null;
    this.st.insertPending.run(runId, eventType, key, JSON.stringify(payload), head, state, nowIso());
  }

  openPending(runId: string): PendingObservation[] {
    return (this.st.openPending.all(runId) as Array<PendingRow>).map(toPending);
  }

  pending(runId: string): PendingObservation[] {
    return (this.st.allPending.all(runId) as Array<PendingRow>).map(toPending);
  }

  resolvePending(pendingId: number, resolution: string): void {
    this.st.resolvePending.run(nowIso(), resolution, pendingId);
  }

  /** Queues a sync of the run unless one is already queued (then that one stands); returns the queued row. */
  enqueueSync(runId: string, reason: string, deliveryId: string | null, at = new Date()): Followup {
    const now = nowIso();
    this.st.enqueue.run(runId, reason, deliveryId, at.toISOString(), now, now);
    return this.st.queuedFor.get(runId) as Followup;
  }

  /** Takes the next due follow-up (or one whose worker has been silent for `staleMs`), marking it running. */
  claimDue(claimer: string, staleMs: number, now = new Date()): Followup | undefined {
    const row = this.st.due.get(now.toISOString(), new Date(now.getTime() - staleMs).toISOString()) as Followup | undefined;
    if (!row) return undefined;
    const at = now.toISOString();
    this.st.claim.run(claimer, at, at, row.followup_id);
    return this.followup(row.followup_id);
  }

  /** Ends a claimed follow-up; a retry whose run got a newer queued sync meanwhile is left to that one. */
  finishFollowup(id: number, status: 'queued' | 'done' | 'failed', nextAt: Date, error: string | null): void {
    const row = this.followup(id);
    const newer = status === 'queued' && row ? (this.st.queuedFor.get(row.run_id) as Followup | undefined) : undefined;
    if (newer) {
      this.st.finish.run('done', nextAt.toISOString(), `${error ?? ''}; superseded by follow-up ${newer.followup_id}`, nowIso(), id);
      return;
    }
    this.st.finish.run(status, nextAt.toISOString(), error, nowIso(), id);
  }

  /** Puts a claimed follow-up back for later without counting the try (its run was busy with a step). */
  deferFollowup(id: number, nextAt: Date, note: string): void {
    this.finishFollowup(id, 'queued', nextAt, note);
    this.st.uncount.run(id);
  }

  followup(id: number): Followup | undefined {
    return this.st.getFollowup.get(id) as Followup | undefined;
  }

  followups(filter: { run_id?: string; status?: FollowupStatus } = {}): Followup[] {
    const where: string[] = [];
    const params: unknown[] = [];
    if (filter.run_id) {
      where.push('run_id = ?');
      params.push(filter.run_id);
    }
    if (filter.status) {
      where.push('status = ?');
      params.push(filter.status);
    }
    const sql = `SELECT * FROM github_followups${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY followup_id`;
    return this.db.prepare(sql).all(...params) as Followup[];
  }
}

interface PendingRow extends Omit<PendingObservation, 'payload'> {
  payload_json: string;
}

function toPending(row: PendingRow): PendingObservation {
  const { payload_json, ...rest } = row;
  return { ...rest, payload: parseJsonObject(payload_json) };
}
