import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { connectInMemory, textOf, type ToolCallResult } from '../helpers/mcp.js';
import { alive, makeHarness, preparedRun, scenario, toImplementing, waitFor, type Harness } from './harness.js';

let h: Harness | undefined;
let close: (() => Promise<void>) | undefined;
afterEach(async () => {
  await close?.();
  await h?.cleanup();
  h = undefined;
  close = undefined;
});

async function hangingRun(): Promise<{ runId: string; pids: string }> {
  h = makeHarness();
  const { runId } = await preparedRun(h);
  await toImplementing(h, runId);
  const pids = join(h.tmp, 'pids.json');
  h.setEnv({ FAKE_CODEX_SCENARIO: scenario('hang'), FAKE_CODEX_PIDS_FILE: pids });
  return { runId, pids };
}

const workerPids = (file: string) => JSON.parse(readFileSync(file, 'utf8')) as { parent: number; child: number };

describe('long agent steps over MCP', () => {
  test('a waiting call answers before a 5 s client timeout with the attempt id; the step goes on and pause stops it', async () => {
    const { runId, pids } = await hangingRun();
    const c = await connectInMemory(h!.app);
    close = c.close;
    const r = (await c.client.callTool(
      { name: 'run-agent-step', arguments: { run_id: runId, prompt: 'Run the watcher.', max_agent_seconds: 600, return_after_seconds: 1 } },
      { timeout: 5_000 },
    )) as ToolCallResult;
    expect(r.isError, textOf(r)).toBeFalsy();
    expect(r.structuredContent).toMatchObject({ run_id: runId, attempt_no: 1, status: 'running' });
    expect(textOf(r)).toContain('still running after 1 s');
    // The worker is still at work after the answer.
    await waitFor('worker pids', () => existsSync(pids));
    const { parent } = workerPids(pids);
    expect(alive(parent)).toBe(true);
    const inspected = (await c.client.callTool({ name: 'inspect-run', arguments: { run_id: runId } })) as ToolCallResult;
    expect(JSON.stringify(inspected.structuredContent)).toContain('"active"');
    await c.client.callTool({ name: 'pause', arguments: { run_id: runId } });
    await waitFor('worker stopped', () => !alive(parent), 30_000);
    await waitFor('attempt closed', () => h!.app.service.listAttempts(runId, 'agent')[0]?.status === 'failed', 30_000);
    expect(h!.app.service.getRun(runId).state).toBe('PAUSED');
  });

  test('cancelling the waiting call stops the worker: attempt cancelled, run FAILED_RETRYABLE, no process left', async () => {
    const { runId, pids } = await hangingRun();
    const c = await connectInMemory(h!.app);
    close = c.close;
    const controller = new AbortController();
    const call = c.client.callTool(
      { name: 'run-agent-step', arguments: { run_id: runId, prompt: 'Run the watcher.', max_agent_seconds: 600, return_after_seconds: 300 } },
      { signal: controller.signal },
    );
    const settled = call.then(
      () => 'answered',
      () => 'rejected',
    );
    await waitFor('worker pids', () => existsSync(pids), 30_000);
    const { parent, child } = workerPids(pids);
    expect(alive(parent)).toBe(true);
    controller.abort('the person pressed stop');
    expect(await settled).toBe('rejected');
    await waitFor('worker stopped', () => !alive(parent) && !alive(child), 30_000);
    const attempt = await waitFor('attempt closed', () => {
      const a = h!.app.service.listAttempts(runId, 'agent')[0];
      return a && a.status !== 'running' ? a : undefined;
    }, 30_000);
    expect(attempt).toMatchObject({ status: 'failed', reason_code: 'cancelled' });
    const run = h!.app.service.getRun(runId);
    expect(run.state).toBe('FAILED_RETRYABLE');
    expect(run.last_error).toContain('cancelled');
  });
});
