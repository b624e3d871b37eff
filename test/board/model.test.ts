import { describe, expect, test } from 'vitest';
import { RUN_STATES } from '../../src/core/states.js';
import { BOARD_COLUMNS, actionsFor, columnOf, safeUrl } from '../../src/board/model.js';

describe('board model', () => {
  test('every run state sits in exactly one column', () => {
    for (const state of RUN_STATES) {
      const holders = BOARD_COLUMNS.filter((c) => (c.states as readonly string[]).includes(state));
      expect(holders.map((c) => c.id), state).toEqual([columnOf(state)]);
    }
    expect(BOARD_COLUMNS.flatMap((c) => c.states).sort()).toEqual([...RUN_STATES].sort());
  });

  test('buttons follow the state and the transition table: pause where allowed, resume when paused, retry when retryable, PR request when pushed', () => {
    expect(actionsFor({ state: 'QUEUED' })).toEqual(['pause']);
    expect(actionsFor({ state: 'PAUSED' })).toEqual(['resume']);
    expect(actionsFor({ state: 'FAILED_RETRYABLE' })).toEqual(['retry']); // the transition table has no pause there
    expect(actionsFor({ state: 'PUSHED' })).toEqual(['pause', 'request-open-pr']);
    for (const s of ['DONE', 'SKIPPED', 'FAILED_TERMINAL'] as const) expect(actionsFor({ state: s })).toEqual([]);
  });

  test('only plain http(s) addresses become links', () => {
    expect(safeUrl('https://github.com/acme/widgets/pull/3')).toBe('https://github.com/acme/widgets/pull/3');
    for (const bad of ['javascript:alert(1)', 'data:text/html,x', 'pr_open_request:prq_1', 'https://x/"onmouseover=1', 42, null]) {
      expect(safeUrl(bad)).toBeNull();
    }
  });
});
