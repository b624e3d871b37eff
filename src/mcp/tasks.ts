import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import {
  ProtocolError,
  ProtocolErrorCode,
  RELATED_TASK_META_KEY,
  SUPPORTED_PROTOCOL_VERSIONS,
  type CallToolResult,
  type McpServer,
  type ServerContext,
  type Task,
} from '@modelcontextprotocol/server';
import type { App } from '../app.js';
import type { ToolContext } from '../registry.js';

/**
 * MCP tasks (protocol revision 2025-11-25) for the long tools: a `tools/call` with a `task` field
 * answers at once with a task; `tasks/get`, `tasks/result`, `tasks/list` and `tasks/cancel` follow
 * it, and `notifications/tasks/status` reports its end on the connection that created it. The
 * task runs the same registry call as a plain `tools/call`.
 */

/** Tools a client may call as a task (`execution.taskSupport: optional`); the others refuse it. */
export const TASK_TOOLS: readonly string[] = ['run-agent-step', 'run-prepare', 'run-finish', 'sync-github', 'manager-tick'];

/** What the MCP description of a task tool adds (run-agent-step says it in its own words). */
export const TASK_NOTE =
  'Clients with MCP tasks (2025-11-25) may call it as an MCP task: the call answers at once with a task id, tasks/result gives this same result when it ends, and tasks/cancel stops it.';

/** The interval a task asks its client to poll at. */
export const TASK_POLL_INTERVAL_MS = 1000;
/** How long a task is kept from its creation when the client asks for nothing (or less than the minimum). */
export const TASK_TTL_DEFAULT_MS = 24 * 3600_000;
export const TASK_TTL_MIN_MS = 3600_000;
export const TASK_TTL_MAX_MS = 7 * 24 * 3600_000;
/** Tasks kept per server process; past it the oldest finished task is dropped. */
export const MAX_TASKS = 1000;
/** Tasks per tasks/list page. */
export const TASK_PAGE_SIZE = 50;
/** How long tasks/cancel waits for the tool call to wind down (worker killed, attempt recorded) before it answers. */
export const CANCEL_SETTLE_WAIT_MS = 15_000;

const MODEL_IMMEDIATE_RESPONSE = 'io.modelcontextprotocol/model-immediate-response';

type TaskStatus = 'working' | 'completed' | 'failed' | 'cancelled';
const TERMINAL: ReadonlySet<TaskStatus> = new Set(['completed', 'failed', 'cancelled']);

interface TaskRecord {
  taskId: string;
  tool: string;
  status: TaskStatus;
  statusMessage: string;
  createdAt: number;
  lastUpdatedAt: number;
  ttl: number;
  /** The tool's answer once the call settled (also after a cancel). */
  result?: CallToolResult;
  /** Settles when the tool call has returned. */
  settled: Promise<void>;
  abort: AbortController;
}

function view(r: TaskRecord): Task {
  return {
    taskId: r.taskId,
    status: r.status,
    statusMessage: r.statusMessage,
    createdAt: new Date(r.createdAt).toISOString(),
    lastUpdatedAt: new Date(r.lastUpdatedAt).toISOString(),
    ttl: r.ttl,
    pollInterval: TASK_POLL_INTERVAL_MS,
  };
}

function firstLine(result: CallToolResult): string {
  const text = result.content.map((c) => (c.type === 'text' ? c.text : '')).join('\n');
  return text.split('\n')[0]!.slice(0, 500);
}

function ttlFor(requested: number | undefined): number {
  if (requested === undefined) return TASK_TTL_DEFAULT_MS;
  return Math.min(Math.max(requested, TASK_TTL_MIN_MS), TASK_TTL_MAX_MS);
}

/** The tasks of one server process (shared by its connections: stdio, and HTTP's per-request servers). */
export class TaskStore extends EventEmitter<{ status: [TaskRecord] }> {
  private readonly tasks = new Map<string, TaskRecord>();

  create(tool: string, ttl: number | undefined, run: (r: TaskRecord) => Promise<CallToolResult>): TaskRecord {
    this.sweep();
    const now = Date.now();
    let settle!: () => void;
    const r: TaskRecord = {
      taskId: randomUUID(),
      tool,
      status: 'working',
      statusMessage: `${tool} is running`,
      createdAt: now,
      lastUpdatedAt: now,
      ttl: ttlFor(ttl),
      settled: new Promise<void>((resolve) => (settle = resolve)),
      abort: new AbortController(),
    };
    this.tasks.set(r.taskId, r);
    void run(r)
      .catch((err: unknown): CallToolResult => ({ isError: true, content: [{ type: 'text', text: `${tool} failed: ${err instanceof Error ? err.message : String(err)}` }] }))
      .then((result) => {
        r.result = result;
        // A cancelled task stays cancelled, whatever the call answered after the cancel.
        if (r.status === 'working') this.move(r, result.isError ? 'failed' : 'completed', firstLine(result));
        settle();
      });
    return r;
  }

  /** A working task's new status message (progress); no notification. */
  note(r: TaskRecord, message: string): void {
    if (r.status !== 'working') return;
    r.statusMessage = message.slice(0, 500);
    r.lastUpdatedAt = Date.now();
  }

  cancel(r: TaskRecord, reason: string): void {
    this.move(r, 'cancelled', reason);
    r.abort.abort(reason);
  }

  private move(r: TaskRecord, status: TaskStatus, message: string): void {
    r.status = status;
    r.statusMessage = message;
    r.lastUpdatedAt = Date.now();
    this.emit('status', r);
  }

  /** The task, or the protocol's invalid-params error naming what to do. */
  require(taskId: string): TaskRecord {
    this.sweep();
    const r = this.tasks.get(taskId);
    if (!r) {
      throw new ProtocolError(
        ProtocolErrorCode.InvalidParams,
        `unknown task '${taskId.slice(0, 80)}': this server has no such task (finished tasks are kept for their ttl, and no task outlives a server restart); tasks/list shows the known ones`,
      );
    }
    return r;
  }

  page(cursor: string | undefined): { tasks: Task[]; nextCursor?: string } {
    this.sweep();
    let offset = 0;
    if (cursor !== undefined) {
      const m = /^t:(\d{1,9})$/.exec(Buffer.from(cursor, 'base64url').toString());
      if (!m) throw new ProtocolError(ProtocolErrorCode.InvalidParams, `invalid cursor '${cursor.slice(0, 40)}'; pass the nextCursor of the previous tasks/list answer, or none for the first page`);
      offset = Number(m[1]);
    }
    const all = [...this.tasks.values()];
    const page = all.slice(offset, offset + TASK_PAGE_SIZE);
    const next = offset + page.length < all.length ? Buffer.from(`t:${offset + page.length}`).toString('base64url') : undefined;
    return { tasks: page.map(view), ...(next ? { nextCursor: next } : {}) };
  }

  /** Drops finished tasks past their ttl, then the oldest finished ones over MAX_TASKS. A working task is never dropped. */
  private sweep(): void {
    const now = Date.now();
    for (const [id, r] of this.tasks) if (TERMINAL.has(r.status) && now > r.createdAt + r.ttl) this.tasks.delete(id);
    if (this.tasks.size < MAX_TASKS) return;
    for (const [id, r] of this.tasks) {
      if (this.tasks.size < MAX_TASKS) break;
      if (TERMINAL.has(r.status)) this.tasks.delete(id);
    }
  }
}

const stores = new WeakMap<App, TaskStore>();
export function taskStore(app: App): TaskStore {
  let s = stores.get(app);
  if (!s) stores.set(app, (s = new TaskStore()));
  return s;
}

/** Runs one registered tool the way a plain tools/call does, with the task's signal, progress and hooks. */
export type InvokeTool = (name: string, args: unknown, ctx: ServerContext, extra: Partial<ToolContext>) => Promise<CallToolResult>;

type RawHandler = (request: { method: string; params?: Record<string, unknown> }, ctx: ServerContext) => Promise<unknown>;

function aborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => (signal.aborted ? resolve() : signal.addEventListener('abort', () => resolve(), { once: true })));
}

function taskIdOf(params: unknown): string {
  const id = (params as { taskId?: unknown } | undefined)?.taskId;
  if (typeof id !== 'string' || !id) throw new ProtocolError(ProtocolErrorCode.InvalidParams, 'taskId is required: the id from the task the tools/call answered');
  return id;
}

/**
 * Declares the tasks capability and serves the task methods on `server`. `registered` are the tool
 * names this server lists; of them, TASK_TOOLS may run as tasks. Call after the tools are
 * registered and before connecting. Returns the detach for the connection's close.
 */
export function enableTasks(server: McpServer, app: App, registered: readonly string[], invoke: InvokeTool): () => void {
  const store = taskStore(app);
  const taskTools = new Set(TASK_TOOLS.filter((t) => registered.includes(t)));
  const known = new Set(registered);
  // A server that lists none of them (read-only, or toolsets without them) declares no tasks.
  if (!taskTools.size) return () => undefined;
  server.server.registerCapabilities({ tasks: { list: {}, cancel: {}, requests: { tools: { call: {} } } } });

  // The SDK checks every tools/call answer against CallToolResult and refuses a CreateTaskResult,
  // and it has no server-side task helper: a task-augmented call is answered before that check by
  // replacing the stored tools/call handler (the SDK keeps it in a private map). Every other call
  // goes to the SDK's own handler unchanged.
  const handlers = (server.server as unknown as { _requestHandlers?: Map<string, RawHandler> })._requestHandlers;
  const plain = handlers?.get('tools/call');
  if (!handlers || !plain) throw new Error('MCP tasks: the SDK server has no tools/call handler to extend (register the tools first, or the SDK changed)');

  const mine = new Set<string>();
  handlers.set('tools/call', async (request, ctx) => {
    const params = request.params ?? {};
    const version = server.server.getNegotiatedProtocolVersion();
    const legacyEra = version === undefined || SUPPORTED_PROTOCOL_VERSIONS.includes(version);
    if (params.task === undefined || !legacyEra) return plain(request, ctx);
    const name = params.name;
    if (typeof name !== 'string' || !known.has(name)) return plain(request, ctx);
    if (!taskTools.has(name)) {
      throw new ProtocolError(
        ProtocolErrorCode.MethodNotFound,
        `${name} does not run as a task (its execution.taskSupport is forbidden); call it without the task field. Tools that run as tasks: ${[...taskTools].join(', ') || 'none on this server'}`,
      );
    }
    const task = params.task as { ttl?: unknown } | null;
    if (task === null || typeof task !== 'object' || (task.ttl !== undefined && (typeof task.ttl !== 'number' || !Number.isInteger(task.ttl) || task.ttl < 0))) {
      throw new ProtocolError(ProtocolErrorCode.InvalidParams, `task must be an object with an optional ttl (a whole number of milliseconds), got ${JSON.stringify(task)?.slice(0, 80)}`);
    }
    const record = store.create(name, task.ttl as number | undefined, (r) => {
      const progress = ctx.mcpReq._meta?.progressToken;
      let runId: string | undefined;
      return invoke(name, params.arguments, ctx, {
        signal: r.abort.signal,
        progress: async (u) => {
          if (u.message) store.note(r, runId && !u.message.startsWith(runId) ? `${runId}: ${u.message}` : u.message);
          // The request's progress token stays valid for the task's lifetime.
          if (progress !== undefined) {
            await ctx.mcpReq
              .notify({ method: 'notifications/progress', params: { progressToken: progress, progress: u.progress, ...(u.total !== undefined ? { total: u.total } : {}), ...(u.message ? { message: u.message } : {}) } })
              .catch(() => undefined);
          }
        },
        task: {
          follows: (ref) => {
            runId = ref.run_id;
            store.note(r, `${ref.run_id}: agent#${ref.attempt_no} working in ${ref.state}`);
          },
        },
      });
    });
    mine.add(record.taskId);
    app.logger.info({ task_id: record.taskId, tool: name }, 'tool call runs as an MCP task');
    return {
      task: view(record),
      _meta: {
        [MODEL_IMMEDIATE_RESPONSE]: `${name} runs as task ${record.taskId}; its result comes with tasks/result when it ends (tasks/get shows its status).`,
      },
    };
  });

  // The SDK's typed overloads leave out the task methods; its 2025-11-25 codec validates their params.
  const serve = server.server.setRequestHandler.bind(server.server) as unknown as (
    method: 'tasks/get' | 'tasks/list' | 'tasks/result' | 'tasks/cancel',
    handler: (request: { params?: { taskId?: string; cursor?: string } }, ctx: ServerContext) => unknown,
  ) => void;
  serve('tasks/get', (request) => view(store.require(taskIdOf(request.params))));
  serve('tasks/list', (request) => store.page(request.params?.cursor));
  serve('tasks/result', async (request, ctx) => {
    const taskId = taskIdOf(request.params);
    const r = store.require(taskId);
    // Blocks while the task works (and, after a cancel, until the call has wound down).
    await Promise.race([r.settled, aborted(ctx.mcpReq.signal)]);
    if (!r.result) throw new ProtocolError(ProtocolErrorCode.InternalError, `task ${taskId} has no result yet`);
    return { ...r.result, _meta: { ...r.result._meta, [RELATED_TASK_META_KEY]: { taskId } } };
  });
  serve('tasks/cancel', async (request) => {
    const taskId = taskIdOf(request.params);
    const r = store.require(taskId);
    if (r.status !== 'working') {
      throw new ProtocolError(ProtocolErrorCode.InvalidParams, `task ${taskId} is already ${r.status}; only a working task can be cancelled (tasks/result has its answer)`);
    }
    store.cancel(r, `cancelled by the client (tasks/cancel); ${r.tool} was told to stop`);
    await Promise.race([r.settled, new Promise((resolve) => setTimeout(resolve, CANCEL_SETTLE_WAIT_MS).unref())]);
    return view(r);
  });

  const onStatus = (r: TaskRecord) => {
    if (!mine.has(r.taskId) || !server.isConnected()) return;
    void server.server.notification({ method: 'notifications/tasks/status', params: view(r) }).catch(() => undefined);
  };
  store.on('status', onStatus);
  return () => store.off('status', onStatus);
}
