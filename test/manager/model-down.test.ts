import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createApp, type App } from '../../src/app.js';
import { Registry } from '../../src/registry.js';
import { runTick } from '../../src/manager/tick.js';
import { ModelHealth } from '../../src/manager/model-health.js';
import { TOOLS } from '../../tools/index.js';
import { makeTestApp, tempDir } from '../helpers/app.js';
import { FakeOpenAI, startFakeOpenAI, toolCall } from '../helpers/fake-openai.js';

const CLI = join(import.meta.dirname, '..', '..', 'dist', 'src', 'cli.js');
const registry = new Registry(TOOLS);

let fake: FakeOpenAI;
let app: App;
let cleanup: () => Promise<void>;

const env = (timeoutSec: string): NodeJS.ProcessEnv => fake.managerEnv(timeoutSec);

function planReady(a: App, repo: string): string {
  const id = a.service.createRun({ owner: 'acme', repo }).run_id;
  a.service.applyEvent({ run_id: id, event_type: 'command.start.discovery' });
  a.service.applyEvent({ run_id: id, event_type: 'worker.discovery.completed', payload: { contract_path: '/contracts/c.md' } });
  return id;
}

beforeAll(async () => {
  fake = await startFakeOpenAI();
});
afterAll(async () => {
  await fake.close();
});
beforeEach(() => {
  fake.requests.length = 0;
  fake.script.length = 0;
  fake.handler = undefined;
  ({ app, cleanup } = makeTestApp({ env: env('2') }));
});
afterEach(async () => {
  fake.handler = undefined;
  await cleanup();
});

describe('a model that is down', () => {
  it('costs one timeout per tick: a dry tick over 5 runs asks once, then the rules decide', async () => {
    const ids = ['a', 'b', 'c', 'd', 'e'].map((r) => planReady(app, r));
    fake.handler = () => ({ kind: 'hang' });
    const report = await runTick(app, registry, { decision_mode: 'hybrid', dry_run: true }, { modelHealth: new ModelHealth() });
    expect(fake.requests).toHaveLength(1);
    expect(report.decisions).toHaveLength(5);
    expect(report.decisions.map((d) => [d.action, d.outcome, d.source])).toEqual(ids.map(() => ['start_implementation', 'dry_run', 'rules']));
    expect(report.decisions[0]!.reason).toMatch(/model unavailable: .*timed out/i);
    for (const d of report.decisions.slice(1)) expect(d.reason).toMatch(/model not asked: the model failed \(.*timed out.*\); not asked again until /i);
    // One 2 s timeout, not five (the figure in the report is measured on this machine).
    expect(report.duration_ms).toBeLessThan(5 * 2000);
  });

  it('llm mode: after the failed request the rules decide for the other runs', async () => {
    planReady(app, 'a');
    planReady(app, 'b');
    fake.handler = () => ({ kind: 'error', status: 503, message: 'the model is overloaded' });
    const report = await runTick(app, registry, { decision_mode: 'llm', dry_run: true }, { modelHealth: new ModelHealth() });
    expect(fake.requests).toHaveLength(1);
    expect(report.decisions.map((d) => [d.outcome, d.source])).toEqual([
      ['skipped', 'model'],
      ['dry_run', 'rules'],
    ]);
  });

  it('a cool-down applies before the model is asked again', async () => {
    let now = Date.parse('2026-12-01T00:00:00Z');
    const health = new ModelHealth(() => now);
    const id = planReady(app, 'a');
    fake.reply({ kind: 'error', status: 500, message: 'upstream failure' });
    await runTick(app, registry, { decision_mode: 'hybrid', dry_run: true, run_id: id }, { modelHealth: health });
    expect(fake.requests).toHaveLength(1);
    now += 299_000; // policy manager.model_cooldown_sec defaults to 300
    const cooling = await runTick(app, registry, { decision_mode: 'hybrid', dry_run: true, run_id: id }, { modelHealth: health });
    expect(fake.requests).toHaveLength(1);
    expect(cooling.decisions[0]!.reason).toContain('not asked again until 2026-12-01T00:05:00.000Z');
    now += 2_000;
    fake.reply(toolCall('start-implementation', { run_id: id }));
    const back = await runTick(app, registry, { decision_mode: 'hybrid', dry_run: true, run_id: id }, { modelHealth: health });
    expect(fake.requests).toHaveLength(2);
    expect(back.decisions[0]).toMatchObject({ source: 'model', outcome: 'dry_run' });
  });

  it('a stop request aborts the model call in flight and starts nothing', async () => {
    const ids = [planReady(app, 'a'), planReady(app, 'b')];
    fake.handler = () => ({ kind: 'hang' });
    const stop = new AbortController();
    const t0 = Date.now();
    const tick = runTick(app, registry, { decision_mode: 'hybrid' }, { stopSignal: stop.signal, modelHealth: new ModelHealth() });
    await new Promise<void>((r) => {
      const poll = setInterval(() => fake.requests.length && (clearInterval(poll), r()), 10);
    });
    stop.abort();
    const report = await tick;
    expect(Date.now() - t0).toBeLessThan(2000 + 1500); // before the 2 s model timeout would have fired, with slack
    expect(report.stopped).toBe(true);
    expect(report.decisions).toHaveLength(1);
    expect(report.decisions[0]).toMatchObject({ outcome: 'stopped', executed: false });
    for (const id of ids) expect(app.service.getRun(id).state).toBe('PLAN_READY');
  });
});

describe('what the model is offered', () => {
  it('wait is never offered for run-agent-step, and a call that sets it is refused', async () => {
    const id = planReady(app, 'a');
    app.service.applyEvent({ run_id: id, event_type: 'command.start.implementation' });
    fake.reply(toolCall('run-agent-step', { run_id: id, prompt: 'fix it', wait: false }));
    const report = await runTick(app, registry, { decision_mode: 'llm', run_id: id, prompt: 'fix it' }, { modelHealth: new ModelHealth() });
    const offered = fake.requests[0]!.body.tools!.find((t) => t.function.name === 'run-agent-step')!;
    expect(Object.keys(offered.function.parameters!.properties as object)).not.toContain('wait');
    expect(report.decisions[0]).toMatchObject({ outcome: 'refused', executed: false });
    expect(report.decisions[0]!.model_proposal!.error).toMatch(/the model set 'wait' for run-agent-step, which this caller does not allow/);
    expect(app.service.getRun(id).state).toBe('IMPLEMENTING');
    expect(app.service.listDecisions(id)[0]).toMatchObject({ outcome: 'refused' });
  });

  it('hybrid: a refused proposal keeps its reason in the stored decision', async () => {
    const id = planReady(app, 'a');
    fake.reply(toolCall('start-implementation', { run_id: 'run_000000000000' }));
    const report = await runTick(app, registry, { decision_mode: 'hybrid', run_id: id, dry_run: true }, { modelHealth: new ModelHealth() });
    expect(report.decisions[0]!.model_proposal!.error).toBe(`the model called start-implementation for run_000000000000, not for ${id}`);
    const stored = app.service.listDecisions(id)[0]!;
    expect(JSON.stringify(stored.model_proposal)).toContain('not for');
  });
});

describe('run-manager-loop on SIGTERM', () => {
  it.skipIf(!existsSync(CLI))('exits promptly during a hung model call', async () => {
    const home = tempDir('agentpr-loop-');
    const seed = createApp({ home, logger: pino({ level: 'silent' }), env: { ...process.env, AGENTPR_POLICY_FILE: '' }, doctorGate: false });
    planReady(seed, 'widget');
    await seed.close();
    fake.handler = () => ({ kind: 'hang' });
    const child = spawn(process.execPath, [CLI, 'run-manager-loop', '--interval-sec', '300', '--decision-mode', 'hybrid'], {
      env: { ...process.env, ...env('60'), AGENTPR_HOME: home, AGENTPR_POLICY_FILE: '', AGENTPR_LOG_LEVEL: 'silent' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
    const guard = Date.now() + 30_000;
    while (fake.requests.length === 0 && Date.now() < guard) await new Promise((r) => setTimeout(r, 50));
    expect(fake.requests).toHaveLength(1);
    const t0 = Date.now();
    child.kill('SIGTERM');
    const code = await exited;
    const elapsed = Date.now() - t0;
    expect(code).toBe(0);
    expect(stderr).toMatch(/manager loop stopped after 1 tick\(s\)/);
    // The model's timeout is 60 s; the loop ends long before it (about 0.1-0.3 s here).
    expect(elapsed).toBeLessThan(10_000);
  }, 60_000);
});
