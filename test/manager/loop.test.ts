import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { createApp } from '../../src/app.js';
import { RefusedError, Registry } from '../../src/registry.js';
import { runManagerLoop } from '../../src/manager/loop.js';
import { parseLoopArgs } from '../../src/commands/run-manager-loop.js';
import { TOOLS } from '../../tools/index.js';
import { makeTestApp, tempDir } from '../helpers/app.js';

const FAKE_CODEX = resolve('test/fixtures/bin/fake-codex');
const CLI = join(import.meta.dirname, '..', '..', 'dist', 'src', 'cli.js');
const registry = new Registry(TOOLS);

function planReady(app: ReturnType<typeof makeTestApp>['app'], repo: string): string {
  const id = app.service.createRun({ owner: 'acme', repo }).run_id;
  app.service.applyEvent({ run_id: id, event_type: 'command.start.discovery' });
  app.service.applyEvent({ run_id: id, event_type: 'worker.discovery.completed', payload: { contract_path: '/c.md' } });
  return id;
}

describe('run-manager-loop', () => {
  it('a stop request lets the current action finish and starts no other', async () => {
    const { app, cleanup } = makeTestApp({ env: { AGENTPR_CODEX_BIN: FAKE_CODEX } });
    try {
      const first = planReady(app, 'first');
      const second = planReady(app, 'second');
      const stop = new AbortController();
      // The stop arrives while the first action is in flight (as a signal would).
      app.preCallHooks.push((tool) => {
        if (tool.name === 'start-implementation') stop.abort();
      });
      const ticks: unknown[] = [];
      const summary = await runManagerLoop(app, registry, { intervalSec: 60, tick: {}, stopSignal: stop.signal, onTick: (_, o) => ticks.push(o) });
      expect(summary).toEqual({ loops: 1, failed_ticks: 0, stopped: true });
      const states = [app.service.getRun(first).state, app.service.getRun(second).state].sort();
      expect(states).toEqual(['IMPLEMENTING', 'PLAN_READY']);
      const stopped = [...app.service.listDecisions(first), ...app.service.listDecisions(second)].filter((d) => d.outcome === 'stopped');
      expect(stopped).toHaveLength(1);
      expect(stopped[0]!.action).toBe('start_implementation');
    } finally {
      await cleanup();
    }
  });

  it('a failed tick is logged and the loop goes on', async () => {
    const { app, cleanup } = makeTestApp({ env: { AGENTPR_CODEX_BIN: FAKE_CODEX } });
    try {
      const id = planReady(app, 'widget');
      let refusals = 1;
      app.preCallHooks.push((tool) => {
        if (tool.name === 'manager-tick' && refusals-- > 0) throw new RefusedError('doctor: git is missing');
      });
      const codes: string[] = [];
      const summary = await runManagerLoop(app, registry, {
        intervalSec: 0,
        maxLoops: 2,
        tick: {},
        stopSignal: new AbortController().signal,
        onTick: (_, o) => codes.push(o.ok ? 'ok' : o.code),
      });
      expect(codes).toEqual(['refused', 'ok']);
      expect(summary).toEqual({ loops: 2, failed_ticks: 1, stopped: false });
      expect(app.service.getRun(id).state).toBe('IMPLEMENTING');
    } finally {
      await cleanup();
    }
  });

  it('parses its options and refuses bad ones with the value', () => {
    expect(parseLoopArgs(['--interval-sec', '5', '--max-loops=3', '--decision-mode', 'hybrid', '--dry-run', '--prompt', 'go'])).toEqual({
      intervalSec: 5,
      maxLoops: 3,
      json: false,
      tick: { decision_mode: 'hybrid', dry_run: true, prompt: 'go' },
    });
    expect(parseLoopArgs(['--limit', '5', '--disable-auto-contract', '--contract-template-file', 'tpl.md']).tick).toEqual({
      decision_mode: 'rules',
      limit: 5,
      disable_auto_contract: true,
      contract_template_file: 'tpl.md',
    });
    expect(() => parseLoopArgs(['--decision-mode', 'vibes'])).toThrow(/rules, llm, hybrid, got 'vibes'/);
    expect(() => parseLoopArgs(['--max-loops', '0'])).toThrow(/--max-loops expects a whole number >= 1, got '0'/);
    expect(() => parseLoopArgs(['--run-id', 'Run X'])).toThrow(/got 'Run X'/);
    expect(() => parseLoopArgs(['--bogus'])).toThrow(/unknown option --bogus/);
  });

  it.skipIf(!existsSync(CLI))('the built CLI stops cleanly on SIGTERM while it sleeps between ticks', async () => {
    const home = tempDir('agentpr-loop-');
    const app = createApp({ home, logger: pino({ level: 'silent' }), env: { ...process.env, AGENTPR_POLICY_FILE: '' }, doctorGate: false });
    const id = planReady(app as ReturnType<typeof makeTestApp>['app'], 'widget');
    await app.close();

    const child = spawn(process.execPath, [CLI, 'run-manager-loop', '--interval-sec', '300', '--jsonl'], {
      env: { ...process.env, AGENTPR_HOME: home, AGENTPR_POLICY_FILE: '', AGENTPR_CODEX_BIN: FAKE_CODEX, AGENTPR_LOG_LEVEL: 'silent' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const firstTick = new Promise<void>((res) =>
      child.stdout.on('data', (c: Buffer) => {
        stdout += c.toString();
        if (stdout.includes('\n')) res();
      }),
    );
    const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
    await firstTick;
    const tick = JSON.parse(stdout.split('\n')[0]!) as { tick_id: string; actions_executed: number };
    expect(tick.actions_executed).toBe(1);
    child.kill('SIGTERM');
    // It exits at once (the 300 s sleep is interrupted), with status 0.
    expect(await exited).toBe(0);
    expect(stderr).toMatch(/manager loop stopped after 1 tick\(s\), 0 failed/);

    const after = createApp({ home, logger: pino({ level: 'silent' }), env: { ...process.env, AGENTPR_POLICY_FILE: '' }, doctorGate: false });
    try {
      expect(after.service.getRun(id).state).toBe('IMPLEMENTING');
      expect(after.service.listDecisions(id).map((d) => d.tick_id)).toContain(tick.tick_id);
    } finally {
      await after.close();
    }
  });
});
