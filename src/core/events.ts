import { createHash } from 'node:crypto';
import { z } from 'zod';
import { RunStateSchema, TransitionError, TRANSITIONS, canTransition, isTerminal, type RunState } from './states.js';
import { UserInputError } from './errors.js';
import { describeIssues } from './validation-message.js';

const str = (max = 2000) => z.string().min(1).max(max);

/** Conclusions GitHub reports for a completed check run or suite (lower case). */
export const CHECK_CONCLUSIONS = ['success', 'neutral', 'skipped', 'failure', 'cancelled', 'timed_out', 'action_required', 'stale', 'startup_failure'] as const;
export const CheckConclusionSchema = z.enum(CHECK_CONCLUSIONS);
/** States of a submitted pull request review (lower case, as GitHub's webhook sends them). */
export const REVIEW_STATES = ['approved', 'changes_requested', 'commented', 'dismissed'] as const;
export const ReviewStateSchema = z.enum(REVIEW_STATES);

/** Payload schema of each event type. Unknown keys are kept (stored verbatim) but the named ones are checked. */
export const EVENT_PAYLOADS = {
  'command.run.create': z.looseObject({}),
  'command.start.discovery': z.looseObject({}),
  'worker.discovery.completed': z.looseObject({ contract_path: str(4096) }),
  'command.start.implementation': z.looseObject({}),
  'command.local.validation.passed': z.looseObject({}),
  'worker.push.completed': z.looseObject({ branch: str(255) }),
  'command.pr.linked': z.looseObject({ pr_number: z.number().int().positive() }),
  'worker.step.failed': z.looseObject({
    step: str(64),
    reason_code: str(128),
    error_message: z.string().max(8000),
    // Where the failure lands; default (PUSHED -> NEEDS_HUMAN_REVIEW, else FAILED_RETRYABLE).
    // The worker uses it to apply the policy's on_human_review_state / on_retryable_state.
    to_state: z.enum(['FAILED_RETRYABLE', 'NEEDS_HUMAN_REVIEW', 'FAILED_TERMINAL']).optional(),
  }),
  'github.check.completed': z.looseObject({
    conclusion: CheckConclusionSchema,
    pr_number: z.number().int().positive().optional(),
  }),
  'github.review.submitted': z.looseObject({ state: ReviewStateSchema }),
  'github.pr.merged': z.looseObject({
    merge_sha: z.string().max(64).nullable().optional(),
    // Where a merge lands, from policy github.on_pr_merged (done -> DONE, wait_human -> NEEDS_HUMAN_REVIEW).
    to_state: z.enum(['DONE', 'NEEDS_HUMAN_REVIEW']).default('DONE'),
  }),
  'github.pr.closed': z.looseObject({}),
  'github.pr.reopened': z.looseObject({}),
  'command.mark.done': z.looseObject({}),
  'command.pause': z.looseObject({}),
  'command.resume': z.looseObject({ target_state: RunStateSchema }),
  'command.retry': z.looseObject({ target_state: RunStateSchema }),
  'timer.timeout': z.looseObject({ step: str(64) }),
} as const;

export type EventType = keyof typeof EVENT_PAYLOADS;
export const EVENT_TYPES = Object.keys(EVENT_PAYLOADS) as EventType[];
export const EventTypeSchema = z.enum(EVENT_TYPES as [EventType, ...EventType[]]);

export type Payload = Record<string, unknown>;

/** Sorted keys, no spaces: the canonical JSON the default idempotency key hashes. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map((v) => canonicalJson(v === undefined ? null : v)).join(',')}]`;
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj)
    .filter((k) => obj[k] !== undefined)
    .sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`).join(',')}}`;
}

export function sha1Hex(text: string): string {
  return createHash('sha1').update(text).digest('hex');
}

/** `<event_type>:<run_id>:<first 12 hex of sha1(canonical JSON of payload)>`. */
export function defaultIdempotencyKey(eventType: string, runId: string, payload: Payload): string {
  return `${eventType}:${runId}:${sha1Hex(canonicalJson(payload)).slice(0, 12)}`;
}

export type ArtifactType =
  | 'contract'
  | 'branch'
  | 'task_packet'
  | 'agent_last_message'
  | 'agent_event_stream'
  | 'agent_runtime_report'
  | 'run_digest'
  | 'manager_insight'
  | 'preflight_report'
  | 'pr_open_request'
  | 'pr_url'
  | 'iteration_packet';

export const ARTIFACT_TYPES: readonly ArtifactType[] = [
  'contract',
  'branch',
  'task_packet',
  'agent_last_message',
  'agent_event_stream',
  'agent_runtime_report',
  'run_digest',
  'manager_insight',
  'preflight_report',
  'pr_open_request',
  'pr_url',
  'iteration_packet',
];

/** What applying an event does to a run. */
export interface EventEffect {
  /** applied: state may change; noop: same state, recorded; ignored: a GitHub observation that does not fit, recorded. */
  outcome: 'applied' | 'noop' | 'ignored';
  /** With outcome ignored: the observation is kept and applied once the run reaches a state it fits. */
  pending?: boolean;
  to: RunState;
  /** undefined: leave last_error alone; null: clear it; string: set it. */
  lastError?: string | null;
  prNumber?: number;
  artifact?: { type: ArtifactType; uri: string; metadata?: Record<string, unknown> };
  note?: string;
}

export function validatePayload(eventType: string, payload: unknown): { type: EventType; payload: Payload } {
  if (!(eventType in EVENT_PAYLOADS)) {
    throw new UserInputError(
      `unknown event type '${eventType}'; allowed: ${EVENT_TYPES.join(', ')}`,
    );
  }
  const type = eventType as EventType;
  const parsed = EVENT_PAYLOADS[type].safeParse(payload ?? {});
  if (!parsed.success) {
    const issues = describeIssues(parsed.error, payload ?? {});
    throw new UserInputError(`invalid payload for ${type}: ${issues}`);
  }
  return { type, payload: parsed.data as Payload };
}

function onlyFrom(type: EventType, from: RunState, to: RunState, allowed: readonly RunState[]): void {
  if (from === to) return;
  if (!allowed.includes(from)) {
    throw new TransitionError(from, to, `${type} is only accepted from ${allowed.join(', ')}`);
  }
}

function move(from: RunState, to: RunState): Pick<EventEffect, 'outcome' | 'to'> {
  if (!canTransition(from, to)) throw new TransitionError(from, to);
  return { outcome: from === to ? 'noop' : 'applied', to };
}

/**
 * Observations from GitHub that do not fit the state are recorded as ignored. GitHub never moves a
 * PAUSED run, and what arrives while the run is busy (IMPLEMENTING, ...) is not lost: both are kept
 * pending and applied when the run reaches a state the observation fits. Terminal runs keep nothing.
 */
function observe(from: RunState, to: RunState): Pick<EventEffect, 'outcome' | 'to' | 'pending'> {
  if (from === 'PAUSED') return { outcome: 'ignored', to: from, pending: true };
  if (from === to) return { outcome: 'noop', to };
  if (TRANSITIONS[from].includes(to)) return { outcome: 'applied', to };
  return isTerminal(from) ? { outcome: 'ignored', to: from } : { outcome: 'ignored', to: from, pending: true };
}

function notFitting(what: string, from: RunState, eff: Pick<EventEffect, 'pending'>): string {
  if (from === 'PAUSED') return `${what} arrived while the run is PAUSED: kept pending, shown and applied on resume when it fits`;
  return eff.pending ? `${what} does not fit a run in ${from}: kept pending until the run reaches a state it fits` : `${what} does not apply to a run in ${from}`;
}

const GREEN_CONCLUSIONS = new Set(['success', 'neutral', 'skipped']);

/**
 * The event -> state rules, pure. Throws TransitionError or UserInputError
 * for commands that cannot cause their transition.
 */
export function decideEffect(from: RunState, type: EventType, payload: Payload, lastError: string | null = null): EventEffect {
  switch (type) {
    case 'command.run.create':
      throw new UserInputError('command.run.create is written only when a run is created; use create-run');
    case 'command.start.discovery':
      onlyFrom(type, from, 'DISCOVERY', ['QUEUED', 'PAUSED', 'FAILED_RETRYABLE']);
      return { ...move(from, 'DISCOVERY'), lastError: null };
    case 'worker.discovery.completed': {
      if (from === 'QUEUED') throw new TransitionError(from, 'PLAN_READY', 'discovery has not started');
      const path = String(payload.contract_path);
      return { ...move(from, 'PLAN_READY'), lastError: null, artifact: { type: 'contract', uri: path } };
    }
    case 'command.start.implementation':
      onlyFrom(type, from, 'IMPLEMENTING', ['PLAN_READY', 'ITERATING', 'PAUSED']);
      return { ...move(from, 'IMPLEMENTING'), lastError: null };
    case 'command.local.validation.passed':
      onlyFrom(type, from, 'LOCAL_VALIDATING', ['IMPLEMENTING', 'ITERATING', 'PAUSED']);
      return { ...move(from, 'LOCAL_VALIDATING'), lastError: null };
    case 'worker.push.completed': {
      const { branch: _branch, ...meta } = payload; // head_sha etc. (run-finish) go to the artifact's metadata
      const branch = String(payload.branch);
      const artifact = { type: 'branch' as const, uri: branch, ...(Object.keys(meta).length ? { metadata: meta } : {}) };
      // A push that finishes after a person paused the run is recorded, but only resume moves the run.
      if (from === 'PAUSED') return { outcome: 'noop', to: from, artifact, note: `the push of ${branch} finished while the run is PAUSED: the branch is recorded, the run stays PAUSED; resume goes to PUSHED` };
      return { ...move(from, 'PUSHED'), lastError: null, artifact };
    }
    case 'command.pr.linked':
      return { ...move(from, 'CI_WAIT'), prNumber: Number(payload.pr_number) };
    case 'worker.step.failed': {
      const to = (payload.to_state as RunState | undefined) ?? (from === 'PUSHED' ? 'NEEDS_HUMAN_REVIEW' : 'FAILED_RETRYABLE');
      const lastError = `${String(payload.step)}:${String(payload.reason_code)}:${String(payload.error_message)}`;
      return { ...move(from, to), lastError };
    }
    case 'github.check.completed': {
      const conclusion = String(payload.conclusion).toLowerCase();
      const to: RunState = GREEN_CONCLUSIONS.has(conclusion) ? 'REVIEW_WAIT' : 'ITERATING';
      const eff = observe(from, to);
      return eff.outcome === 'ignored'
        ? { ...eff, note: notFitting(`check ${conclusion}`, from, eff) }
        : { ...eff, lastError: to === 'ITERATING' ? `github_check:${conclusion}` : null };
    }
    case 'github.review.submitted': {
      const state = String(payload.state).toLowerCase();
      if (state !== 'changes_requested') return { outcome: 'noop', to: from, note: `review ${state} changes nothing` };
      const eff = observe(from, 'ITERATING');
      return eff.outcome === 'ignored'
        ? { ...eff, note: notFitting('changes_requested', from, eff) }
        : { ...eff, lastError: 'github_review:changes_requested' };
    }
    case 'github.pr.merged': {
      const to = payload.to_state === 'NEEDS_HUMAN_REVIEW' ? 'NEEDS_HUMAN_REVIEW' : 'DONE';
      const eff = observe(from, to);
      return eff.outcome === 'ignored'
        ? { ...eff, note: notFitting('the PR merge', from, eff) }
        : { ...eff, lastError: to === 'DONE' ? null : 'pr_merged' };
    }
    case 'github.pr.closed': {
      const eff = observe(from, 'NEEDS_HUMAN_REVIEW');
      return eff.outcome === 'ignored' ? { ...eff, note: notFitting('the PR was closed unmerged; this', from, eff) } : { ...eff, lastError: 'pr_closed' };
    }
    case 'github.pr.reopened':
      // Only a run that stopped because its PR was closed goes back to waiting on CI.
      if (from !== 'NEEDS_HUMAN_REVIEW' || lastError !== 'pr_closed') return { outcome: 'noop', to: from, note: `PR reopened; a run in ${from} stays there` };
      return { ...move(from, 'CI_WAIT'), lastError: null };
    case 'command.mark.done':
      onlyFrom(type, from, 'DONE', ['PUSHED', 'REVIEW_WAIT', 'NEEDS_HUMAN_REVIEW']);
      return { ...move(from, 'DONE') };
    case 'command.pause':
      if (isTerminal(from)) throw new TransitionError(from, 'PAUSED', `${from} is terminal`);
      return move(from, 'PAUSED');
    case 'command.resume':
    case 'command.retry': {
      const target = payload.target_state as RunState;
      return { ...move(from, target), lastError: from === target ? undefined : null };
    }
    case 'timer.timeout':
      return { ...move(from, 'FAILED_RETRYABLE'), lastError: `timeout:${String(payload.step)}` };
  }
}
