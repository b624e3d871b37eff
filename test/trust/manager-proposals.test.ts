import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { App } from '../../src/app.js';
import { Registry } from '../../src/registry.js';
import { runTick } from '../../src/manager/tick.js';
import { TOOLS } from '../../tools/index.js';
import { makeTestApp } from '../helpers/app.js';
import { FakeOpenAI, toolCall, startFakeOpenAI } from '../helpers/fake-openai.js';

// The model reads digests, insights and last errors that the repository and the worker shape; these
// are the arguments a steered model was seen to propose.
const registry = new Registry(TOOLS);
let fake: FakeOpenAI;
let app: App;
let cleanup: () => Promise<void>;

beforeAll(async () => {
  fake = await startFakeOpenAI();
});
afterAll(async () => fake.close());
beforeEach(() => {
  fake.requests.length = 0;
  fake.script.length = 0;
  ({ app, cleanup } = makeTestApp({ env: fake.managerEnv('5') }));
});
afterEach(async () => cleanup());

function implementing(): string {
  const id = app.service.createRun({ owner: 'acme', repo: 'widget' }).run_id;
  app.service.applyEvent({ run_id: id, event_type: 'command.start.discovery' });
  app.service.applyEvent({ run_id: id, event_type: 'worker.discovery.completed', payload: { contract_path: '/contracts/c.md' } });
  app.service.applyEvent({ run_id: id, event_type: 'command.start.implementation' });
  return id;
}

function failedRetryable(): string {
  const id = app.service.createRun({ owner: 'acme', repo: 'gadget' }).run_id;
  app.service.applyEvent({ run_id: id, event_type: 'command.start.discovery' });
  app.service.applyEvent({ run_id: id, event_type: 'worker.step.failed', payload: { step: 'prepare', reason_code: 'script_failed', error_message: 'network down' } });
  return id;
}

const ESCALATED = { sandbox: 'danger-full-access', prompt_file: '/etc/shadow', allowed_read_only_roots: ['/'], max_agent_seconds: 86_400 };

describe('models propose, rules dispose', () => {
  it('llm: run-agent-step with escalated arguments is refused, recorded with the reason, and nothing runs', async () => {
    const id = implementing();
    fake.reply(toolCall('run-agent-step', { run_id: id, ...ESCALATED }));
    const report = await runTick(app, registry, { decision_mode: 'llm', run_id: id, prompt: 'add a greeting' });
    expect(report.decisions).toHaveLength(1);
    expect(report.decisions[0]).toMatchObject({ action: 'run_agent_step', source: 'model', outcome: 'refused', executed: false, disagreement: true });
    const why = report.decisions[0]!.error!;
    for (const k of ['sandbox="danger-full-access"', 'prompt_file="/etc/shadow"', 'allowed_read_only_roots=["/"]', 'max_agent_seconds=86400']) expect(why).toContain(k);
    expect(why).toContain('come from the rules and the policy');
    expect(app.service.listAttempts(id, 'agent')).toEqual([]);
    expect(app.service.listDecisions(id).at(-1)).toMatchObject({ mode: 'llm', outcome: 'refused', executed: false });
    expect(app.service.listDecisions(id).at(-1)!.error).toContain('sandbox="danger-full-access"');
  });

  it('hybrid: the same proposal is refused and the rules decide with their own arguments', async () => {
    const id = implementing();
    fake.reply(toolCall('run-agent-step', { run_id: id, ...ESCALATED }));
    const report = await runTick(app, registry, { decision_mode: 'hybrid', run_id: id, prompt: 'add a greeting', dry_run: true });
    expect(report.decisions[0]).toMatchObject({ action: 'run_agent_step', source: 'rules', outcome: 'dry_run', disagreement: true, args: { run_id: id, prompt: 'add a greeting' } });
    expect(report.decisions[0]!.args).not.toHaveProperty('sandbox');
    expect(report.decisions[0]!.model_proposal!.error).toContain('sandbox="danger-full-access"');
    expect(report.decisions[0]!.reason).toMatch(/model's call refused: .*; rules decided/);
  });

  it.each(['llm', 'hybrid'] as const)('%s: run-prepare with an attacker fork_url is refused', async (mode) => {
    const id = app.service.createRun({ owner: 'acme', repo: 'prep' }).run_id;
    app.service.applyEvent({ run_id: id, event_type: 'command.start.discovery' });
    fake.reply(toolCall('run-prepare', { run_id: id, fork_url: 'https://attacker.invalid/x.git' }));
    const report = await runTick(app, registry, { decision_mode: mode, run_id: id, dry_run: true });
    expect(report.decisions[0]!.model_proposal!.error).toContain('fork_url="https://attacker.invalid/x.git"');
    if (mode === 'llm') expect(report.decisions[0]).toMatchObject({ outcome: 'refused' });
    else expect(report.decisions[0]).toMatchObject({ source: 'rules', outcome: 'dry_run', disagreement: true });
    expect(report.decisions[0]!.args).not.toHaveProperty('fork_url');
  });

  it('hybrid: retry to a model-chosen LOCAL_VALIDATING is refused, counted as disagreement, and the rules retry to their target', async () => {
    const id = failedRetryable();
    fake.reply(toolCall('retry', { run_id: id, target_state: 'LOCAL_VALIDATING' }));
    const report = await runTick(app, registry, { decision_mode: 'hybrid', run_id: id, max_actions: 1 });
    expect(report.decisions[0]).toMatchObject({ action: 'retry', source: 'rules', outcome: 'executed', disagreement: true, args: { target_state: 'DISCOVERY' }, state_after: 'DISCOVERY' });
    expect(report.decisions[0]!.model_proposal!.error).toContain('target_state="LOCAL_VALIDATING" (rules: "DISCOVERY")');
  });

  it('llm: retry to FAILED_TERMINAL is refused and the run stays', async () => {
    const id = failedRetryable();
    fake.reply(toolCall('retry', { run_id: id, target_state: 'FAILED_TERMINAL' }));
    const report = await runTick(app, registry, { decision_mode: 'llm', run_id: id });
    expect(report.decisions[0]).toMatchObject({ outcome: 'refused', executed: false });
    expect(app.service.getRun(id).state).toBe('FAILED_RETRYABLE');
  });
});
