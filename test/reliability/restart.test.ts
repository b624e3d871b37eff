import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, expect, test } from 'vitest';
import { Client } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { textOf, type ToolCallResult } from '../helpers/mcp.js';
import { alive, makeHarness, preparedRun, scenario, toImplementing, waitFor, type Harness } from '../worker/harness.js';
import type { AttemptView, RunView } from '../../src/core/models.js';
import { attemptOwnerMetadata, procStart, reconcileOrphanedAttempts } from '../../src/worker/reconcile.js';

/**
 * Issue 9: a restarted server reconciles orphaned attempts. A real `agentpr run-agent-step` (the
 * built CLI) starts the agent attempt of a run in IMPLEMENTING and is SIGKILLed while its worker
 * runs. The attempt row still says `running` and nothing in that process can close it. The built
 * MCP stdio server, started afterwards on the same data home, must close it as failed with reason
 * orchestrator_restarted, move the run per policy and end the dead orchestrator's worker processes;
 * an MCP client's show-run shows it.
 */

const ROOT = join(import.meta.dirname, '..', '..');
const CLI = join(ROOT, 'dist', 'src', 'cli.js');
const STDIO_BIN = join(ROOT, 'dist', 'src', 'mcp', 'stdio.js');

let h: Harness | undefined;
const children: ChildProcess[] = [];
const groups: number[] = [];
afterEach(async () => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  // The killed orchestrator's worker ran in its own process group; end it whatever happened.
  for (const g of groups.splice(0)) {
    try {
      process.kill(-g, 'SIGKILL');
    } catch {
      // gone
    }
  }
  await h?.cleanup();
  h = undefined;
});

function stringEnv(env: NodeJS.ProcessEnv): Record<string, string> {
  return Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined));
}

/**
 * Starts `agentpr run-agent-step RUN` with the hanging fake worker and SIGKILLs the CLI process at a
 * random moment once its worker is running. Returns the CLI's pid and the worker's pids.
 */
async function killMidStep(h: Harness, runId: string, pidsFile: string): Promise<{ owner: number; worker: { parent: number; child: number } }> {
  const env = { ...stringEnv(h.app.env), FAKE_CODEX_SCENARIO: scenario('hang'), FAKE_CODEX_PIDS_FILE: pidsFile, AGENTPR_LOG_LEVEL: 'silent' };
  const child = spawn(process.execPath, [CLI, '--home', h.home, 'run-agent-step', runId, '--prompt', 'Run the watcher.', '--max-agent-seconds', '600'], {
    env,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  children.push(child);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
  await waitFor(`the worker of ${runId} to start (CLI stderr: ${stderr})`, () => existsSync(pidsFile) && readFileSync(pidsFile, 'utf8').length > 0);
  const worker = JSON.parse(readFileSync(pidsFile, 'utf8')) as { parent: number; child: number };
  groups.push(worker.parent);
  await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 300)));
  child.kill('SIGKILL');
  expect(await exited).toBe('SIGKILL');
  return { owner: child.pid!, worker };
}

async function startStdioServer(home: string, env: Record<string, string>): Promise<{ client: Client; stderr: () => string }> {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [STDIO_BIN],
    env: { ...env, AGENTPR_HOME: home, AGENTPR_LOG_LEVEL: 'info' },
    stderr: 'pipe',
  });
  let stderr = '';
  transport.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const client = new Client({ name: 'restart-test', version: '1.0.0' });
  await client.connect(transport);
  return { client, stderr: () => stderr };
}

async function showRun(client: Client, runId: string): Promise<{ run: RunView; attempts: AttemptView[] }> {
  const r = (await client.callTool({ name: 'show-run', arguments: { run_id: runId } })) as ToolCallResult;
  expect(r.isError, textOf(r)).toBeFalsy();
  return r.structuredContent as { run: RunView; attempts: AttemptView[] };
}

test('a CLI killed with SIGKILL mid agent step: the restarted MCP server fails the attempt (orchestrator_restarted) and moves each run per policy', async () => {
  h = makeHarness();
  const plain = await preparedRun(h, 'demo');
  await toImplementing(h, plain.runId);
  const strict = await preparedRun(h, 'strict');
  await toImplementing(h, strict.runId);

  const killed = await Promise.all([
    killMidStep(h, plain.runId, join(h.tmp, 'pids-demo.json')),
    killMidStep(h, strict.runId, join(h.tmp, 'pids-strict.json')),
  ]);

  // The orchestrators are dead; their attempts say running, and nothing closed them.
  for (const [i, { runId }] of [plain, strict].entries()) {
    const running = h.app.service.listAttempts(runId, 'agent');
    expect(running).toHaveLength(1);
    expect(running[0]).toMatchObject({ status: 'running', finished_at: null });
    expect(running[0]!.metadata.owner_pid).toBe(killed[i]!.owner);
    expect(h.app.service.getRun(runId).state).toBe('IMPLEMENTING');
  }

  // The restarted server reads a policy that sends one repository to human review instead.
  const policyFile = join(h.tmp, 'restart-policy.json');
  writeFileSync(policyFile, JSON.stringify({ run_agent_step: { repo_overrides: { 'octo/strict': { on_retryable_state: 'NEEDS_HUMAN_REVIEW' } } } }));
  const server = await startStdioServer(h.home, { ...stringEnv(h.app.env), AGENTPR_POLICY_FILE: policyFile });
  try {
    const a = await showRun(server.client, plain.runId);
    expect(a.run.state).toBe('FAILED_RETRYABLE');
    expect(a.run.last_error).toMatch(/^agent:orchestrator_restarted:agent attempt 1 was left running \(owner pid \d+ is gone\); closed at startup, its worker \(process group \d+\) killed$/);
    const attempt = a.attempts.find((x) => x.step === 'agent')!;
    expect(attempt).toMatchObject({ status: 'failed', reason_code: 'orchestrator_restarted' });
    expect(attempt.finished_at).not.toBeNull();
    expect(attempt.metadata).toMatchObject({ worker_pid: killed[0]!.worker.parent, reconciled: { worker_killed: killed[0]!.worker.parent } });

    const b = await showRun(server.client, strict.runId);
    expect(b.run.state).toBe('NEEDS_HUMAN_REVIEW');
    expect(b.attempts.find((x) => x.step === 'agent')).toMatchObject({ status: 'failed', reason_code: 'orchestrator_restarted' });

    // The run is usable again: retry is accepted from FAILED_RETRYABLE.
    const retried = (await server.client.callTool({ name: 'retry', arguments: { run_id: plain.runId, target_state: 'IMPLEMENTING' } })) as ToolCallResult;
    expect(retried.isError, textOf(retried)).toBeFalsy();
    expect(server.stderr()).toContain('closed an orphaned step attempt');
  } finally {
    await server.client.close();
  }
  // The dead orchestrator's workers (the timer that would have ended them died with it) and their
  // children were ended by the restart: a retry must not share the clone with them.
  const pids = killed.flatMap((k) => [k.worker.parent, k.worker.child]);
  await waitFor(`the orphaned workers ${pids.join(', ')} to be gone`, () => pids.every((pid) => !alive(pid)), 5_000).catch(() => undefined);
  expect(pids.filter((pid) => alive(pid)), 'worker processes still running after the restart').toEqual([]);
});

test.runIf(existsSync('/proc/self/stat'))('the restart kills only a group that is provably the dead owner\'s worker, never a process that reuses its pid', async () => {
  h = makeHarness();
  const deadOwner = spawnSync(process.execPath, ['-e', '']).pid!;
  const start = (): number => {
    const c = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1e6)'], { detached: true, stdio: 'ignore' });
    children.push(c);
    groups.push(c.pid!);
    return c.pid!;
  };
  const worker = start();
  const stranger = start();
  const attemptFor = (repo: string, workerPid: number, procStartValue: string | undefined) => {
    const id = h!.app.service.createRun({ owner: 'octo', repo }).run_id;
    h!.app.service.applyEvent({ run_id: id, event_type: 'command.start.discovery' });
    return h!.app.service.startAttempt(id, 'agent', { ...attemptOwnerMetadata(), owner_pid: deadOwner, worker_pid: workerPid, worker_proc_start: procStartValue }, { lease: false });
  };
  const mine = attemptFor('mine', worker, procStart(worker));
  // The pid now belongs to another process (another start time): not ours to kill.
  const reused = attemptFor('reused', stranger, '1');
  const done = reconcileOrphanedAttempts(h.app);
  expect(done.map((d) => d.attempt_id).sort()).toEqual([mine.attempt_id, reused.attempt_id].sort());
  expect(h.app.service.attemptById(mine.attempt_id).metadata).toMatchObject({ reconciled: { worker_killed: worker } });
  expect(h.app.service.attemptById(reused.attempt_id).metadata).toMatchObject({ reconciled: { worker_killed: null } });
  await waitFor('the orphaned worker to be gone', () => !alive(worker), 5_000).catch(() => undefined);
  expect(alive(worker)).toBe(false);
  expect(alive(stranger)).toBe(true);
});
