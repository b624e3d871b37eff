import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, test } from 'vitest';
import { Client, InMemoryTransport, ProtocolError, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { createTaskSessionFromClient, resultFromTaskOutcome, toolDeclarationFromMcpTool, type TaskEnabledSession } from '@modelcontextprotocol/ext-tasks/client';
import { CreateTaskResultV1Schema, GetTaskResultV1Schema, ListTasksResultV1Schema, TaskStatusNotificationV1Schema } from '@modelcontextprotocol/ext-tasks/core/v1';
import { z } from 'zod';
import { createMcpServer } from '../../src/mcp/server.js';
import { connectInMemory } from '../helpers/mcp.js';
import { makeTestApp } from '../helpers/app.js';
import { taskStore } from '../../src/mcp/tasks.js';
import { startHttpServer } from '../../src/mcp/http.js';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { alive, makeHarness, preparedRun, scenario, toImplementing, waitFor, type Harness } from './harness.js';

let h: Harness | undefined;
const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c().catch(() => undefined);
  await h?.cleanup();
  h = undefined;
});

/** The real SDK client over the in-memory pair, with every message the server sent recorded. */
async function connect(harness: Harness): Promise<{ client: Client; seen: Array<{ method?: string; params?: Record<string, unknown> }> }> {
  const server = createMcpServer(harness.app, { notifyChanges: true });
  const [serverSide, clientSide] = InMemoryTransport.createLinkedPair();
  await server.connect(serverSide);
  const client = new Client({ name: 'agentpr-task-test', version: '1.0.0' });
  await client.connect(clientSide);
  const seen: Array<{ method?: string; params?: Record<string, unknown> }> = [];
  const deliver = clientSide.onmessage!;
  // Through JSON, as on a real wire (the in-memory pair hands objects over as they are, undefined fields included).
  clientSide.onmessage = (message, extra) => {
    const wire = JSON.parse(JSON.stringify(message)) as typeof message;
    seen.push(wire as { method?: string; params?: Record<string, unknown> });
    deliver(wire, extra);
  };
  closers.push(async () => {
    await client.close();
    await server.close();
  });
  return { client, seen };
}

async function session(client: Client): Promise<TaskEnabledSession> {
  const s = createTaskSessionFromClient(client, { endpointId: 'agentpr-test' });
  closers.push(() => s.close());
  return s;
}

async function declarationOf(client: Client, name: string) {
  const tool = (await client.listTools()).tools.find((t) => t.name === name);
  if (!tool) throw new Error(`${name} not listed`);
  return toolDeclarationFromMcpTool(tool);
}

const STDIO_BIN = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'dist', 'src', 'mcp', 'stdio.js');
const workerPids = (file: string) => JSON.parse(readFileSync(file, 'utf8')) as { parent: number; child: number };
type CallResult = { isError?: boolean; content: Array<{ type: string; text?: string }>; structuredContent?: Record<string, unknown> };

async function implementingRun(env: Record<string, string>): Promise<string> {
  h = makeHarness();
  const { runId } = await preparedRun(h);
  await toImplementing(h, runId);
  h.setEnv(env);
  return runId;
}

describe('long steps as MCP tasks (2025-11-25 Tasks)', () => {
  test('the server declares tasks for tools/call, and only the long tools say taskSupport optional', async () => {
    h = makeHarness();
    const { client } = await connect(h);
    expect(client.getServerCapabilities()?.tasks).toEqual({ list: {}, cancel: {}, requests: { tools: { call: {} } } });
    const tools = (await client.listTools()).tools;
    const byName = new Map(tools.map((t) => [t.name, t]));
    for (const name of ['run-agent-step', 'run-prepare', 'run-finish', 'sync-github', 'manager-tick']) {
      expect(byName.get(name)?.execution, name).toEqual({ taskSupport: 'optional' });
    }
    expect(byName.get('create-run')?.execution).toBeUndefined();
    expect(byName.get('run-agent-step')?.description).toContain('as an MCP task');
    // A read-only server lists none of the task tools, so it declares no tasks.
    const readOnly = await connectInMemory(h.app, { readOnly: true });
    closers.push(readOnly.close);
    expect(readOnly.client.getServerCapabilities()?.tasks).toBeUndefined();
  });

  test('a task-based run-agent-step outlives a 5 s client request timeout and completes with the verdict', async () => {
    // implement-pass with 700 ms between lines: the worker needs well over 5 s.
    const runId = await implementingRun({ FAKE_CODEX_SCENARIO: scenario('implement-pass'), FAKE_CODEX_LINE_DELAY_MS: '700' });
    const { client, seen } = await connect(h!);
    const tasks = await session(client);
    const began = Date.now();
    const execution = await tasks.callTool(
      'run-agent-step',
      { run_id: runId, prompt: 'Append the greeting and run the tests.', max_agent_seconds: 600 },
      { declaration: await declarationOf(client, 'run-agent-step'), task: { preference: 'require' }, requestTimeoutMs: 5_000 },
    );
    expect(execution.kind).toBe('task');
    const statuses: string[] = [];
    const { outcome } = await execution.settle({
      onEvent: (e) => {
        if (e.type === 'task') statuses.push(`${e.task.status}: ${e.task.statusMessage ?? ''}`);
      },
    });
    const elapsed = Date.now() - began;
    expect(elapsed).toBeGreaterThan(5_000);
    const result = resultFromTaskOutcome(outcome) as CallResult;
    expect(result.isError).toBeFalsy();
    expect(result.structuredContent).toMatchObject({ run_id: runId, attempt_no: 1, status: 'finished', grade: 'PASS', state_before: 'IMPLEMENTING', state_after: 'LOCAL_VALIDATING' });
    expect(result.content[0]?.text).toContain(`${runId}: agent#1 PASS`);
    expect(h!.app.service.getRun(runId).state).toBe('LOCAL_VALIDATING');
    // While it worked, the task named the attempt it follows; then it completed.
    expect(statuses.some((s) => s.startsWith(`working: `) && s.includes('agent#1'))).toBe(true);

    // On the wire: a CreateTaskResult first, the status notification at the end, the result tied to the task.
    const created = seen.map((m) => CreateTaskResultV1Schema.safeParse((m as { result?: unknown }).result)).find((p) => p.success);
    expect(created?.data?.task).toMatchObject({ status: 'working', pollInterval: 1000 });
    const taskId = created!.data!.task.taskId;
    const note = seen.find((m) => m.method === 'notifications/tasks/status');
    expect(TaskStatusNotificationV1Schema.parse(note).params).toMatchObject({ taskId, status: 'completed' });
    const again = await client.request({ method: 'tasks/result', params: { taskId } }, z.looseObject({ structuredContent: z.record(z.string(), z.unknown()), _meta: z.record(z.string(), z.unknown()) }));
    expect(again.structuredContent).toMatchObject({ grade: 'PASS' });
    expect(again._meta['io.modelcontextprotocol/related-task']).toEqual({ taskId });
    const got = GetTaskResultV1Schema.parse(await client.request({ method: 'tasks/get', params: { taskId } }, z.looseObject({})));
    expect(got).toMatchObject({ taskId, status: 'completed' });
    expect(got.statusMessage).toContain('agent#1 PASS');
  }, 120_000);

  test('cancelling the task stops the worker: task cancelled, attempt cancelled, run FAILED_RETRYABLE, no process left', async () => {
    const runId = await implementingRun({ FAKE_CODEX_SCENARIO: scenario('hang') });
    const pidsFile = join(h!.tmp, 'pids.json');
    h!.setEnv({ FAKE_CODEX_PIDS_FILE: pidsFile });
    const { client } = await connect(h!);
    const tasks = await session(client);
    const execution = await tasks.callTool(
      'run-agent-step',
      { run_id: runId, prompt: 'Run the watcher.', max_agent_seconds: 600 },
      { declaration: await declarationOf(client, 'run-agent-step'), task: { preference: 'require' }, requestTimeoutMs: 5_000 },
    );
    if (execution.kind !== 'task') throw new Error('expected a task');
    const taskId = execution.handle.taskId;
    await waitFor('worker pids', () => existsSync(pidsFile), 30_000);
    const { parent, child } = workerPids(pidsFile);
    expect(alive(parent)).toBe(true);
    const listed = ListTasksResultV1Schema.parse(await client.request({ method: 'tasks/list', params: {} }, z.looseObject({})));
    expect(listed.tasks.find((t) => t.taskId === taskId)).toMatchObject({ status: 'working' });
    expect(listed.tasks.find((t) => t.taskId === taskId)?.statusMessage).toContain(`${runId}: agent#1`);

    // tasks/cancel answers once the worker is gone.
    const cancelled = GetTaskResultV1Schema.parse(await client.request({ method: 'tasks/cancel', params: { taskId } }, z.looseObject({}), { timeout: 60_000 }));
    expect(cancelled).toMatchObject({ taskId, status: 'cancelled' });
    expect(alive(parent) || alive(child)).toBe(false);
    const attempt = await waitFor('attempt closed', () => {
      const a = h!.app.service.listAttempts(runId, 'agent')[0];
      return a && a.status !== 'running' ? a : undefined;
    }, 30_000);
    expect(attempt).toMatchObject({ status: 'failed', reason_code: 'cancelled' });
    const run = h!.app.service.getRun(runId);
    expect(run.state).toBe('FAILED_RETRYABLE');
    expect(run.last_error).toContain('cancelled');
    // The client's own view settles as cancelled.
    const { outcome } = await execution.settle();
    expect(outcome.status).toBe('cancelled');
    // A finished task cannot be cancelled again: -32602 with the reason.
    const again = await client.request({ method: 'tasks/cancel', params: { taskId } }, z.looseObject({})).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(again).toBeInstanceOf(ProtocolError);
    expect((again as ProtocolError).code).toBe(-32602);
    expect((again as Error).message).toContain('already cancelled');
  }, 120_000);

  test('tasks/list pages the tasks; an unknown task id and a task call to a tool without task support are refused with the reason', async () => {
    h = makeHarness();
    const { client } = await connect(h);
    const tasks = await session(client);
    // A run-prepare of an unknown run fails: the task ends failed, with the tool's message.
    const execution = await tasks.callTool('run-prepare', { run_id: 'run_000000000000' }, { declaration: await declarationOf(client, 'run-prepare'), task: { preference: 'require' } });
    expect(execution.kind).toBe('task');
    const { outcome } = await execution.settle();
    expect(outcome.status).toBe('failed');
    if (outcome.status === 'failed') expect(outcome.error.message).toContain('run_000000000000');
    const page = ListTasksResultV1Schema.parse(await client.request({ method: 'tasks/list', params: {} }, z.looseObject({})));
    expect(page.tasks.map((t) => t.status)).toContain('failed');

    const unknown = await client.request({ method: 'tasks/get', params: { taskId: 'no-such-task' } }, z.looseObject({})).then(
      () => undefined,
      (e: unknown) => e as ProtocolError,
    );
    expect(unknown?.code).toBe(-32602);
    expect(unknown?.message).toContain("unknown task 'no-such-task'");
    const badCursor = await client.request({ method: 'tasks/list', params: { cursor: 'bogus' } }, z.looseObject({})).then(
      () => undefined,
      (e: unknown) => e as ProtocolError,
    );
    expect(badCursor?.code).toBe(-32602);

    const refused = await client
      .request({ method: 'tools/call', params: { name: 'create-run', arguments: { owner: 'octo', repo: 'demo' }, task: {} } }, z.looseObject({}))
      .then(
        () => undefined,
        (e: unknown) => e as ProtocolError,
      );
    expect(refused?.code).toBe(-32601);
    expect(refused?.message).toContain('create-run does not run as a task');
    expect(h.app.service.listRuns({}).runs).toHaveLength(0);
  }, 60_000);

  test('tasks/list answers 50 tasks a page with an opaque cursor to the next', async () => {
    const t = makeTestApp();
    closers.push(t.cleanup);
    const store = taskStore(t.app);
    for (let i = 0; i < 60; i++) store.create('run-prepare', undefined, async () => ({ content: [{ type: 'text', text: `prepared ${i}` }] }));
    await new Promise((r) => setTimeout(r, 50));
    const first = store.page(undefined);
    expect(first.tasks).toHaveLength(50);
    expect(first.nextCursor).toBeDefined();
    const second = store.page(first.nextCursor);
    expect(second.tasks).toHaveLength(10);
    expect(second.nextCursor).toBeUndefined();
    expect(new Set([...first.tasks, ...second.tasks].map((x) => x.taskId)).size).toBe(60);
    expect(second.tasks.every((x) => x.status === 'completed' && x.statusMessage?.startsWith('prepared '))).toBe(true);
  });

  test('over stateless Streamable HTTP: the task outlives the request that made it, and another client lists and reads it', async () => {
    const runId = await implementingRun({ FAKE_CODEX_SCENARIO: scenario('implement-pass'), FAKE_CODEX_LINE_DELAY_MS: '100' });
    const http = await startHttpServer({ app: h!.app, port: 0, noAuth: true });
    closers.push(() => http.close());
    const client = new Client({ name: 'agentpr-task-http', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(http.url)));
    closers.push(() => client.close());
    expect(client.getServerCapabilities()?.tasks?.requests).toEqual({ tools: { call: {} } });
    const tasks = await session(client);
    const execution = await tasks.callTool(
      'run-agent-step',
      { run_id: runId, prompt: 'Append the greeting and run the tests.', max_agent_seconds: 600 },
      { declaration: await declarationOf(client, 'run-agent-step'), task: { preference: 'require' }, requestTimeoutMs: 5_000 },
    );
    if (execution.kind !== 'task') throw new Error('expected a task');
    const result = resultFromTaskOutcome((await execution.settle()).outcome) as CallResult;
    expect(result.structuredContent).toMatchObject({ run_id: runId, grade: 'PASS', state_after: 'LOCAL_VALIDATING' });

    const other = new Client({ name: 'agentpr-task-http-2', version: '1.0.0' });
    await other.connect(new StreamableHTTPClientTransport(new URL(http.url)));
    closers.push(() => other.close());
    const listed = ListTasksResultV1Schema.parse(await other.request({ method: 'tasks/list', params: {} }, z.looseObject({})));
    expect(listed.tasks.find((t) => t.taskId === execution.handle.taskId)).toMatchObject({ status: 'completed' });
    const again = await other.request({ method: 'tasks/result', params: { taskId: execution.handle.taskId } }, z.looseObject({ structuredContent: z.record(z.string(), z.unknown()) }));
    expect(again.structuredContent).toMatchObject({ run_id: runId, grade: 'PASS' });
  }, 120_000);

  test('over stdio, the built agentpr-mcp runs the step as a task to its verdict', async () => {
    const runId = await implementingRun({ FAKE_CODEX_SCENARIO: scenario('implement-pass'), FAKE_CODEX_LINE_DELAY_MS: '100' });
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [STDIO_BIN],
      // The harness's environment (fake codex, local forge, its data home), for the server process.
      env: { ...(h!.app.env as Record<string, string>), AGENTPR_HOME: h!.home, AGENTPR_DB: h!.app.config.dbPath },
      stderr: 'pipe',
    });
    const client = new Client({ name: 'agentpr-task-stdio', version: '1.0.0' });
    await client.connect(transport);
    closers.push(() => client.close());
    const statuses: string[] = [];
    const tasks = await session(client);
    const execution = await tasks.callTool(
      'run-agent-step',
      { run_id: runId, prompt: 'Append the greeting and run the tests.', max_agent_seconds: 600 },
      { declaration: await declarationOf(client, 'run-agent-step'), task: { preference: 'require' }, requestTimeoutMs: 5_000 },
    );
    expect(execution.kind).toBe('task');
    const { outcome } = await execution.settle({
      onEvent: (e) => {
        if (e.type === 'task') statuses.push(e.task.status);
      },
    });
    expect((resultFromTaskOutcome(outcome) as CallResult).structuredContent).toMatchObject({ run_id: runId, grade: 'PASS', state_after: 'LOCAL_VALIDATING' });
    expect(statuses).toContain('completed');
    expect(h!.app.service.getRun(runId).state).toBe('LOCAL_VALIDATING');
  }, 120_000);

  test('a client that does not use tasks still gets the early answer with the attempt id', async () => {
    const runId = await implementingRun({ FAKE_CODEX_SCENARIO: scenario('hang') });
    const { client } = await connect(h!);
    const r = (await client.callTool(
      { name: 'run-agent-step', arguments: { run_id: runId, prompt: 'Run the watcher.', max_agent_seconds: 600, return_after_seconds: 1 } },
      { timeout: 5_000 },
    )) as CallResult;
    expect(r.structuredContent).toMatchObject({ run_id: runId, attempt_no: 1, status: 'running' });
    await client.callTool({ name: 'pause', arguments: { run_id: runId } });
    await waitFor('attempt closed', () => h!.app.service.listAttempts(runId, 'agent')[0]?.status === 'failed', 30_000);
  }, 60_000);
});
