import { z } from 'zod';
import type { App } from '../app.js';
import type { RunView } from '../core/models.js';
import { isTerminal } from '../core/states.js';
import type { Registry, ToolContext } from '../registry.js';
import { sameSha } from '../store/github-store.js';
import { githubSettings } from './client.js';
import { lifecycleEvent, reviewEventKey } from './sync.js';

/**
 * What a GitHub delivery means for our runs. Every change is a call of an ordinary tool
 * (record-check, record-review, record-pr-state); a sync the delivery asks for is queued.
 */

const Repo = z.object({ name: z.string(), owner: z.object({ login: z.string() }) });
const PrRefs = z.array(z.object({ number: z.number().int().positive() })).default([]);

const PAYLOADS = {
  pull_request: z.object({
    action: z.string(),
    number: z.number().int().positive(),
    repository: Repo,
    pull_request: z.object({
      state: z.string(),
      merged: z.boolean().nullable().optional(),
      merge_commit_sha: z.string().nullable().optional(),
      closed_at: z.string().nullable().optional(),
    }),
  }),
  pull_request_review: z.object({
    action: z.string(),
    repository: Repo,
    pull_request: z.object({ number: z.number().int().positive() }),
    review: z.object({ id: z.number().int(), state: z.string().min(1).max(64) }),
  }),
  pull_request_review_comment: z.object({
    action: z.string(),
    repository: Repo,
    pull_request: z.object({ number: z.number().int().positive() }),
  }),
  check_run: z.object({
    action: z.string(),
    repository: Repo,
    check_run: z.object({ id: z.number().int(), name: z.string().default(''), status: z.string(), conclusion: z.string().max(64).nullable().optional(), head_sha: z.string().default(''), pull_requests: PrRefs }),
  }),
  check_suite: z.object({
    action: z.string(),
    repository: Repo,
    check_suite: z.object({ id: z.number().int(), status: z.string().nullable().optional(), conclusion: z.string().max(64).nullable().optional(), head_sha: z.string().default(''), pull_requests: PrRefs }),
  }),
  status: z.object({
    id: z.number().int(),
    sha: z.string(),
    state: z.string(),
    context: z.string().default(''),
    repository: Repo,
  }),
  issue_comment: z.object({
    action: z.string(),
    repository: Repo,
    issue: z.object({ number: z.number().int().positive(), pull_request: z.unknown().optional() }),
  }),
} as const;

export const HANDLED_EVENTS = Object.keys(PAYLOADS) as Array<keyof typeof PAYLOADS>;

const GREEN = new Set(['success', 'neutral', 'skipped']);

export interface PlannedCall {
  run_id: string;
  tool: 'record-check' | 'record-review' | 'record-pr-state';
  args: Record<string, unknown>;
}

export interface DeliveryPlan {
  calls: PlannedCall[];
  /** Syncs to queue: worked after the answer by the receiver's follow-up worker. */
  followups: Array<{ run_id: string; reason: string }>;
  /** Why nothing was done for a run, or for the whole delivery. */
  ignored: Array<{ run_id?: string; reason: string }>;
  pong?: boolean;
}

const nothing = (reason: string): DeliveryPlan => ({ calls: [], followups: [], ignored: [{ reason }] });

/**
 * What planning needs of a delivery, read from its payload without the database: the fields its
 * event's schema keeps (zod drops the rest), or the plan already decided (ping, an event not
 * handled, a payload lacking fields), and the sender. Small, so the receiver can drop the parsed
 * body at once instead of holding a 20 KB object graph until its ledger write.
 */
export interface DeliveryRead {
  event: string;
  data?: unknown;
  decided?: DeliveryPlan;
  sender?: string;
}

export function readDelivery(event: string, payload: unknown): DeliveryRead {
  const login = (payload as { sender?: { login?: unknown } } | null)?.sender?.login;
  const sender = typeof login === 'string' ? login : undefined;
  if (event === 'ping') return { event, sender, decided: { calls: [], followups: [], ignored: [], pong: true } };
  if (!Object.hasOwn(PAYLOADS, event)) return { event, sender, decided: nothing(`event '${event}' is not handled (handled: ${HANDLED_EVENTS.join(', ')})`) };
  const parsed = PAYLOADS[event as keyof typeof PAYLOADS].safeParse(payload);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return { event, sender, decided: nothing(`${event} payload lacks ${issue ? issue.path.join('.') || 'fields' : 'fields'} we need; nothing applied`) };
  }
  return { event, sender, data: parsed.data };
}

/**
 * What a delivery means, read-only, from a delivery already read (readDelivery) and the runs as the
 * database has them now. Checks and statuses are matched by head SHA: through the PR
 * numbers GitHub lists (empty for a fork's PR) and through every head each run has had, in the
 * upstream repository or in the fork. A result for a head that is no longer current is still
 * recorded, as ignored with that reason; a green result asks for a sync (one green check is not
 * the whole picture), which is queued and worked after the answer.
 */
export function planRead(app: App, read: DeliveryRead, env: NodeJS.ProcessEnv = app.env): DeliveryPlan {
  if (read.decided) return read.decided;
  const { event, data } = read;
  const plan: DeliveryPlan = { calls: [], followups: [], ignored: [] };
  const svc = app.service;
  const byPr = (repo: z.infer<typeof Repo>, numbers: number[]): RunView[] => {
    const seen = new Map<string, RunView>();
    for (const n of new Set(numbers)) for (const r of svc.findRunsByPr(repo.owner.login, repo.name, n)) seen.set(r.run_id, r);
    return [...seen.values()];
  };
  const byHead = (repo: z.infer<typeof Repo>, numbers: number[], sha: string): RunView[] => {
    const seen = new Map(byPr(repo, numbers).map((r) => [r.run_id, r]));
    if (sha) for (const r of svc.findRunsByHead(repo.owner.login, repo.name, sha)) seen.set(r.run_id, r);
    return [...seen.values()];
  };
  const untracked = (repo: z.infer<typeof Repo>, what: string): DeliveryPlan => nothing(`${what} in ${repo.owner.login}/${repo.name} is not linked to any run`);
  /** Runs that can still be acted on: not terminal, and their PR not merged or closed. */
  const live = (runs: RunView[]): RunView[] =>
    runs.filter((r) => {
      if (isTerminal(r.state)) {
        plan.ignored.push({ run_id: r.run_id, reason: `run is ${r.state}` });
        return false;
      }
      const prState = svc.github.github(r.run_id)?.pr_state;
      if (prState === 'merged' || prState === 'closed') {
        plan.ignored.push({ run_id: r.run_id, reason: `PR #${r.pr_number} is ${prState}; nothing to act on` });
        return false;
      }
      return true;
    });
  const canSync = Boolean(githubSettings(env).token);
  const sync = (r: RunView, reason: string, what: string) => {
    if (canSync) plan.followups.push({ run_id: r.run_id, reason });
    else plan.ignored.push({ run_id: r.run_id, reason: `${what}, but without GITHUB_TOKEN the webhook cannot read the whole picture; run sync-github` });
  };
  /** A check or status result: for the current head it counts, for an older one it is recorded as ignored. */
  const result = (runs: RunView[], sha: string, conclusion: string, what: string, key: (runId: string) => string) => {
    for (const r of live(runs)) {
      const head = svc.github.currentHead(r.run_id);
      const current = !head || !sha || sameSha(head.head_sha, sha);
      if (current && GREEN.has(conclusion)) {
        sync(r, `${what} is ${conclusion}`, `${what} is green`);
        continue;
      }
      plan.calls.push({
        run_id: r.run_id,
        tool: 'record-check',
        args: { run_id: r.run_id, conclusion, ...(r.pr_number ? { pr_number: r.pr_number } : {}), ...(sha ? { head_sha: sha } : {}), idempotency_key: key(r.run_id) },
      });
    }
  };

  switch (event) {
    case 'pull_request': {
      const p = data as z.infer<typeof PAYLOADS.pull_request>;
      const runs = byPr(p.repository, [p.number]);
      if (!runs.length) return untracked(p.repository, `PR #${p.number}`);
      const pr = p.pull_request;
      for (const r of runs) {
        if (isTerminal(r.state)) {
          plan.ignored.push({ run_id: r.run_id, reason: `run is ${r.state}` });
          continue;
        }
        if (p.action === 'closed' || p.action === 'reopened') {
          const info = { number: p.number, state: p.action === 'closed' ? 'closed' : 'open', merged: pr.merged === true, merge_commit_sha: pr.merge_commit_sha ?? null, closed_at: pr.closed_at ?? null };
          const ev = lifecycleEvent(app, r, info, 'webhook');
          if (!ev) {
            plan.ignored.push({ run_id: r.run_id, reason: `pull_request.reopened: the run is ${r.state}, not stopped by a closed PR` });
            continue;
          }
          const state = ev.event_type === 'github.pr.merged' ? 'merged' : ev.event_type === 'github.pr.closed' ? 'closed' : 'reopened';
          plan.calls.push({ run_id: r.run_id, tool: 'record-pr-state', args: { run_id: r.run_id, state, ...(info.merge_commit_sha && state === 'merged' ? { merge_sha: info.merge_commit_sha } : {}), ...(info.closed_at && state === 'closed' ? { closed_at: info.closed_at } : {}), idempotency_key: ev.idempotency_key } });
        } else if (p.action === 'opened' || p.action === 'synchronize' || p.action === 'edited' || p.action === 'ready_for_review') {
          // A new head (or a PR now in view): the sync records it and reads its checks.
          if (p.action === 'edited' || p.action === 'ready_for_review') plan.ignored.push({ run_id: r.run_id, reason: `pull_request.${p.action} changes no run state` });
          else sync(r, `pull_request.${p.action}`, `pull_request.${p.action} may bring a new head`);
        } else {
          plan.ignored.push({ run_id: r.run_id, reason: `pull_request.${p.action} changes no run state` });
        }
      }
      return plan;
    }
    case 'pull_request_review': {
      const p = data as z.infer<typeof PAYLOADS.pull_request_review>;
      const runs = byPr(p.repository, [p.pull_request.number]);
      if (!runs.length) return untracked(p.repository, `PR #${p.pull_request.number}`);
      if (p.action !== 'submitted') {
        for (const r of runs) plan.ignored.push({ run_id: r.run_id, reason: `pull_request_review.${p.action} changes nothing` });
        return plan;
      }
      const state = p.review.state.toLowerCase();
      for (const r of live(runs)) {
        plan.calls.push({
          run_id: r.run_id,
          tool: 'record-review',
          args: { run_id: r.run_id, state, idempotency_key: reviewEventKey(r.run_id, p.review.id, state) },
        });
      }
      return plan;
    }
    case 'pull_request_review_comment': {
      const p = data as z.infer<typeof PAYLOADS.pull_request_review_comment>;
      const runs = byPr(p.repository, [p.pull_request.number]);
      if (!runs.length) return untracked(p.repository, `PR #${p.pull_request.number}`);
      for (const r of runs) plan.ignored.push({ run_id: r.run_id, reason: `pull_request_review_comment.${p.action} changes no run state (the review it belongs to does)` });
      return plan;
    }
    case 'check_run':
    case 'check_suite': {
      const p = data as z.infer<typeof PAYLOADS.check_run> & z.infer<typeof PAYLOADS.check_suite>;
      const unit = event === 'check_run' ? p.check_run : p.check_suite;
      const numbers = unit.pull_requests.map((pr) => pr.number);
      const runs = byHead(p.repository, numbers, unit.head_sha);
      if (!runs.length) return untracked(p.repository, numbers.length ? `PR #${numbers.join(', #')}` : `commit ${unit.head_sha.slice(0, 7) || '(none)'}`);
      const conclusion = unit.conclusion?.toLowerCase();
      if (p.action !== 'completed' || !conclusion) {
        for (const r of runs) plan.ignored.push({ run_id: r.run_id, reason: `${event}.${p.action} is not a completed result` });
        return plan;
      }
      result(runs, unit.head_sha, conclusion, `${event} ${unit.id}`, (runId) => `github.check.completed:${runId}:${event}:${unit.id}:${unit.head_sha.slice(0, 12)}:${conclusion}`);
      return plan;
    }
    case 'status': {
      const p = data as z.infer<typeof PAYLOADS.status>;
      const runs = svc.findRunsByHead(p.repository.owner.login, p.repository.name, p.sha);
      if (!runs.length) return untracked(p.repository, `commit ${p.sha.slice(0, 7)}`);
      const state = p.state.toLowerCase();
      if (state === 'pending') {
        for (const r of runs) plan.ignored.push({ run_id: r.run_id, reason: `status ${p.context} is pending` });
        return plan;
      }
      const conclusion = state === 'success' ? 'success' : 'failure';
      result(runs, p.sha, conclusion, `status ${p.context}`, (runId) => `github.check.completed:${runId}:status:${p.id}:${p.sha.slice(0, 12)}:${state}`);
      return plan;
    }
    case 'issue_comment': {
      const p = data as z.infer<typeof PAYLOADS.issue_comment>;
      if (p.issue.pull_request === undefined) return nothing(`issue #${p.issue.number} is not a pull request`);
      const runs = byPr(p.repository, [p.issue.number]);
      if (!runs.length) return untracked(p.repository, `PR #${p.issue.number}`);
      for (const r of runs) plan.ignored.push({ run_id: r.run_id, reason: `issue_comment.${p.action} changes no run state` });
      return plan;
    }
  }
  return plan;
}

export interface CallReport {
  run_id: string;
  tool: string;
  ok: boolean;
  text: string;
}

export interface DeliveryReport {
  outcome: 'processed' | 'ignored' | 'pong';
  processed: number;
  ignored: number;
  calls: CallReport[];
  /** Syncs queued for the follow-up worker (the delivery's answer does not wait for them). */
  queued: Array<{ run_id: string; followup_id: number; reason: string }>;
  notes: string[];
  /** A problem worth the audit's error field although the delivery was answered 200 (a rate-limited sync, say). */
  warning: string | null;
}

/** A failure GitHub should retry: the reservation is released and the answer is 500. */
export class DeliveryProcessingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DeliveryProcessingError';
  }
}

const RETRYABLE_CODES = new Set(['internal', 'configuration', 'unknown_tool']);

export async function processDelivery(
  app: App,
  registry: Registry,
  plan: DeliveryPlan,
  ctx: Omit<ToolContext, 'app' | 'entry'> & { deliveryId?: string } = {},
): Promise<DeliveryReport> {
  if (plan.pong) return { outcome: 'pong', processed: 0, ignored: 0, calls: [], queued: [], notes: ['pong'], warning: null };
  const calls: CallReport[] = [];
  const notes = plan.ignored.map((i) => (i.run_id ? `${i.run_id}: ${i.reason}` : i.reason));
  let processed = 0;
  let ignored = plan.ignored.length;
  const warnings: string[] = [];
  for (const call of plan.calls) {
    // Recording a GitHub observation needs no worker prerequisites, so the startup doctor is skipped.
    const { deliveryId: _delivery, ...toolCtx } = ctx;
    const out = await registry.call(call.tool, call.args, { ...toolCtx, app, entry: 'webhook', skipDoctor: true }, { maxTier: 'write' });
    if (!out.ok) {
      if (RETRYABLE_CODES.has(out.code)) throw new DeliveryProcessingError(`${call.tool} for ${call.run_id} failed (${out.code}): ${out.error}`);
      ignored++;
      calls.push({ run_id: call.run_id, tool: call.tool, ok: false, text: out.error });
      warnings.push(`${call.tool} ${call.run_id}: ${out.error}`);
      continue;
    }
    processed++;
    calls.push({ run_id: call.run_id, tool: call.tool, ok: true, text: out.text });
  }
  // Durable before the answer: a crash after 200 still leaves the sync to do in the database.
  const queued = plan.followups.length
    ? app.service.transaction(() =>
        plan.followups.map((f) => ({ run_id: f.run_id, reason: f.reason, followup_id: app.service.github.enqueueSync(f.run_id, f.reason, ctx.deliveryId ?? null).followup_id })),
      )
    : [];
  for (const q of queued) notes.push(`${q.run_id}: sync queued (${q.reason}); worked after this answer`);
  const outcome = processed > 0 || queued.length > 0 ? 'processed' : 'ignored';
  return { outcome, processed: processed + queued.length, ignored, calls, queued, notes, warning: warnings.length ? warnings.join('; ') : null };
}
