import { z } from 'zod';
import type { App } from '../app.js';
import type { RunView } from '../core/models.js';
import { isTerminal } from '../core/states.js';
import type { Registry, ToolContext } from '../registry.js';
import { githubSettings } from './client.js';
import { reviewEventKey } from './sync.js';

/**
 * What a GitHub delivery means for our runs. Runs are found by owner/repo + PR number (SPEC §9);
 * a commit status names no PR, so it is matched by the approved head SHA or the pushed branch.
 * Every change is a call of an ordinary tool (record-check, record-review, sync-github).
 */

const Repo = z.object({ name: z.string(), owner: z.object({ login: z.string() }) });
const PrRefs = z.array(z.object({ number: z.number().int().positive() })).default([]);

const PAYLOADS = {
  pull_request: z.object({ action: z.string(), number: z.number().int().positive(), repository: Repo }),
  pull_request_review: z.object({
    action: z.string(),
    repository: Repo,
    pull_request: z.object({ number: z.number().int().positive() }),
    review: z.object({ id: z.number().int(), state: z.string().min(1).max(64) }),
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
    branches: z.array(z.object({ name: z.string() })).default([]),
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
  tool: 'record-check' | 'record-review' | 'sync-github';
  args: Record<string, unknown>;
}

export interface DeliveryPlan {
  calls: PlannedCall[];
  /** Why nothing was done for a run, or for the whole delivery. */
  ignored: Array<{ run_id?: string; reason: string }>;
  pong?: boolean;
}

export function planDelivery(app: App, event: string, payload: unknown, env: NodeJS.ProcessEnv = app.env): DeliveryPlan {
  if (event === 'ping') return { calls: [], ignored: [], pong: true };
  if (!(event in PAYLOADS)) return { calls: [], ignored: [{ reason: `event '${event}' is not handled (handled: ${HANDLED_EVENTS.join(', ')})` }] };
  const parsed = PAYLOADS[event as keyof typeof PAYLOADS].safeParse(payload);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return { calls: [], ignored: [{ reason: `${event} payload lacks ${issue ? issue.path.join('.') || 'fields' : 'fields'} we need; nothing applied` }] };
  }
  const plan: DeliveryPlan = { calls: [], ignored: [] };
  const svc = app.service;
  const byPr = (repo: z.infer<typeof Repo>, numbers: number[]): RunView[] => {
    const seen = new Map<string, RunView>();
    for (const n of new Set(numbers)) for (const r of svc.findRunsByPr(repo.owner.login, repo.name, n)) seen.set(r.run_id, r);
    return [...seen.values()];
  };
  const untracked = (repo: z.infer<typeof Repo>, what: string): DeliveryPlan => ({
    calls: [],
    ignored: [{ reason: `${what} in ${repo.owner.login}/${repo.name} is not linked to any run` }],
  });
  const live = (runs: RunView[]): RunView[] => {
    for (const r of runs) if (isTerminal(r.state)) plan.ignored.push({ run_id: r.run_id, reason: `run is ${r.state}` });
    return runs.filter((r) => !isTerminal(r.state));
  };
  // A green check is one of possibly many; only the PR's full picture (sync-github) may say "all green".
  const green = (runs: RunView[], what: string) => {
    const canSync = Boolean(githubSettings(env).token);
    for (const r of runs) {
      if (canSync) plan.calls.push({ run_id: r.run_id, tool: 'sync-github', args: { run_id: r.run_id } });
      else plan.ignored.push({ run_id: r.run_id, reason: `${what} is green, but without GITHUB_TOKEN the webhook cannot confirm every check passed; run sync-github` });
    }
  };
  const failed = (runs: RunView[], conclusion: string, key: (runId: string) => string) => {
    for (const r of runs) {
      plan.calls.push({
        run_id: r.run_id,
        tool: 'record-check',
        args: { run_id: r.run_id, conclusion, ...(r.pr_number ? { pr_number: r.pr_number } : {}), idempotency_key: key(r.run_id) },
      });
    }
  };

  switch (event) {
    case 'pull_request': {
      const p = parsed.data as z.infer<typeof PAYLOADS.pull_request>;
      const runs = byPr(p.repository, [p.number]);
      if (!runs.length) return untracked(p.repository, `PR #${p.number}`);
      for (const r of runs) plan.ignored.push({ run_id: r.run_id, reason: `pull_request.${p.action} changes no run state (completion is explicit: mark-done)` });
      return plan;
    }
    case 'pull_request_review': {
      const p = parsed.data as z.infer<typeof PAYLOADS.pull_request_review>;
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
    case 'check_run':
    case 'check_suite': {
      const p = parsed.data as z.infer<typeof PAYLOADS.check_run> & z.infer<typeof PAYLOADS.check_suite>;
      const unit = event === 'check_run' ? p.check_run : p.check_suite;
      const numbers = unit.pull_requests.map((pr) => pr.number);
      if (!numbers.length) return { calls: [], ignored: [{ reason: `${event} ${unit.id} names no pull request` }] };
      const runs = byPr(p.repository, numbers);
      if (!runs.length) return untracked(p.repository, `PR #${numbers.join(', #')}`);
      const conclusion = unit.conclusion?.toLowerCase();
      if (p.action !== 'completed' || !conclusion) {
        for (const r of runs) plan.ignored.push({ run_id: r.run_id, reason: `${event}.${p.action} is not a completed result` });
        return plan;
      }
      const alive = live(runs);
      if (GREEN.has(conclusion)) green(alive, `${event} ${unit.id}`);
      else failed(alive, conclusion, (runId) => `github.check.completed:${runId}:${event}:${unit.id}:${unit.head_sha.slice(0, 12)}:${conclusion}`);
      return plan;
    }
    case 'status': {
      const p = parsed.data as z.infer<typeof PAYLOADS.status>;
      const runs = svc.findRunsForCommit(p.repository.owner.login, p.repository.name, p.sha, p.branches.map((b) => b.name));
      if (!runs.length) return untracked(p.repository, `commit ${p.sha.slice(0, 7)}`);
      const state = p.state.toLowerCase();
      if (state === 'pending') {
        for (const r of runs) plan.ignored.push({ run_id: r.run_id, reason: `status ${p.context} is pending` });
        return plan;
      }
      const alive = live(runs);
      if (state === 'success') green(alive, `status ${p.context}`);
      else failed(alive, 'failure', (runId) => `github.check.completed:${runId}:status:${p.id}:${state}`);
      return plan;
    }
    case 'issue_comment': {
      const p = parsed.data as z.infer<typeof PAYLOADS.issue_comment>;
      if (p.issue.pull_request === undefined) return { calls: [], ignored: [{ reason: `issue #${p.issue.number} is not a pull request` }] };
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
  event: string,
  payload: unknown,
  ctx: Omit<ToolContext, 'app' | 'entry'> = {},
  plan: DeliveryPlan = planDelivery(app, event, payload),
): Promise<DeliveryReport> {
  if (plan.pong) return { outcome: 'pong', processed: 0, ignored: 0, calls: [], notes: ['pong'], warning: null };
  const calls: CallReport[] = [];
  const notes = plan.ignored.map((i) => (i.run_id ? `${i.run_id}: ${i.reason}` : i.reason));
  let processed = 0;
  let ignored = plan.ignored.length;
  const warnings: string[] = [];
  for (const call of plan.calls) {
    // Recording a GitHub observation needs no worker prerequisites, so the startup doctor is skipped.
    const out = await registry.call(call.tool, call.args, { ...ctx, app, entry: 'webhook', skipDoctor: true }, { maxTier: 'write' });
    if (!out.ok) {
      if (RETRYABLE_CODES.has(out.code)) throw new DeliveryProcessingError(`${call.tool} for ${call.run_id} failed (${out.code}): ${out.error}`);
      ignored++;
      calls.push({ run_id: call.run_id, tool: call.tool, ok: false, text: out.error });
      warnings.push(`${call.tool} ${call.run_id}: ${out.error}`);
      continue;
    }
    processed++;
    calls.push({ run_id: call.run_id, tool: call.tool, ok: true, text: out.text });
    if (call.tool === 'sync-github') {
      const results = (out.data.results ?? []) as Array<{ status?: string; message?: string }>;
      for (const r of results) if (r.status === 'rate_limited' || r.status === 'error') warnings.push(`sync-github ${call.run_id}: ${r.message ?? r.status}`);
    }
  }
  return { outcome: processed > 0 ? 'processed' : 'ignored', processed, ignored, calls, notes, warning: warnings.length ? warnings.join('; ') : null };
}
