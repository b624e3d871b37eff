import { describe, expect, test } from 'vitest';
import { canonicalJson, decideEffect, defaultIdempotencyKey, sha1Hex, validatePayload } from '../../src/core/events.js';
import { TransitionError } from '../../src/core/states.js';
import { UserInputError } from '../../src/core/errors.js';

describe('default idempotency key', () => {
  test('canonical JSON sorts keys at every depth and has no spaces', () => {
    expect(canonicalJson({ b: 1, a: { d: [1, { z: 1, y: 2 }], c: 'x' } })).toBe('{"a":{"c":"x","d":[1,{"y":2,"z":1}]},"b":1}');
  });

  test('is <event_type>:<run_id>:<first 12 hex of sha1(canonical payload)>', () => {
    const key = defaultIdempotencyKey('worker.push.completed', 'run_0123456789ab', { branch: 'feature/x' });
    expect(key).toBe(`worker.push.completed:run_0123456789ab:${sha1Hex('{"branch":"feature/x"}').slice(0, 12)}`);
    // The same payload with keys in another order gives the same key.
    expect(defaultIdempotencyKey('e', 'r', { a: 1, b: 2 })).toBe(defaultIdempotencyKey('e', 'r', { b: 2, a: 1 }));
  });
});

describe('event rules (SPEC §2)', () => {
  test('start.discovery only from QUEUED, PAUSED, FAILED_RETRYABLE', () => {
    expect(decideEffect('QUEUED', 'command.start.discovery', {}).to).toBe('DISCOVERY');
    expect(decideEffect('FAILED_RETRYABLE', 'command.start.discovery', {}).to).toBe('DISCOVERY');
    expect(() => decideEffect('NEEDS_HUMAN_REVIEW', 'command.start.discovery', {})).toThrow(/only accepted from QUEUED, PAUSED, FAILED_RETRYABLE/);
  });

  test('discovery.completed errors from QUEUED and stores a contract', () => {
    expect(() => decideEffect('QUEUED', 'worker.discovery.completed', { contract_path: 'c.md' })).toThrow(TransitionError);
    const eff = decideEffect('DISCOVERY', 'worker.discovery.completed', { contract_path: 'c.md' });
    expect(eff.to).toBe('PLAN_READY');
    expect(eff.artifact).toEqual({ type: 'contract', uri: 'c.md' });
  });

  test('step.failed: PUSHED -> NEEDS_HUMAN_REVIEW, else FAILED_RETRYABLE, with last_error step:reason:message', () => {
    const p = { step: 'agent', reason_code: 'runtime_unknown_failure', error_message: 'boom' };
    expect(decideEffect('PUSHED', 'worker.step.failed', p)).toMatchObject({ to: 'NEEDS_HUMAN_REVIEW', lastError: 'agent:runtime_unknown_failure:boom' });
    expect(decideEffect('IMPLEMENTING', 'worker.step.failed', p)).toMatchObject({ to: 'FAILED_RETRYABLE', lastError: 'agent:runtime_unknown_failure:boom' });
  });

  test('check.completed: green -> REVIEW_WAIT, else ITERATING; a misfit is ignored, not an error', () => {
    for (const c of ['success', 'neutral', 'skipped']) expect(decideEffect('CI_WAIT', 'github.check.completed', { conclusion: c }).to).toBe('REVIEW_WAIT');
    expect(decideEffect('CI_WAIT', 'github.check.completed', { conclusion: 'failure' }).to).toBe('ITERATING');
    expect(decideEffect('QUEUED', 'github.check.completed', { conclusion: 'failure' })).toMatchObject({ outcome: 'ignored', to: 'QUEUED' });
  });

  test('review.submitted: only changes_requested moves to ITERATING', () => {
    expect(decideEffect('REVIEW_WAIT', 'github.review.submitted', { state: 'changes_requested' }).to).toBe('ITERATING');
    expect(decideEffect('REVIEW_WAIT', 'github.review.submitted', { state: 'approved' })).toMatchObject({ outcome: 'noop', to: 'REVIEW_WAIT' });
    expect(decideEffect('DONE', 'github.review.submitted', { state: 'changes_requested' })).toMatchObject({ outcome: 'ignored', to: 'DONE' });
  });

  test('mark.done only from PUSHED, REVIEW_WAIT, NEEDS_HUMAN_REVIEW; pause errors on terminal states', () => {
    expect(decideEffect('REVIEW_WAIT', 'command.mark.done', {}).to).toBe('DONE');
    expect(() => decideEffect('CI_WAIT', 'command.mark.done', {})).toThrow(TransitionError);
    expect(() => decideEffect('DONE', 'command.pause', {})).toThrow(/DONE is terminal/);
    expect(decideEffect('CI_WAIT', 'command.pause', {}).to).toBe('PAUSED');
  });

  test('timeout -> FAILED_RETRYABLE with last_error timeout:<step>; pr.linked sets pr_number', () => {
    expect(decideEffect('IMPLEMENTING', 'timer.timeout', { step: 'agent' })).toMatchObject({ to: 'FAILED_RETRYABLE', lastError: 'timeout:agent' });
    expect(decideEffect('PUSHED', 'command.pr.linked', { pr_number: 7 })).toMatchObject({ to: 'CI_WAIT', prNumber: 7 });
  });

  test('payloads are validated with a message naming the field', () => {
    expect(() => validatePayload('command.pr.linked', { pr_number: 'seven' })).toThrow(/invalid payload for command.pr.linked: pr_number/);
    expect(() => validatePayload('command.resume', { target_state: 'NOWHERE' })).toThrow(UserInputError);
    expect(() => validatePayload('no.such.event', {})).toThrow(/unknown event type 'no.such.event'; allowed: /);
  });
});
