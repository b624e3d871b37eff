import { McpServer, ResourceTemplate, type CallToolResult, type ServerContext } from '@modelcontextprotocol/server';
import type { App } from '../app.js';
import { Registry, effectiveInput, type Tier, type ToolContext } from '../registry.js';
import type { ResourceDefinition } from '../resources.js';
import { RESOURCES } from '../../resources/index.js';
import { TOOLS } from '../../tools/index.js';
import { VERSION } from '../version.js';
import { boardToolMeta, registerBoardApp } from '../board/mcp-app.js';
import { listedSchema } from './listed-schema.js';

export interface McpServerOptions {
  /** Register only read-tier tools (write and admin tools are hidden, not refused). */
  readOnly?: boolean;
  /** Push resources/list_changed when runs or artifacts change (long-lived connections only). */
  notifyChanges?: boolean;
  registry?: Registry;
  resources?: readonly ResourceDefinition[];
}

export const SERVER_INSTRUCTIONS = `agentpr-mcp orchestrates AI coding agent runs against GitHub repositories.
Each run moves through an explicit state machine (QUEUED -> DISCOVERY -> PLAN_READY -> IMPLEMENTING -> LOCAL_VALIDATING -> PUSHED -> CI_WAIT -> REVIEW_WAIT -> DONE, with PAUSED, NEEDS_HUMAN_REVIEW and FAILED_* on the side).
Start with list-runs or show-run; create-run makes a run; every state change is an idempotent event. Resources: agentpr://runs, agentpr://runs/{run_id}, agentpr://runs/{run_id}/events.`;

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
  const registry = opts.registry ?? new Registry(TOOLS);
  const maxTier: Tier = opts.readOnly ? 'read' : 'admin';
  const server = new McpServer(
    { name: 'agentpr-mcp', version: VERSION },
    { capabilities: { logging: {}, resources: { listChanged: true }, tools: { listChanged: false } }, instructions: SERVER_INSTRUCTIONS },
  );

  for (const tool of registry.visible(maxTier)) {
    server.registerTool(
      tool.name,
      {
        title: tool.title,
        description: tool.description,
        inputSchema: listedSchema(tool.name, effectiveInput(tool), 'input'),
        outputSchema: listedSchema(tool.name, tool.output, 'output'),
        annotations: { title: tool.title, ...tool.annotations },
        _meta: boardToolMeta(tool.name),
      },
      async (args: unknown, ctx: ServerContext): Promise<CallToolResult> => {
        const clientName = server.server.getClientVersion()?.name;
        const outcome = await registry.call(
          tool.name,
          args,
          { app, entry: 'mcp', actor: clientName ? `mcp:${clientName}` : 'mcp', signal: ctx.mcpReq.signal, progress: progressFor(ctx) },
          { maxTier },
        );
        if (!outcome.ok) return { isError: true, content: [{ type: 'text', text: outcome.error }] };
        return { content: [{ type: 'text', text: outcome.text }], structuredContent: outcome.data };
      },
    );
  }

  for (const res of opts.resources ?? RESOURCES) {
    const read = (uri: URL, vars: Record<string, string>) => {
      const params = Object.fromEntries(uri.searchParams.entries());
      const content = res.read(app, uri, { ...params, ...vars });
      return { contents: [{ uri: uri.href, mimeType: content.mimeType, text: content.text }] };
    };
    const meta = { title: res.title, description: res.description, mimeType: res.mimeType };
    if (res.template) {
      const list = res.list;
      const template = new ResourceTemplate(res.uri, {
        list: list ? () => ({ resources: list(app) }) : undefined,
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

  if (opts.notifyChanges) {
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
      prevClose?.();
    };
  }
  return server;
}

