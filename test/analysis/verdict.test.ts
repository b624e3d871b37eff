import { describe, expect, it } from 'vitest';
import { decideVerdict, stateAfterVerdict, type DiffStats, type VerdictInput } from '../../src/analysis/index.js';
import { ConfigurationError } from '../../src/core/errors.js';
import { commandLines, policyWith, summarize, zsh } from './helpers.js';

const PYTEST_OK = commandLines('item_1', zsh('uv run pytest -q'), 0, '12 passed in 0.4s\n');
const PYTEST_FAIL = commandLines('item_2', zsh('uv run pytest -q'), 1, 'FAILED tests/test_x.py::test_y - AssertionError\n1 failed, 11 passed\n');

function diff(files: number, added: number): DiffStats {
  return {
    changed_files: files,
    added_lines: added,
    deleted_lines: 0,
    files: Array.from({ length: files }, (_, i) => ({ path: `src/f${i}.py`, added: Math.floor(added / files), deleted: 0, binary: false, untracked: false })),
    ignored_files: 0,
    head_sha: 'a'.repeat(40),
  };
}

function input(lines: string[], over: Partial<VerdictInput> = {}): VerdictInput {
  return { stream: summarize(lines), exitCode: 0, stateBefore: 'IMPLEMENTING', attemptNo: 1, policy: policyWith(), diffStats: diff(1, 10), preflight: { ok: true }, ...over };
}

describe('rule 1: preflight', () => {
  it('a transient preflight failure is RETRYABLE preflight_transient_failure', () => {
    const v = decideVerdict(input(PYTEST_OK, { preflight: { ok: false, checks: [{ name: 'dependencies_installable', ok: false, message: 'Could not resolve host: pypi.org' }] } }));
    expect(v).toMatchObject({ grade: 'RETRYABLE', reason_code: 'preflight_transient_failure', next_action: 'retry', rule: 1 });
    expect(v.evidence.join('\n')).toContain("transient pattern 'could not resolve host'");
    expect(v.evidence[0]).toContain('dependencies_installable');
  });

  it('any other preflight failure is HUMAN_REVIEW preflight_hard_failure', () => {
    const v = decideVerdict(input(PYTEST_OK, { preflight: { ok: false, checks: [{ name: 'git_writable', ok: false, message: '.git is not writable' }] } }));
    expect(v).toMatchObject({ grade: 'HUMAN_REVIEW', reason_code: 'preflight_hard_failure', next_action: 'escalate', rule: 1 });
    expect(v.evidence.join('\n')).toContain('git_writable: .git is not writable');
  });
});

describe('rule 2: safety', () => {
  for (const [cmd, rule] of [
    ['sudo apt-get install -y libpq-dev', 'sudo'],
    ['brew install postgresql', 'brew_install'],
    ['npm install -g pnpm', 'global_package_install'],
    ['pnpm add --global typescript', 'global_package_install'],
    ['yarn global add eslint', 'global_package_install'],
    ['uv tool install ruff', 'uv_tool_install'],
    ['poetry self update', 'poetry_self'],
    ['cd api && HOME=/tmp sudo -u root make install', 'sudo'],
  ] as const) {
    it(`\`${cmd}\` is a safety_violation (${rule})`, () => {
      const v = decideVerdict(input([...PYTEST_OK, ...commandLines('item_9', zsh(cmd), 0)]));
      expect(v).toMatchObject({ grade: 'HUMAN_REVIEW', reason_code: 'safety_violation', next_action: 'escalate', rule: 2 });
      expect(v.evidence[0]).toContain('item_9');
      expect(v.evidence[0]).toContain(`rule: ${rule}`);
    });
  }

  it('a command that only mentions a forbidden word is not a violation', () => {
    const v = decideVerdict(input([...PYTEST_OK, ...commandLines('item_9', zsh('rg -n "sudo|brew install" docs'), 0)]));
    expect(v.reason_code).toBe('runtime_success');
  });

  it('a command that started but never completed still counts', () => {
    const started = commandLines('item_9', zsh('sudo rm -rf /tmp/x'), null)[0]!;
    const v = decideVerdict(input([...PYTEST_OK, started], { exitCode: 1 }));
    expect(v.reason_code).toBe('safety_violation');
  });
});

describe('rule 3: push', () => {
  for (const cmd of ['git commit -am "fix"', 'git -C . push origin HEAD', 'bash forge_integration/scripts/finish.sh "changes"', './finish.sh "x"']) {
    it(`\`${cmd}\` is agent_push_disallowed`, () => {
      const v = decideVerdict(input([...PYTEST_OK, ...commandLines('item_7', zsh(cmd), 0)]));
      expect(v).toMatchObject({ grade: 'HUMAN_REVIEW', reason_code: 'agent_push_disallowed', rule: 3 });
      expect(v.evidence.join('\n')).toContain('item_7');
    });
  }

  it('allowed when the caller allows pushing', () => {
    const v = decideVerdict(input([...PYTEST_OK, ...commandLines('item_7', zsh('git commit -m x && git push'), 0)], { pushAllowed: true }));
    expect(v.reason_code).toBe('runtime_success');
  });

  it('git status / log / diff are not push attempts', () => {
    const v = decideVerdict(input([...PYTEST_OK, ...commandLines('item_7', zsh('git status --short && git log -1 && git diff --stat'), 0)]));
    expect(v.reason_code).toBe('runtime_success');
  });
});

describe('rule 4: exit 0', () => {
  it('a failed test command makes test_command_failed even though the worker exited 0', () => {
    const v = decideVerdict(input([...PYTEST_OK, ...PYTEST_FAIL]));
    expect(v).toMatchObject({ grade: 'HUMAN_REVIEW', reason_code: 'test_command_failed', next_action: 'escalate', rule: 4 });
    expect(v.evidence[0]).toBe('1 failed test command(s) though the worker exited 0');
    expect(v.evidence[1]).toBe("item_2 `uv run pytest -q` exit 1");
  });

  it('a failed typecheck counts as a failed test command', () => {
    const v = decideVerdict(input([...PYTEST_OK, ...commandLines('item_3', zsh('npx tsc --noEmit'), 2, "src/a.ts(1,1): error TS2322")]));
    expect(v.reason_code).toBe('test_command_failed');
  });

  it('allowlisted failures pass as runtime_success_allowlisted_test_failures', () => {
    const policy = policyWith({ known_test_failure_allowlist: ['test_x\\.py::test_y'] });
    const v = decideVerdict(input([...PYTEST_OK, ...PYTEST_FAIL], { policy }));
    expect(v).toMatchObject({ grade: 'PASS', reason_code: 'runtime_success_allowlisted_test_failures', next_action: 'advance' });
    expect(v.evidence.join('\n')).toContain('matches allowlist pattern "test_x\\\\.py::test_y"');
  });

  it('an allowlist that matches only some failures does not excuse the others', () => {
    const policy = policyWith({ known_test_failure_allowlist: ['test_x\\.py::test_y'] });
    const other = commandLines('item_4', zsh('make test'), 2, 'FAILED tests/test_z.py::test_new\n');
    expect(decideVerdict(input([...PYTEST_FAIL, ...other], { policy })).reason_code).toBe('test_command_failed');
  });

  it('an invalid allowlist regex is a configuration error naming it', () => {
    const policy = policyWith({ known_test_failure_allowlist: ['(unclosed'] });
    expect(() => decideVerdict(input([...PYTEST_FAIL], { policy }))).toThrow(ConfigurationError);
    expect(() => decideVerdict(input([...PYTEST_FAIL], { policy }))).toThrow(/known_test_failure_allowlist\[0\].*"\(unclosed"/);
  });

  it('no test command in IMPLEMENTING is missing_test_evidence', () => {
    const v = decideVerdict(input(commandLines('item_1', zsh('rg -n "pytest" .'), 0)));
    expect(v).toMatchObject({ grade: 'HUMAN_REVIEW', reason_code: 'missing_test_evidence', rule: 4 });
    expect(v.evidence[0]).toBe('0 test command(s) run in IMPLEMENTING; min_test_commands is 1');
  });

  it('fewer test commands than min_test_commands is insufficient_test_evidence', () => {
    const v = decideVerdict(input(PYTEST_OK, { policy: policyWith({ min_test_commands: 2 }), stateBefore: 'ITERATING' }));
    expect(v).toMatchObject({ grade: 'HUMAN_REVIEW', reason_code: 'insufficient_test_evidence' });
    expect(v.evidence[1]).toContain('uv run pytest -q');
  });

  it('test evidence is not required in DISCOVERY', () => {
    expect(decideVerdict(input([], { stateBefore: 'DISCOVERY' })).reason_code).toBe('runtime_success');
  });

  it('too many changed files is diff_budget_exceeded', () => {
    const v = decideVerdict(input(PYTEST_OK, { diffStats: diff(7, 20) }));
    expect(v).toMatchObject({ grade: 'HUMAN_REVIEW', reason_code: 'diff_budget_exceeded', rule: 4 });
    expect(v.evidence[0]).toBe('changed files 7 > max_changed_files 6');
  });

  it('too many added lines is diff_budget_exceeded', () => {
    const v = decideVerdict(input(PYTEST_OK, { diffStats: diff(2, 121) }));
    expect(v.reason_code).toBe('diff_budget_exceeded');
    expect(v.evidence[0]).toBe('added lines 121 > max_added_lines 120');
  });

  it('a budget of 0 means no limit', () => {
    const v = decideVerdict(input(PYTEST_OK, { diffStats: diff(50, 5000), policy: policyWith({ max_changed_files: 0, max_added_lines: 0 }) }));
    expect(v.reason_code).toBe('runtime_success');
  });

  it('otherwise PASS runtime_success', () => {
    const v = decideVerdict(input(PYTEST_OK));
    expect(v).toEqual({
      grade: 'PASS',
      reason_code: 'runtime_success',
      next_action: 'advance',
      rule: 4,
      evidence: ['worker exited 0; 1 test command(s), 0 failed', 'diff 1 file(s) +10/-0 within budget'],
    });
  });
});

describe('rule 5: exit not 0', () => {
  it('a hard pattern in stderr is HUMAN_REVIEW runtime_hard_failure', () => {
    const v = decideVerdict(input(PYTEST_OK, { exitCode: 1, stderrTail: 'fatal: not a git repository (or any of the parent directories): .git' }));
    expect(v).toMatchObject({ grade: 'HUMAN_REVIEW', reason_code: 'runtime_hard_failure', rule: 5 });
    expect(v.evidence[1]).toBe(`hard pattern 'not a git repository' in stderr: "not a git repository"`);
  });

  it('a transient pattern in a stream error is RETRYABLE runtime_transient_failure', () => {
    const err = JSON.stringify({ type: 'error', message: 'stream error: exceeded retry limit, last status: 429 Too Many Requests' });
    const v = decideVerdict(input([...PYTEST_OK, err], { exitCode: 1 }));
    expect(v).toMatchObject({ grade: 'RETRYABLE', reason_code: 'runtime_transient_failure', next_action: 'retry' });
    expect(v.evidence[1]).toContain('in stream error');
  });

  it('turn.failed messages are searched too', () => {
    const err = JSON.stringify({ type: 'turn.failed', error: { message: 'Connection reset by peer' } });
    expect(decideVerdict(input([err], { exitCode: 1 })).reason_code).toBe('runtime_transient_failure');
  });

  it('a hard timeout is transient', () => {
    const v = decideVerdict(input(PYTEST_OK, { exitCode: null, timedOut: true }));
    expect(v.reason_code).toBe('runtime_transient_failure');
    expect(v.evidence[0]).toBe('worker timed out (exit signal)');
  });

  it('a missing codex binary (exit 127) is hard', () => {
    expect(decideVerdict(input([], { exitCode: 127 })).reason_code).toBe('runtime_hard_failure');
  });

  it('anything else is RETRYABLE runtime_unknown_failure', () => {
    const v = decideVerdict(input(PYTEST_OK, { exitCode: 3, stderrTail: 'something odd happened' }));
    expect(v).toMatchObject({ grade: 'RETRYABLE', reason_code: 'runtime_unknown_failure', rule: 5 });
    expect(v.evidence).toEqual(['worker exited 3', 'no known pattern in stderr']);
  });
});

describe('rule 6: retry cap', () => {
  it('RETRYABLE over max_retryable_attempts becomes retryable_limit_exceeded, keeping the original code', () => {
    const v = decideVerdict(input(PYTEST_OK, { exitCode: 3, attemptNo: 4 }));
    expect(v).toMatchObject({ grade: 'HUMAN_REVIEW', reason_code: 'retryable_limit_exceeded', next_action: 'escalate', rule: 6, original_reason_code: 'runtime_unknown_failure' });
    expect(v.evidence[0]).toBe('attempt 4 is over max_retryable_attempts 3; original verdict RETRYABLE runtime_unknown_failure');
  });

  it('at the cap it is still RETRYABLE', () => {
    expect(decideVerdict(input(PYTEST_OK, { exitCode: 3, attemptNo: 3 })).grade).toBe('RETRYABLE');
  });

  it('applies to preflight retries, with the repo override cap', () => {
    const v = decideVerdict(input(PYTEST_OK, { attemptNo: 3, policy: policyWith({ max_retryable_attempts: 2 }), preflight: { ok: false, error: 'connection timed out' } }));
    expect(v).toMatchObject({ reason_code: 'retryable_limit_exceeded', original_reason_code: 'preflight_transient_failure' });
  });

  it('does not touch HUMAN_REVIEW or PASS', () => {
    expect(decideVerdict(input(PYTEST_FAIL, { attemptNo: 9 })).reason_code).toBe('test_command_failed');
    expect(decideVerdict(input(PYTEST_OK, { attemptNo: 9 })).reason_code).toBe('runtime_success');
  });
});

describe('first match wins', () => {
  const everything = [...PYTEST_FAIL, ...commandLines('item_5', zsh('git push origin HEAD'), 0), ...commandLines('item_6', zsh('sudo make install'), 0)];
  it('preflight before safety', () => {
    expect(decideVerdict(input(everything, { preflight: { ok: false, error: 'no toolchain' } })).reason_code).toBe('preflight_hard_failure');
  });
  it('safety before push and tests', () => {
    expect(decideVerdict(input(everything)).reason_code).toBe('safety_violation');
  });
  it('push before failed tests', () => {
    expect(decideVerdict(input(everything.slice(0, 4))).reason_code).toBe('agent_push_disallowed');
  });
  it('failed tests before test evidence and diff budget', () => {
    expect(decideVerdict(input(PYTEST_FAIL, { diffStats: diff(40, 4000), policy: policyWith({ min_test_commands: 5 }) })).reason_code).toBe('test_command_failed');
  });
  it('test evidence before diff budget', () => {
    expect(decideVerdict(input([], { diffStats: diff(40, 4000) })).reason_code).toBe('missing_test_evidence');
  });
  it('rule 4 only applies to exit 0: failed tests with exit 1 are a runtime failure', () => {
    expect(decideVerdict(input(PYTEST_FAIL, { exitCode: 1 })).reason_code).toBe('runtime_unknown_failure');
  });
});

describe('state after the verdict', () => {
  const policy = policyWith();
  it('follows the policy', () => {
    expect(stateAfterVerdict('PASS', 'IMPLEMENTING', policy)).toBe('LOCAL_VALIDATING');
    expect(stateAfterVerdict('RETRYABLE', 'IMPLEMENTING', policy)).toBe('FAILED_RETRYABLE');
    expect(stateAfterVerdict('HUMAN_REVIEW', 'ITERATING', policy)).toBe('NEEDS_HUMAN_REVIEW');
  });
  it('DISCOVERY success converges to UNCHANGED; a same-state target is UNCHANGED', () => {
    expect(stateAfterVerdict('PASS', 'DISCOVERY', policy)).toBe('UNCHANGED');
    expect(stateAfterVerdict('PASS', 'LOCAL_VALIDATING', policy)).toBe('UNCHANGED');
    expect(stateAfterVerdict('HUMAN_REVIEW', 'DISCOVERY', policy)).toBe('NEEDS_HUMAN_REVIEW');
  });
});
