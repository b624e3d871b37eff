import { z } from 'zod';
import type { App } from './app.js';
import { ConfigurationError, UserInputError, errorMessage } from './core/errors.js';
import { TransitionError } from './core/states.js';
import { describeIssues } from './core/validation-message.js';
import { resolveAllowedPath, type Trust } from './trust.js';

export type Tier = 'read' | 'write' | 'admin';
export const TIER_RANK: Record<Tier, number> = { read: 0, write: 1, admin: 2 };

/** The way in a call came through; recorded in approvals and audits. */
export type Entry = 'mcp' | 'cli' | 'telegram' | 'manager' | 'webhook' | 'internal';

/**
 * Trust per entry, in one place (docs/security.md): the CLI is the operator; MCP acts for the
 * operator but is driven by an assistant model; Telegram, the manager model and the webhook are
 * remote. 'internal' is agentpr calling itself with values it chose.
 */
export const ENTRY_TRUST: Readonly<Record<Entry, Trust>> = {
  cli: 'operator',
  internal: 'operator',
  mcp: 'assistant',
  telegram: 'remote',
  manager: 'remote',
  webhook: 'remote',
};

/** Directories path inputs from non-operator entries may name: the data home, the workspace root, policy security.file_roots. */
export function allowedFileRoots(app: App): string[] {
  return [app.config.home, app.config.workspaceRoot, ...app.policy.security.file_roots];
}

export interface ToolAnnotations {
  readOnlyHint?: boolean;
  destructiveHint?: boolean;
  idempotentHint?: boolean;
  openWorldHint?: boolean;
}

export interface ProgressUpdate {
  progress: number;
  total?: number;
  message?: string;
}

export interface ToolContext {
  app: App;
  entry: Entry;
  /** Who called, as the entry knows it (MCP client name, CLI user, telegram:<user id>, ...). */
  actor?: string;
  signal?: AbortSignal;
  /** Present when the caller asked for progress (an MCP progress token, a CLI spinner). */
  progress?: (update: ProgressUpdate) => Promise<void>;
  /** --skip-doctor from the CLI; MCP callers pass the `skip_doctor` input field instead. */
  skipDoctor?: boolean;
  /**
   * Asks the person at the client to confirm (MCP elicitation), when the client supports it:
   * true only for an explicit yes. Absent elsewhere.
   */
  confirmWithPerson?: (message: string) => Promise<boolean>;
  /**
   * Set when the call runs as an MCP task: the tool follows its work to the end (no early answer)
   * and names the run attempt the task follows as soon as it knows it.
   */
  task?: { follows: (ref: { run_id: string; attempt_no: number; state: string }) => void };
}

export interface ToolResult<O> {
  data: O;
  /** A short readable summary for people. */
  text: string;
}

export interface ToolDefinition<I extends z.ZodObject = z.ZodObject, O extends z.ZodObject = z.ZodObject> {
  name: string;
  title: string;
  description: string;
  tier: Tier;
  annotations: ToolAnnotations;
  input: I;
  output: O;
  /**
   * CLI hints: fields that may be given positionally, in order; `exitCode` maps a successful
   * result to the process's exit status (alert checks exit non-zero for timers and cron).
   */
  cli?: { positional?: string[]; exitCode?: (data: Record<string, unknown>) => number };
  /**
   * Input fields that name a file or directory on this host (a string or an array of strings).
   * From every entry but the operator's they resolve, symlinks first, below allowedFileRoots().
   */
  paths?: readonly string[];
  /** Of `paths`, the fields that may hold a web address (http/https) instead: stored as given, never read as a file. */
  webAddressFields?: readonly string[];
  // Method syntax on purpose: parameters are then checked bivariantly, so every concrete tool is an AnyTool.
  handler(args: z.output<I>, ctx: ToolContext): Promise<ToolResult<z.input<O>>> | ToolResult<z.input<O>>;
}

export type AnyTool = ToolDefinition;

export function defineTool<I extends z.ZodObject, O extends z.ZodObject>(def: ToolDefinition<I, O>): ToolDefinition<I, O> {
  return def;
}

const SKIP_DOCTOR = z
  .boolean()
  .optional()
  .describe('Skip the automatic startup doctor check for this call (use only when you know why it fails)');

/**
 * The input schema every entry validates against (and MCP clients see): the tool's own, strict,
 * plus `skip_doctor` on write and admin tools.
 */
const inputCache = new WeakMap<AnyTool, z.ZodObject>();
export function effectiveInput(tool: AnyTool): z.ZodObject {
  let schema = inputCache.get(tool);
  if (!schema) {
    const base = tool.input.strict();
    schema = tool.tier === 'read' ? base : base.extend({ skip_doctor: SKIP_DOCTOR }).strict();
    inputCache.set(tool, schema);
  }
  return schema;
}

/** JSON Schema of a tool's input, the same for MCP, the manager LLM and Telegram's LLM routing. */
export function inputJsonSchema(tool: AnyTool): Record<string, unknown> {
  return z.toJSONSchema(effectiveInput(tool), { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
}

/**
 * One message for a failed validation, the same over MCP, the CLI, Telegram and the manager:
 * `invalid input for <tool>: <field>: <what was wrong>, got <value>; allowed: <values>`.
 */
export function formatZodError(err: z.ZodError, what: string, input?: unknown): string {
  return `invalid input for ${what}: ${describeIssues(err, input)}`;
}

export type CallErrorCode = 'unknown_tool' | 'invalid_input' | 'forbidden' | 'refused' | 'conflict' | 'configuration' | 'internal';

export type CallOutcome =
  | { ok: true; tool: AnyTool; data: Record<string, unknown>; text: string }
  | { ok: false; tool?: AnyTool; code: CallErrorCode; error: string };

export interface CallOptions {
  /** The highest tier the caller may use (Telegram chats, the manager LLM); default admin. */
  maxTier?: Tier;
  /** The only tools this call may reach (plain chat text: the curated set in telegram/text-intent.ts). */
  only?: readonly string[];
}

/** Thrown by pre-call hooks (the doctor) to refuse a call before anything changes. */
export class RefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RefusedError';
  }
}

/** What listing a tool takes (tools/list): no zod schemas, no handler. */
export interface ToolListing {
  name: string;
  title: string;
  description: string;
  tier: Tier;
  annotations: ToolAnnotations;
  /** The JSON Schemas MCP lists, as the build wrote them (deferred tools); else they come from the zod schemas. */
  listedJson?: { input: Record<string, unknown>; output: Record<string, unknown> };
}

/**
 * Tools that are imported on first use: the listing answers tools/list; `load` brings the tools
 * themselves (their schemas, handlers and everything behind them) on the first call.
 */
export interface DeferredTools {
  listing: readonly ToolListing[];
  load: () => Promise<readonly AnyTool[]>;
}

export class Registry {
  private loaded: readonly AnyTool[] | undefined;
  private readonly listing: readonly ToolListing[];
  private readonly listedByName = new Map<string, ToolListing>();
  private readonly byName = new Map<string, AnyTool>();
  private readonly loader: (() => Promise<readonly AnyTool[]>) | undefined;
  private loading: Promise<readonly AnyTool[]> | undefined;

  /** Tools at hand, or deferred: listed now, imported on the first call (agentpr-mcp's cold start). */
  constructor(tools: readonly AnyTool[] | DeferredTools) {
    const deferred = !Array.isArray(tools);
    this.listing = deferred ? (tools as DeferredTools).listing : (tools as readonly AnyTool[]);
    for (const t of this.listing) {
      if (this.listedByName.has(t.name)) throw new Error(`tool ${t.name} is registered twice`);
      this.listedByName.set(t.name, t);
    }
    if (deferred) this.loader = (tools as DeferredTools).load;
    else this.install(tools as readonly AnyTool[]);
  }

  /** Every tool with its schemas and handler; a deferred registry has them only after loadTools(). */
  get tools(): readonly AnyTool[] {
    if (!this.loaded) throw new Error('the tools of this registry are loaded on first call; await loadTools() first');
    return this.loaded;
  }

  /** The tool, once loaded (always, unless the registry is deferred and nothing was called yet). */
  get(name: string): AnyTool | undefined {
    return this.byName.get(name);
  }

  /** Tools visible at a tier (read-only mode hides write and admin tools rather than refusing them). */
  visible(maxTier: Tier = 'admin'): AnyTool[] {
    return this.tools.filter((t) => TIER_RANK[t.tier] <= TIER_RANK[maxTier]);
  }

  /** What tools/list shows at a tier, without loading deferred tools. */
  listed(maxTier: Tier = 'admin'): ToolListing[] {
    return this.listing.filter((t) => TIER_RANK[t.tier] <= TIER_RANK[maxTier]);
  }

  /** The tools, imported once if deferred; they must be the ones listed (same names, tiers, titles, descriptions, annotations). */
  async loadTools(): Promise<readonly AnyTool[]> {
    if (this.loaded) return this.loaded;
    this.loading ??= Promise.resolve().then(this.loader!).then((tools) => {
      const differs = listingDifference(this.listing, tools);
      if (differs) throw new Error(`the tool listing does not match the tools (${differs}); rebuild with npm run build`);
      this.install(tools);
      return tools;
    });
    try {
      return await this.loading;
    } catch (err) {
      this.loading = undefined; // a failed import is retried by the next call
      throw err;
    }
  }

  private install(tools: readonly AnyTool[]): void {
    for (const t of tools) {
      if (this.byName.has(t.name)) throw new Error(`tool ${t.name} is registered twice`);
      this.byName.set(t.name, t);
    }
    this.loaded = tools;
  }

  /**
   * The one call path every entry uses: find, check tier, validate, pre-call hooks (doctor),
   * handler, output check. Never throws; failures come back as `{ok: false}` with a message.
   */
  async call(name: string, rawArgs: unknown, ctx: ToolContext, opts: CallOptions = {}): Promise<CallOutcome> {
    if (!this.listedByName.has(name)) {
      return { ok: false, code: 'unknown_tool', error: `unknown tool '${name}'; available: ${this.listing.map((t) => t.name).join(', ')}` };
    }
    let tool = this.byName.get(name);
    if (!tool) {
      try {
        await this.loadTools();
      } catch (err) {
        ctx.app.logger.error({ err, tool: name }, 'loading the tools failed');
        return { ok: false, code: 'internal', error: `internal error: the tools could not be loaded: ${errorMessage(err)}` };
      }
      tool = this.byName.get(name)!;
    }
    const maxTier = opts.maxTier ?? 'admin';
    if (TIER_RANK[tool.tier] > TIER_RANK[maxTier]) {
      return { ok: false, tool, code: 'forbidden', error: `${name} is a ${tool.tier}-tier tool; this caller may use ${maxTier}-tier tools only` };
    }
    if (opts.only && !opts.only.includes(name)) {
      return { ok: false, tool, code: 'forbidden', error: `${name} cannot be reached from this entry; it may use ${opts.only.join(', ')}` };
    }
    const parsed = effectiveInput(tool).safeParse(rawArgs ?? {});
    if (!parsed.success) return { ok: false, tool, code: 'invalid_input', error: formatZodError(parsed.error, name, rawArgs ?? {}) };
    const args = { ...(parsed.data as Record<string, unknown>) };
    const skipDoctor = Boolean(args.skip_doctor) || Boolean(ctx.skipDoctor);
    delete args.skip_doctor;
    const log = ctx.app.logger.child({ tool: name, entry: ctx.entry, ...(typeof args.run_id === 'string' ? { run_id: args.run_id } : {}) });
    try {
      if (tool.paths && ENTRY_TRUST[ctx.entry] !== 'operator') {
        // A relative path is read from the run's workspace, so it is checked from there too.
        const cwd = typeof args.run_id === 'string' ? ctx.app.service.findRun(args.run_id)?.workspace_dir ?? undefined : undefined;
        checkPathInputs(tool.paths, args, allowedFileRoots(ctx.app), cwd, tool.webAddressFields ?? []);
      }
      if (tool.tier !== 'read') {
        for (const hook of ctx.app.preCallHooks) await hook(tool, args, { ...ctx, skipDoctor });
      }
      const result = await tool.handler(args, { ...ctx, skipDoctor });
      const out = tool.output.safeParse(result.data);
      if (!out.success) {
        log.error({ issues: out.error.issues }, 'tool output did not match its schema');
        return { ok: false, tool, code: 'internal', error: `internal error: ${name} produced output that does not match its schema (${formatZodError(out.error, 'output')})` };
      }
      log.debug('tool call ok');
      return { ok: true, tool, data: out.data as Record<string, unknown>, text: result.text };
    } catch (err) {
      const message = errorMessage(err);
      if (err instanceof UserInputError) return { ok: false, tool, code: 'invalid_input', error: message };
      if (err instanceof TransitionError) return { ok: false, tool, code: 'conflict', error: message };
      if (err instanceof RefusedError) return { ok: false, tool, code: 'refused', error: message };
      if (err instanceof ConfigurationError) return { ok: false, tool, code: 'configuration', error: message };
      if (err instanceof z.ZodError) return { ok: false, tool, code: 'invalid_input', error: formatZodError(err, name) };
      log.error({ err }, 'tool handler failed');
      return { ok: false, tool, code: 'internal', error: `${name} failed: ${message}` };
    }
  }
}

/** How a listing and the loaded tools differ, or undefined when they agree. */
function listingDifference(listing: readonly ToolListing[], tools: readonly AnyTool[]): string | undefined {
  if (listing.length !== tools.length) return `${listing.length} listed, ${tools.length} loaded`;
  for (let i = 0; i < tools.length; i++) {
    const l = listing[i]!;
    const t = tools[i]!;
    for (const key of ['name', 'title', 'description', 'tier'] as const) {
      if (l[key] !== t[key]) return `${t.name}: ${key}`;
    }
    if (JSON.stringify(l.annotations) !== JSON.stringify(t.annotations)) return `${t.name}: annotations`;
  }
  return undefined;
}

/** Replaces each path input with its checked real path (throws UserInputError on the first refusal). */
/** A web address, which is not a file on this host. */
const WEB_ADDRESS = /^https?:\/\//i;

function checkPathInputs(fields: readonly string[], args: Record<string, unknown>, roots: string[], cwd: string | undefined, webAddressFields: readonly string[]): void {
  for (const field of fields) {
    const v = args[field];
    if (typeof v === 'string' && webAddressFields.includes(field) && WEB_ADDRESS.test(v)) continue;
    if (typeof v === 'string') args[field] = resolveAllowedPath(v, roots, { field, cwd });
    else if (Array.isArray(v)) args[field] = v.map((p, i) => (typeof p === 'string' ? resolveAllowedPath(p, roots, { field: `${field}[${i}]`, cwd }) : p));
  }
}
