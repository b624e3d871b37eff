import { describe, expect, it } from 'vitest';
import { RUN_STATES, type RunState } from '../../src/core/states.js';
import { ACTION_TOOL, isExecutable, type ManagerAction } from '../../src/manager/actions.js';
import { decide, failedStep, type RunFacts, type StepCounts } from '../../src/manager/rules.js';

const RUN = 'run_0123456789ab';
const ok = (n = 1): StepCounts => ({ total: n, succeeded: n, failed: 0, running: 0 });
const bad = (n = 1): StepCounts => ({ total: n, succeeded: 0, failed: n, running: 0 });

function facts(state: RunState, over: Partial<RunFacts> = {}): RunFacts {
  return {
    run_id: RUN,
    owner: 'acme',
    repo: 'widget',
    state,
    last_error: null,
    workspace_dir: '/ws/widget',
    updated_at: '2026-01-01T00:00:00.000Z',
    attempts: {},
    contract_artifact: null,
    discovery_contract: null,
    auto_contract_path: `/home/contracts/${RUN}.auto-contract.md`,
    prompt: { kind: 'text', value: 'Fix the flaky test', source: 'tick input' },
    prompt_problem: null,
    digest: null,
    prepare_args: {},
    finish: null,
    max_retryable_attempts: 3,
    ...over,
  };
}

const digest = (grade: string, recommendation: string, current = true) => ({
  artifact_id: 7,
  grade,
  reason_code: grade === 'PASS' ? 'runtime_success' : 'test_command_failed',
  recommendation,
  priority: 'high',
  current,
});

interface Row {
  name: string;
  facts: RunFacts;
  action: ManagerAction;
  args?: Record<string, unknown>;
  reason?: RegExp;
}

const table: Row[] = [
  // terminal
  { name: 'DONE', facts: facts('DONE'), action: 'noop' },
  { name: 'SKIPPED', facts: facts('SKIPPED'), action: 'noop' },
  { name: 'FAILED_TERMINAL', facts: facts('FAILED_TERMINAL'), action: 'noop' },
  // a person acts next
  { name: 'PAUSED', facts: facts('PAUSED'), action: 'wait_human', reason: /resume/ },
  { name: 'PUSHED', facts: facts('PUSHED'), action: 'wait_human', reason: /request-open-pr/ },
  { name: 'NEEDS_HUMAN_REVIEW', facts: facts('NEEDS_HUMAN_REVIEW', { last_error: 'agent:test_command_failed:x' }), action: 'wait_human', reason: /test_command_failed/ },
  // the pipeline
  { name: 'QUEUED', facts: facts('QUEUED'), action: 'start_discovery', args: { run_id: RUN } },
  { name: 'DISCOVERY, prepare never ran', facts: facts('DISCOVERY'), action: 'run_prepare', args: { run_id: RUN } },
  {
    name: 'DISCOVERY, prepare options from the run budget',
    facts: facts('DISCOVERY', { prepare_args: { upstream_url: '/git/up.git', fork_url: '/git/fork.git' } }),
    action: 'run_prepare',
    args: { run_id: RUN, upstream_url: '/git/up.git', fork_url: '/git/fork.git' },
  },
  { name: 'DISCOVERY, prepare only failed', facts: facts('DISCOVERY', { attempts: { prepare: bad(2) } }), action: 'run_prepare' },
  {
    name: 'DISCOVERY, prepare done, worker contract',
    facts: facts('DISCOVERY', { attempts: { prepare: ok() }, discovery_contract: '/ws/widget/.agentpr_runtime/contracts/c.md' }),
    action: 'mark_plan_ready',
    args: { run_id: RUN, contract_path: '/ws/widget/.agentpr_runtime/contracts/c.md' },
  },
  {
    name: 'DISCOVERY, prepare done, no contract, prompt -> auto-contract',
    facts: facts('DISCOVERY', { attempts: { prepare: ok() } }),
    action: 'mark_plan_ready',
    args: { run_id: RUN, contract_path: `/home/contracts/${RUN}.auto-contract.md` },
    reason: /writes one/,
  },
  {
    name: 'DISCOVERY, prepare done, no contract, no prompt',
    facts: facts('DISCOVERY', { attempts: { prepare: ok() }, prompt: null, prompt_problem: 'prompt_file /x.md from the run budget does not exist' }),
    action: 'wait_human',
    reason: /\/x\.md/,
  },
  {
    name: 'DISCOVERY, digest asks for a person',
    facts: facts('DISCOVERY', { attempts: { prepare: ok() }, digest: digest('HUMAN_REVIEW', 'human_review') }),
    action: 'wait_human',
  },
  { name: 'PLAN_READY', facts: facts('PLAN_READY'), action: 'start_implementation', args: { run_id: RUN } },
  { name: 'IMPLEMENTING, prompt text', facts: facts('IMPLEMENTING'), action: 'run_agent_step', args: { run_id: RUN, prompt: 'Fix the flaky test' } },
  {
    name: 'IMPLEMENTING, prompt file',
    facts: facts('IMPLEMENTING', { prompt: { kind: 'file', value: '/p/prompt.md', source: 'run budget' } }),
    action: 'run_agent_step',
    args: { run_id: RUN, prompt_file: '/p/prompt.md' },
  },
  { name: 'IMPLEMENTING, no prompt', facts: facts('IMPLEMENTING', { prompt: null }), action: 'wait_human', reason: /no prompt/ },
  { name: 'IMPLEMENTING, HUMAN_REVIEW digest', facts: facts('IMPLEMENTING', { digest: digest('HUMAN_REVIEW', 'human_review') }), action: 'wait_human', reason: /HUMAN_REVIEW/ },
  {
    name: 'IMPLEMENTING, HUMAN_REVIEW digest superseded by a later command',
    facts: facts('IMPLEMENTING', { digest: digest('HUMAN_REVIEW', 'human_review', false) }),
    action: 'run_agent_step',
  },
  { name: 'IMPLEMENTING, PASS digest kept in state by policy', facts: facts('IMPLEMENTING', { digest: digest('PASS', 'advance') }), action: 'wait_human', reason: /mark-local-validated/ },
  { name: 'IMPLEMENTING, RETRYABLE digest (state unchanged)', facts: facts('IMPLEMENTING', { digest: digest('RETRYABLE', 'retry') }), action: 'run_agent_step' },
  {
    name: 'IMPLEMENTING, an attempt still running',
    facts: facts('IMPLEMENTING', { attempts: { agent: { total: 1, succeeded: 0, failed: 0, running: 1 } } }),
    action: 'noop',
    reason: /still running/,
  },
  { name: 'ITERATING, prompt', facts: facts('ITERATING'), action: 'run_agent_step', reason: /iterating/ },
  { name: 'ITERATING, no prompt', facts: facts('ITERATING', { prompt: null }), action: 'wait_human' },
  {
    name: 'LOCAL_VALIDATING',
    facts: facts('LOCAL_VALIDATING', { finish: { changes: 'Fix the flaky retry test', title: 'fix: flaky test' } }),
    action: 'run_finish',
    args: { run_id: RUN, changes: 'Fix the flaky retry test', title: 'fix: flaky test' },
  },
  { name: 'LOCAL_VALIDATING, HUMAN_REVIEW digest', facts: facts('LOCAL_VALIDATING', { digest: digest('HUMAN_REVIEW', 'human_review') }), action: 'wait_human' },
  { name: 'CI_WAIT', facts: facts('CI_WAIT'), action: 'sync_github', args: { run_id: RUN } },
  { name: 'REVIEW_WAIT', facts: facts('REVIEW_WAIT'), action: 'sync_github', args: { run_id: RUN } },
  // retries
  {
    name: 'FAILED_RETRYABLE, prepare failed',
    facts: facts('FAILED_RETRYABLE', { attempts: { prepare: bad() }, last_error: 'prepare:script_failed:boom' }),
    action: 'retry',
    args: { run_id: RUN, target_state: 'DISCOVERY' },
  },
  {
    name: 'FAILED_RETRYABLE, prepare done but no contract',
    facts: facts('FAILED_RETRYABLE', { attempts: { prepare: ok() }, last_error: 'timeout:agent' }),
    action: 'retry',
    args: { run_id: RUN, target_state: 'DISCOVERY' },
  },
  {
    name: 'FAILED_RETRYABLE, prepare and contract in place',
    facts: facts('FAILED_RETRYABLE', {
      attempts: { prepare: ok(), agent: bad(1) },
      contract_artifact: '/c.md',
      last_error: 'agent:runtime_transient_failure:connection reset',
    }),
    action: 'retry',
    args: { run_id: RUN, target_state: 'IMPLEMENTING' },
  },
  {
    name: 'FAILED_RETRYABLE, over the retry cap',
    facts: facts('FAILED_RETRYABLE', { attempts: { prepare: ok(), finish: bad(4) }, contract_artifact: '/c.md', last_error: 'finish:script_failed:push rejected' }),
    action: 'wait_human',
    reason: /max_retryable_attempts 3/,
  },
  {
    name: 'FAILED_RETRYABLE, at the retry cap still retries',
    facts: facts('FAILED_RETRYABLE', { attempts: { prepare: ok(), finish: bad(3) }, contract_artifact: '/c.md', last_error: 'finish:script_failed:push rejected' }),
    action: 'retry',
  },
  {
    name: 'FAILED_RETRYABLE, digest recommends human review',
    facts: facts('FAILED_RETRYABLE', { attempts: { prepare: ok() }, contract_artifact: '/c.md', digest: digest('RETRYABLE', 'human_review') }),
    action: 'wait_human',
  },
];

describe('manager rules (SPEC §11)', () => {
  it.each(table)('$name -> $action', (row) => {
    const d = decide(row.facts);
    expect(d.action).toBe(row.action);
    expect(d.run_id).toBe(RUN);
    expect(d.state).toBe(row.facts.state);
    expect(d.tool).toBe(isExecutable(row.action) ? ACTION_TOOL[row.action] : null);
    if (row.args) expect(d.args).toEqual(row.args);
    if (!isExecutable(row.action)) expect(d.args).toEqual({});
    if (row.reason) expect(d.reason).toMatch(row.reason);
    expect(d.reason.length).toBeGreaterThan(10);
  });

  it('covers every one of the 15 states', () => {
    const covered = new Set(table.map((r) => r.facts.state));
    expect([...RUN_STATES].filter((s) => !covered.has(s))).toEqual([]);
  });

  it('writes the auto-contract from the prompt only when discovery produced none', () => {
    const withPrompt = decide(facts('DISCOVERY', { attempts: { prepare: ok() } }));
    expect(withPrompt.materialize?.path).toBe(`/home/contracts/${RUN}.auto-contract.md`);
    expect(withPrompt.materialize?.content).toContain('Fix the flaky test');
    expect(withPrompt.materialize?.content).toContain('acme/widget');
    const withContract = decide(facts('DISCOVERY', { attempts: { prepare: ok() }, discovery_contract: '/c.md' }));
    expect(withContract.materialize).toBeUndefined();
  });

  it('ranks work near the finish above new work', () => {
    expect(decide(facts('LOCAL_VALIDATING')).priority).toBe('high');
    expect(decide(facts('QUEUED')).priority).toBe('low');
    expect(decide(facts('NEEDS_HUMAN_REVIEW')).priority).toBe('high');
  });

  it('reads the failed step from last_error', () => {
    expect(failedStep('agent:runtime_unknown_failure:exit 1')).toBe('agent');
    expect(failedStep('timeout:agent')).toBe('agent');
    expect(failedStep(null)).toBeNull();
  });
});
