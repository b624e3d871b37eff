import { describe, expect, test } from 'vitest';
import { RUN_STATES, TRANSITIONS, assertTransition, canTransition, isTerminal, TransitionError, type RunState } from '../../src/core/states.js';

// SPEC §1, written out again independently of the implementation's table, plus the PR lifecycle
// (issue 15): a merged PR ends a run waiting on CI or iterating; a reopened PR returns a run to CI_WAIT.
const SPEC: Record<RunState, string> = {
  QUEUED: 'DISCOVERY PAUSED SKIPPED FAILED_TERMINAL',
  DISCOVERY: 'PLAN_READY PAUSED SKIPPED FAILED_RETRYABLE FAILED_TERMINAL NEEDS_HUMAN_REVIEW',
  PLAN_READY: 'IMPLEMENTING PAUSED SKIPPED NEEDS_HUMAN_REVIEW',
  IMPLEMENTING: 'LOCAL_VALIDATING PAUSED FAILED_RETRYABLE FAILED_TERMINAL NEEDS_HUMAN_REVIEW',
  LOCAL_VALIDATING: 'PUSHED PAUSED FAILED_RETRYABLE FAILED_TERMINAL NEEDS_HUMAN_REVIEW',
  PUSHED: 'CI_WAIT PAUSED NEEDS_HUMAN_REVIEW DONE',
  CI_WAIT: 'REVIEW_WAIT ITERATING PAUSED FAILED_RETRYABLE FAILED_TERMINAL NEEDS_HUMAN_REVIEW DONE',
  REVIEW_WAIT: 'ITERATING PAUSED DONE FAILED_RETRYABLE NEEDS_HUMAN_REVIEW',
  ITERATING: 'IMPLEMENTING LOCAL_VALIDATING PAUSED FAILED_RETRYABLE FAILED_TERMINAL NEEDS_HUMAN_REVIEW DONE',
  PAUSED: 'DISCOVERY PLAN_READY IMPLEMENTING LOCAL_VALIDATING PUSHED CI_WAIT REVIEW_WAIT ITERATING NEEDS_HUMAN_REVIEW SKIPPED FAILED_TERMINAL',
  NEEDS_HUMAN_REVIEW: 'IMPLEMENTING ITERATING CI_WAIT PAUSED SKIPPED DONE FAILED_TERMINAL',
  FAILED_RETRYABLE: 'DISCOVERY IMPLEMENTING LOCAL_VALIDATING ITERATING NEEDS_HUMAN_REVIEW SKIPPED FAILED_TERMINAL',
  DONE: '',
  SKIPPED: '',
  FAILED_TERMINAL: '',
};

const pairs = RUN_STATES.flatMap((from) => RUN_STATES.map((to) => [from, to] as const));

describe('transition table (all 225 pairs)', () => {
  test('has 15 states, 3 terminal', () => {
    expect(RUN_STATES).toHaveLength(15);
    expect(RUN_STATES.filter(isTerminal).sort()).toEqual(['DONE', 'FAILED_TERMINAL', 'SKIPPED']);
  });

  test.each(pairs)('%s -> %s', (from, to) => {
    const allowed = from === to || SPEC[from].split(' ').includes(to);
    expect(canTransition(from, to)).toBe(allowed);
    if (allowed) {
      expect(() => assertTransition(from, to)).not.toThrow();
    } else {
      let err: unknown;
      try {
        assertTransition(from, to);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(TransitionError);
      const message = (err as Error).message;
      expect(message).toContain(`${from} -> ${to}`);
      expect(message).toContain(`allowed from ${from}:`);
      for (const target of TRANSITIONS[from]) expect(message).toContain(target);
    }
  });
});
