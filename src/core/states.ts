import { z } from 'zod';

/** The 15 run states. */
export const RUN_STATES = [
  'QUEUED',
  'DISCOVERY',
  'PLAN_READY',
  'IMPLEMENTING',
  'LOCAL_VALIDATING',
  'PUSHED',
  'CI_WAIT',
  'REVIEW_WAIT',
  'ITERATING',
  'PAUSED',
  'DONE',
  'SKIPPED',
  'NEEDS_HUMAN_REVIEW',
  'FAILED_RETRYABLE',
  'FAILED_TERMINAL',
] as const;

export const RunStateSchema = z.enum(RUN_STATES);
export type RunState = z.infer<typeof RunStateSchema>;

export const TERMINAL_STATES: ReadonlySet<RunState> = new Set(['DONE', 'SKIPPED', 'FAILED_TERMINAL']);

export function isTerminal(state: RunState): boolean {
  return TERMINAL_STATES.has(state);
}

/** The transition table. Terminal states allow nothing. */
export const TRANSITIONS: Readonly<Record<RunState, readonly RunState[]>> = {
  QUEUED: ['DISCOVERY', 'PAUSED', 'SKIPPED', 'FAILED_TERMINAL'],
  DISCOVERY: ['PLAN_READY', 'PAUSED', 'SKIPPED', 'FAILED_RETRYABLE', 'FAILED_TERMINAL', 'NEEDS_HUMAN_REVIEW'],
  PLAN_READY: ['IMPLEMENTING', 'PAUSED', 'SKIPPED', 'NEEDS_HUMAN_REVIEW'],
  IMPLEMENTING: ['LOCAL_VALIDATING', 'PAUSED', 'FAILED_RETRYABLE', 'FAILED_TERMINAL', 'NEEDS_HUMAN_REVIEW'],
  LOCAL_VALIDATING: ['PUSHED', 'PAUSED', 'FAILED_RETRYABLE', 'FAILED_TERMINAL', 'NEEDS_HUMAN_REVIEW'],
  PUSHED: ['CI_WAIT', 'PAUSED', 'NEEDS_HUMAN_REVIEW', 'DONE'],
  CI_WAIT: ['REVIEW_WAIT', 'ITERATING', 'PAUSED', 'FAILED_RETRYABLE', 'FAILED_TERMINAL', 'NEEDS_HUMAN_REVIEW', 'DONE'],
  REVIEW_WAIT: ['ITERATING', 'PAUSED', 'DONE', 'FAILED_RETRYABLE', 'NEEDS_HUMAN_REVIEW'],
  ITERATING: ['IMPLEMENTING', 'LOCAL_VALIDATING', 'PAUSED', 'FAILED_RETRYABLE', 'FAILED_TERMINAL', 'NEEDS_HUMAN_REVIEW', 'DONE'],
  PAUSED: [
    'DISCOVERY',
    'PLAN_READY',
    'IMPLEMENTING',
    'LOCAL_VALIDATING',
    'PUSHED',
    'CI_WAIT',
    'REVIEW_WAIT',
    'ITERATING',
    'NEEDS_HUMAN_REVIEW',
    'SKIPPED',
    'FAILED_TERMINAL',
  ],
  NEEDS_HUMAN_REVIEW: ['IMPLEMENTING', 'ITERATING', 'CI_WAIT', 'PAUSED', 'SKIPPED', 'DONE', 'FAILED_TERMINAL'],
  FAILED_RETRYABLE: ['DISCOVERY', 'IMPLEMENTING', 'LOCAL_VALIDATING', 'ITERATING', 'NEEDS_HUMAN_REVIEW', 'SKIPPED', 'FAILED_TERMINAL'],
  DONE: [],
  SKIPPED: [],
  FAILED_TERMINAL: [],
};

export class TransitionError extends Error {
  readonly from: RunState;
  readonly to: RunState;
  constructor(from: RunState, to: RunState, why?: string) {
    const allowed = TRANSITIONS[from];
    const allowedText = allowed.length ? allowed.join(', ') : 'none (terminal state)';
    super(
      `illegal transition ${from} -> ${to}${why ? ` (${why})` : ''}; allowed from ${from}: ${allowedText}`,
    );
    this.name = 'TransitionError';
    this.from = from;
    this.to = to;
  }
}

export function canTransition(from: RunState, to: RunState): boolean {
  return from === to || TRANSITIONS[from].includes(to);
}

/** Fails fast on an illegal pair; a same-state transition is a no-op that passes. */
export function assertTransition(from: RunState, to: RunState): void {
  if (!canTransition(from, to)) throw new TransitionError(from, to);
}
