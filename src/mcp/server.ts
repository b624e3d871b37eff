import { McpServer, ResourceNotFoundError, ResourceTemplate, type CallToolResult, type ServerContext, type StandardSchemaWithJSON } from '@modelcontextprotocol/server';
import type { z } from 'zod';
import type { App } from '../app.js';
import { Registry, effectiveInput, type Tier, type ToolContext, type ToolListing } from '../registry.js';
import type { ResourceDefinition } from '../resources.js';
import { RESOURCES } from '../../resources/index.js';
import { VERSION } from '../version.js';
import { boardToolMeta, registerBoardApp } from '../board/mcp-app.js';
import { toolsetOf, type Toolset } from './toolsets.js';
import { completers, enableSubscriptions, forwardStepLogs, paginateResourceList, registerPrompts } from './protocol.js';
import { NotFoundError } from '../core/errors.js';
import { listedSchema } from './listed-schema.js';
import { builtToolListing, jsonListedSchema } from './tool-catalog.js';

/** The tools themselves; loaded up front only when no built listing can answer tools/list without them. */
const loadTools = async () => (await import('../../tools/index.js')).TOOLS;
/** The build's catalog text in the bundled bin (see tool-catalog.ts); there the await below is never reached, so the bundle needs none. */
declare const AGENTPR_TOOL_CATALOG: string | undefined;
const TOOLS_AT_START = typeof AGENTPR_TOOL_CATALOG === 'string' || builtToolListing() ? undefined : await loadTools();
let sharedRegistry: Registry | undefined;

/**
 * The registry MCP servers share (one per process): the tools, or in the bundled agentpr-mcp the
 * build's listing with the tools imported on the first call, so a cold start answers `tools/list`
 * without loading every handler and its dependencies.
 */
export function mcpRegistry(): Registry {
  const listing = builtToolListing();
  return (sharedRegistry ??= listing ? new Registry({ listing, load: loadTools }) : new Registry(TOOLS_AT_START ?? []));
}
import { TASK_NOTE, TASK_TOOLS, enableTasks, type InvokeTool } from './tasks.js';

export interface McpServerOptions {
  /** Register only read-tier tools (write and admin tools are hidden, not refused). */
  readOnly?: boolean;
  /** Register only the tools of these toolsets (default: every toolset). */
  toolsets?: readonly Toolset[];
  /** Push resources/list_changed when runs or artifacts change (long-lived connections only). */
  notifyChanges?: boolean;
  registry?: Registry;
  resources?: readonly ResourceDefinition[];
}

export const SERVER_INSTRUCTIONS = `agentpr-mcp orchestrates AI coding agent runs against GitHub repositories.
Each run moves through an explicit state machine (QUEUED -> DISCOVERY -> PLAN_READY -> IMPLEMENTING -> LOCAL_VALIDATING -> PUSHED -> CI_WAIT -> REVIEW_WAIT -> DONE, with PAUSED, NEEDS_HUMAN_REVIEW and FAILED_* on the side).
Start with list-runs or show-run; create-run makes a run; every state change is an idempotent event. Resources: agentpr://runs, agentpr://runs/{run_id}, agentpr://runs/{run_id}/events.`;

/**
 * The tool's input schema as MCP lists it, with validation left to the registry: the SDK would
 * otherwise answer its own "Input validation error: ..." text, and a caller should read the same
 * message ("invalid input for <tool>: <field>: ...; allowed: ...") over MCP as on the CLI.
 */
function listedOnly(schema: z.ZodObject): StandardSchemaWithJSON<Record<string, unknown>> {
  const std = schema['~standard'];
  return {
    '~standard': {
      version: 1,
      vendor: 'agentpr',
      validate: (value: unknown) => ({ value: (value ?? {}) as Record<string, unknown> }),
      jsonSchema: std.jsonSchema as StandardSchemaWithJSON<Record<string, unknown>>['~standard']['jsonSchema'],
    },
  };
}

/**
 * The input and output schemas registerTool gets. Validation stays with the registry; the JSON
 * Schema comes from the build (or is converted once). Deferred tools list the build's JSON Schema
 * and check output with the tool's own zod schema once the call has loaded it.
 */
function listedSchemas(registry: Registry, listing: ToolListing) {
  const built = listing.listedJson;
  const tool = registry.get(listing.name);
  if (!built && tool) {
    return {
      inputSchema: listedOnly(listedSchema(tool.name, effectiveInput(tool), 'input') as z.ZodObject),
      outputSchema: listedSchema(tool.name, tool.output, 'output') as StandardSchemaWithJSON<Record<string, unknown>>,
    };
  }
  if (!built) throw new Error(`tool ${listing.name} has neither a loaded schema nor a built one`);
  return {
    inputSchema: jsonListedSchema(built.input, 'input', (value) => ({ value: (value ?? {}) as Record<string, unknown> })),
    outputSchema: jsonListedSchema(built.output, 'output', (value) => {
      // The registry already checked the output against the loaded tool's schema; check it the same way here.
      const loaded = registry.get(listing.name);
      return loaded ? (loaded.output['~standard'].validate(value) as { value: Record<string, unknown> }) : { value: value as Record<string, unknown> };
    }),
  };
}

/** A yes/no question to the person through form elicitation, when the client declared it. */
function confirmFor(server: McpServer, ctx: ServerContext): ToolContext['confirmWithPerson'] {
  if (!server.server.getClientCapabilities()?.elicitation) return undefined;
  return async (message) => {
    const answer = await ctx.mcpReq.elicitInput({
      mode: 'form',
      message,
      requestedSchema: {
        type: 'object',
        properties: { confirm: { type: 'boolean', title: 'Yes, go ahead', description: message } },
        required: ['confirm'],
      },
    });
    return answer.action === 'accept' && answer.content?.confirm === true;
  };
}

function progressFor(ctx: ServerContext): ToolContext['progress'] {
  const token = ctx.mcpReq._meta?.progressToken;
  if (token === undefined) return undefined;
  return async ({ progress, total, message }) => {
    await ctx.mcpReq.notify({
      method: 'notifications/progress',
      params: { progressToken: token, progress, ...(total !== undefined ? { total } : {}), ...(message ? { message } : {}) },
    });
  };
}

/** A fresh McpServer over the shared registry: one per stdio connection, one per HTTP request. */
export function createMcpServer(app: App, opts: McpServerOptions = {}): McpServer {
  const registry = opts.registry ?? mcpRegistry();
  const maxTier: Tier = opts.readOnly ? 'read' : 'admin';
  const server = new McpServer(
    { name: 'agentpr-mcp', version: VERSION },
    { capabilities: { logging: {}, resources: { listChanged: true }, tools: { listChanged: false }, prompts: { listChanged: false } }, instructions: SERVER_INSTRUCTIONS },
  );

  const sets = opts.toolsets ? new Set(opts.toolsets) : undefined;
  const listed = registry.listed(maxTier).filter((t) => !sets || sets.has(toolsetOf(t)));
  /** One call through the registry, for a plain tools/call and for a task alike. */
  const invoke: InvokeTool = async (name, args, ctx, extra) => {
    const tool = listed.find((t) => t.name === name)!;
    const clientName = server.server.getClientVersion()?.name;
    // Steps (write and admin tools) log their start, finish and failure as notifications/message.
    const log = tool.tier === 'read' ? undefined : (level: 'info' | 'warning' | 'error', message: string) => ctx.mcpReq.log(level, { message, tool: tool.name }, 'agentpr').catch(() => undefined);
    await log?.('info', `${tool.name} started`);
    const outcome = await registry.call(
      tool.name,
      args,
      { app, entry: 'mcp', actor: clientName ? `mcp:${clientName}` : 'mcp', signal: ctx.mcpReq.signal, progress: progressFor(ctx), confirmWithPerson: confirmFor(server, ctx), ...extra },
      { maxTier },
    );
    if (!outcome.ok) {
      await log?.(outcome.code === 'internal' || outcome.code === 'configuration' ? 'error' : 'warning', `${tool.name} ${outcome.code === 'invalid_input' ? 'rejected' : 'failed'}: ${outcome.error}`);
      return { isError: true, content: [{ type: 'text', text: outcome.error }] };
    }
    const failed = outcome.data.ok === false;
    await log?.(failed ? 'warning' : 'info', `${tool.name} ${failed ? 'reported a failure' : 'finished'}: ${outcome.text.split('\n')[0]}`);
    return { content: [{ type: 'text', text: outcome.text }], structuredContent: outcome.data };
  };
  for (const tool of listed) {
    const registered = server.registerTool(
      tool.name,
      {
        title: tool.title,
        description: TASK_TOOLS.includes(tool.name) && !tool.description.includes('MCP task') ? `${tool.description} ${TASK_NOTE}` : tool.description,
        ...listedSchemas(registry, tool),
        annotations: { title: tool.title, ...tool.annotations },
        _meta: boardToolMeta(tool.name),
      },
      (args: unknown, ctx: ServerContext): Promise<CallToolResult> => invoke(tool.name, args, ctx, {}),
    );
    // The SDK's registerTool takes no `execution`; the registered tool carries it to tools/list.
    if (TASK_TOOLS.includes(tool.name)) registered.execution = { taskSupport: 'optional' };
  }
  const detachTasks = listed.length ? enableTasks(server, app, listed.map((t) => t.name), invoke) : () => undefined;
  const closeBefore = server.server.onclose;
  server.server.onclose = () => {
    detachTasks();
    closeBefore?.();
  };

  const resources = opts.resources ?? RESOURCES;
  const complete = completers(app);
  for (const res of resources) {
    const read = async (uri: URL, vars: Record<string, string>) => {
      const params = Object.fromEntries(uri.searchParams.entries());
      let content;
      try {
        content = await res.read(app, uri, { ...params, ...vars });
      } catch (err) {
        // An unknown run (or a digest not written yet) is resource-not-found, with the reason.
        if (err instanceof NotFoundError) throw new ResourceNotFoundError(uri.href, `${uri.href}: ${err.message}`);
        throw err;
      }
      return { contents: [{ uri: uri.href, mimeType: content.mimeType, text: content.text }] };
    };
    const meta = { title: res.title, description: res.description, mimeType: res.mimeType };
    if (res.template) {
      const list = res.list;
      const template = new ResourceTemplate(res.uri, {
        list: list ? () => ({ resources: list(app) }) : undefined,
        ...(res.uri.includes('{run_id}') ? { complete: { run_id: complete.run_id } } : {}),
      });
      server.registerResource(res.name, template, meta, (uri, vars) => {
        const flat: Record<string, string> = {};
        for (const [k, v] of Object.entries(vars)) flat[k] = Array.isArray(v) ? v.join(',') : String(v);
        return read(uri, flat);
      });
    } else {
      server.registerResource(res.name, res.uri, meta, (uri) => read(uri, {}));
    }
  }

  registerBoardApp(server);
  if (resources.length) paginateResourceList(server);
  registerPrompts(server, app);

  if (opts.notifyChanges) {
    const detachSubscriptions = enableSubscriptions(server, app);
    const detachLogs = forwardStepLogs(server, app);
    const changed = () => {
      if (server.isConnected()) server.sendResourceListChanged();
    };
    const onArtifact = (a: { artifact_type: string }) => {
      if (a.artifact_type === 'run_digest' || a.artifact_type === 'manager_insight') changed();
    };
    app.service.on('run', changed);
    app.service.on('artifact', onArtifact);
    const prevClose = server.server.onclose;
    server.server.onclose = () => {
      app.service.off('run', changed);
      app.service.off('artifact', onArtifact);
      detachSubscriptions();
      detachLogs();
      prevClose?.();
    };
  }
  return server;
}

