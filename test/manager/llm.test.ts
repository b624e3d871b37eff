import { resolve } from 'node:path';
import { writeFileSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { App } from '../../src/app.js';
import { Registry } from '../../src/registry.js';
import { runTick } from '../../src/manager/tick.js';
import { ModelHealth } from '../../src/manager/model-health.js';
import { TOOLS } from '../../tools/index.js';
import { makeTestApp } from '../helpers/app.js';
import { FakeOpenAI, errorReply, textReply, toolCall, startFakeOpenAI } from '../helpers/fake-openai.js';

const FAKE_CODEX = resolve('test/fixtures/bin/fake-codex');
const registry = new Registry(TOOLS);

let fake: FakeOpenAI;
let app: App;
let cleanup: () => Promise<void>;

beforeAll(async () => {
  fake = await startFakeOpenAI();
});
afterAll(async () => {
  await fake.close();
});
beforeEach(() => {
  fake.requests.length = 0;
  fake.script.length = 0;
  // Generous for the answered calls on a loaded machine; the timeout test's model never answers.
  ({ app, cleanup } = makeTestApp({ env: fake.managerEnv('3') }));
});
afterEach(async () => {
  await cleanup();
});

function planReady(): string {
  const id = app.service.createRun({ owner: 'acme', repo: 'widget' }).run_id;
  app.service.applyEvent({ run_id: id, event_type: 'command.start.discovery' });
  app.service.applyEvent({ run_id: id, event_type: 'worker.discovery.completed', payload: { contract_path: '/contracts/c.md' } });
  return id;
}

function failedRetryable(): string {
  const id = app.service.createRun({ owner: 'acme', repo: 'gadget' }).run_id;
  app.service.applyEvent({ run_id: id, event_type: 'command.start.discovery' });
  app.service.applyEvent({ run_id: id, event_type: 'worker.step.failed', payload: { step: 'prepare', reason_code: 'script_failed', error_message: 'network down' } });
  return id;
}

describe('manager LLM (function calling over the registry)', () => {
  it('llm mode: executes the model\'s valid call through the registry, with the digest as context', async () => {
    const id = planReady();
    const digestPath = resolve(app.config.reportsDir, 'digest.json');
    writeFileSync(digestPath, JSON.stringify({ classification: { grade: 'PASS', reason_code: 'runtime_success' }, manager_recommendation: { action: 'advance', priority: 'normal' } }));
    app.service.addArtifact(id, { type: 'run_digest', uri: digestPath });
    fake.reply(toolCall('start-implementation', { run_id: id }, 'The plan is ready; implement it.'));
    fake.reply(textReply('No prompt is available, so a person should provide one.'));

    const report = await runTick(app, registry, { decision_mode: 'llm', run_id: id });

    expect(report.decisions[0]).toMatchObject({
      action: 'start_implementation',
      tool: 'start-implementation',
      source: 'model',
      outcome: 'executed',
      state_after: 'IMPLEMENTING',
      disagreement: false,
    });
    expect(report.decisions[0]!.reason).toContain('The plan is ready');
    expect(report.decisions[0]!.model_proposal).toMatchObject({ model: 'manager-test-model', tool: 'start-implementation', args: { run_id: id } });
    // Then IMPLEMENTING: the model answered without a tool call -> wait for a person.
    expect(report.decisions[1]).toMatchObject({ state: 'IMPLEMENTING', action: 'wait_human', source: 'model', outcome: 'waiting' });
    expect(app.service.getRun(id).state).toBe('IMPLEMENTING');

    const req = fake.requests[0]!.body;
    expect(req.model).toBe('manager-test-model');
    const offered = (req.tools ?? []).map((t) => t.function.name).sort();
    expect(offered).toEqual(['mark-plan-ready', 'retry', 'start-discovery', 'start-implementation', 'sync-github', ...offered.filter((n) => ['run-prepare', 'run-agent-step', 'run-finish'].includes(n))].sort());
    expect(offered).not.toContain('approve-open-pr');
    expect(offered).not.toContain('manager-tick');
    expect(offered).not.toContain('apply-event');
    // The same JSON Schema MCP clients see, minus fields the model may not set.
    const retry = req.tools!.find((t) => t.function.name === 'retry')!;
    expect(Object.keys(retry.function.parameters!.properties as object)).toEqual(['run_id', 'target_state']);
    const user = String(req.messages[1]!.content);
    expect(user).toContain(id);
    expect(user).toContain('runtime_success');
    expect(user).toContain('PLAN_READY');

    const stored = app.service.listDecisions(id);
    expect(stored.at(-1)).toMatchObject({ mode: 'llm', source: 'model', executed: true, action: 'start_implementation' });
    expect(stored.at(-1)!.model_proposal).toMatchObject({ tool: 'start-implementation' });
  });

  it('hybrid: a call that disagrees with the rules is overruled and the disagreement recorded', async () => {
    const id = planReady();
    fake.reply(toolCall('retry', { run_id: id, target_state: 'DISCOVERY' }));
    const report = await runTick(app, registry, { decision_mode: 'hybrid', run_id: id, max_actions: 1 });
    expect(report.decisions[0]).toMatchObject({
      action: 'start_implementation',
      source: 'rules',
      outcome: 'executed',
      disagreement: true,
      model_proposal: expect.objectContaining({ tool: 'retry', action: 'retry' }),
    });
    expect(report.decisions[0]!.reason).toMatch(/disagrees with the rules; rules win/);
    expect(app.service.getRun(id).state).toBe('IMPLEMENTING');
    expect(app.service.listDecisions(id).at(-1)).toMatchObject({ action: 'start_implementation', disagreement: true, source: 'rules', mode: 'hybrid' });
  });

  it('hybrid: a call that agrees is executed as the model made it', async () => {
    const id = failedRetryable();
    fake.reply(toolCall('retry', { run_id: id, target_state: 'DISCOVERY' }, 'prepare failed on the network; retry'));
    const report = await runTick(app, registry, { decision_mode: 'hybrid', run_id: id, max_actions: 1 });
    expect(report.decisions[0]).toMatchObject({ action: 'retry', source: 'model', outcome: 'executed', disagreement: false, state_after: 'DISCOVERY' });
  });

  it('llm: malformed arguments are refused by the tool schema and never executed', async () => {
    const id = failedRetryable();
    fake.reply(toolCall('retry', { run_id: id, target_state: 'SOMEWHERE' }));
    const report = await runTick(app, registry, { decision_mode: 'llm', run_id: id });
    expect(report.decisions).toHaveLength(1);
    expect(report.decisions[0]).toMatchObject({ action: 'retry', source: 'model', outcome: 'refused', executed: false });
    expect(report.decisions[0]!.error).toMatch(/the model set target_state="SOMEWHERE" \(rules: "DISCOVERY"\)/);
    expect(report.actions_executed).toBe(0);
    expect(app.service.getRun(id).state).toBe('FAILED_RETRYABLE');
    expect(app.service.listEvents(id).map((e) => e.event_type)).not.toContain('command.retry');
  });

  it('llm: arguments that are not JSON, a tool not offered, or another run are refused', async () => {
    const id = failedRetryable();
    const other = planReady();
    fake.reply(toolCall('retry', `{"run_id": "${id}", "target_state": `));
    fake.reply(toolCall('pause', { run_id: id }));
    fake.reply(toolCall('retry', { run_id: other, target_state: 'IMPLEMENTING' }));
    const errors: string[] = [];
    for (let i = 0; i < 3; i++) {
      const report = await runTick(app, registry, { decision_mode: 'llm', run_id: id });
      expect(report.decisions[0]).toMatchObject({ outcome: 'refused', executed: false });
      errors.push(report.decisions[0]!.error ?? '');
    }
    expect(errors[0]).toMatch(/not valid JSON/);
    expect(errors[1]).toMatch(/'pause', which was not offered/);
    expect(errors[2]).toMatch(new RegExp(`for ${other}, not for ${id}`));
    expect(app.service.getRun(id).state).toBe('FAILED_RETRYABLE');
    expect(app.service.getRun(other).state).toBe('PLAN_READY');
  });

  it('hybrid: malformed arguments are refused and the rules decide instead', async () => {
    const id = failedRetryable();
    fake.reply(toolCall('retry', { run_id: id, target_state: 'SOMEWHERE' }));
    const report = await runTick(app, registry, { decision_mode: 'hybrid', run_id: id, max_actions: 1 });
    expect(report.decisions[0]).toMatchObject({ action: 'retry', args: { run_id: id, target_state: 'DISCOVERY' }, source: 'rules', outcome: 'executed' });
    expect(report.decisions[0]!.model_proposal!.error).toMatch(/the model set target_state="SOMEWHERE"/);
    expect(report.decisions[0]).toMatchObject({ disagreement: true });
    expect(app.service.getRun(id).state).toBe('DISCOVERY');
  });

  it('hybrid: a model timeout falls back to the rules; llm: an API error skips the run', async () => {
    const id = planReady();
    fake.reply({ kind: 'hang' });
    const hybrid = await runTick(app, registry, { decision_mode: 'hybrid', run_id: id, max_actions: 1 });
    expect(hybrid.decisions[0]).toMatchObject({ action: 'start_implementation', source: 'rules', outcome: 'executed' });
    expect(hybrid.decisions[0]!.model_proposal!.error).toMatch(/request failed: .*timed out/i);
    expect(hybrid.decisions[0]!.reason).toMatch(/model unavailable/);

    const other = planReady();
    fake.reply(errorReply(500, 'the model is overloaded'));
    // A fresh health record: the shared one is cooling down after the timeout above.
    const llm = await runTick(app, registry, { decision_mode: 'llm', run_id: other }, { modelHealth: new ModelHealth() });
    expect(llm.decisions[0]).toMatchObject({ outcome: 'skipped', executed: false, source: 'model' });
    expect(llm.decisions[0]!.error).toMatch(/model request failed: .*overloaded/);
    expect(app.service.getRun(other).state).toBe('PLAN_READY');
  });

  it('llm: a step the rules do not allow for the run is refused, and the model is not asked again this tick', async () => {
    const id = app.service.createRun({ owner: 'acme', repo: 'loop' }).run_id;
    app.service.applyEvent({ run_id: id, event_type: 'command.start.discovery' });
    fake.handler = () => toolCall('start-discovery', { run_id: id });
    try {
      const report = await runTick(app, registry, { decision_mode: 'llm', run_id: id });
      expect(report.decisions.map((d) => [d.action, d.outcome, d.state_after])).toEqual([['run_prepare', 'refused', null]]);
      expect(report.decisions[0]!.error).toMatch(/the rules allow run-prepare for .* in DISCOVERY, not start-discovery/);
      expect(fake.requests).toHaveLength(1);
    } finally {
      fake.handler = undefined;
    }
  });

  it('llm/hybrid without an API key is a configuration error naming the variable', async () => {
    const { app: bare, cleanup: done } = makeTestApp({ env: { AGENTPR_CODEX_BIN: FAKE_CODEX, AGENTPR_MANAGER_API_KEY: '' } });
    try {
      const outcome = await registry.call('manager-tick', { decision_mode: 'hybrid' }, { app: bare, entry: 'cli' });
      expect(outcome).toMatchObject({ ok: false, code: 'configuration' });
      if (!outcome.ok) expect(outcome.error).toMatch(/AGENTPR_MANAGER_API_KEY/);
    } finally {
      await done();
    }
  });

  it('dry run in llm mode: the model picks the step, the rules give its arguments; nothing is executed', async () => {
    const id = failedRetryable();
    fake.reply(toolCall('retry', { run_id: id }));
    const report = await runTick(app, registry, { decision_mode: 'llm', run_id: id, dry_run: true });
    expect(report.decisions[0]).toMatchObject({ outcome: 'dry_run', executed: false, source: 'model', args: { run_id: id, target_state: 'DISCOVERY' } });
    expect(app.service.getRun(id).state).toBe('FAILED_RETRYABLE');
  });
});
