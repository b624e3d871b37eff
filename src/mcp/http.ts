import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createHash, timingSafeEqual } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { hostHeaderValidation, originValidation, toNodeHandler } from '@modelcontextprotocol/node';
import { createMcpHandler } from '@modelcontextprotocol/server';
import type { App } from '../app.js';
import { ConfigurationError } from '../core/errors.js';
import { createMcpServer } from './server.js';

export interface HttpServerOptions {
  app: App;
  host?: string;
  port?: number;
  /** Bearer token; default AGENTPR_MCP_TOKEN. Required to bind a non-loopback address. */
  token?: string;
  readOnly?: boolean;
  /** Extra Host/Origin hostnames to accept besides loopback and the bind host (AGENTPR_MCP_ALLOWED_HOSTS). */
  allowedHosts?: string[];
  path?: string;
  /** Largest request body accepted (bytes). */
  maxBodyBytes?: number;
  /** Slow clients: the whole request (head and body) must arrive within this (default 30 s; responses, SSE included, are not limited). */
  requestTimeoutMs?: number;
  /** The request head must arrive within this (default 10 s). */
  headersTimeoutMs?: number;
  /** Open connections at most (default AGENTPR_HTTP_MAX_CONNECTIONS, else 1024); more are closed at once. */
  maxConnections?: number;
}

export interface RunningHttpServer {
  url: string;
  host: string;
  port: number;
  server: Server;
  close: () => Promise<void>;
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1', '[::1]']);

export function isLoopbackHost(host: string): boolean {
  return LOOPBACK.has(host) || /^127\.\d+\.\d+\.\d+$/.test(host);
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

/** Constant-time bearer check (hashing first makes the lengths equal). */
export function bearerMatches(header: string | undefined, token: string): boolean {
  const m = /^Bearer\s+(.+)$/i.exec(header ?? '');
  if (!m) return false;
  return timingSafeEqual(sha256(m[1]!.trim()), sha256(token));
}

function answer(res: ServerResponse, status: number, body: Record<string, unknown>, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

/**
 * Streamable HTTP at /mcp (stateless: a fresh McpServer per request through the SDK's
 * createMcpHandler). Guards, in order: path, Host/Origin allow-list (DNS rebinding -> 403),
 * bearer token (401).
 */
export async function startHttpServer(opts: HttpServerOptions): Promise<RunningHttpServer> {
  const { app } = opts;
  const host = opts.host ?? '127.0.0.1';
  const port = opts.port ?? 8765;
  const path = opts.path ?? '/mcp';
  const token = opts.token ?? (process.env.AGENTPR_MCP_TOKEN || undefined);
  if (!isLoopbackHost(host) && !token) {
    throw new ConfigurationError(
      `refusing to bind ${host}: a non-loopback address needs AGENTPR_MCP_TOKEN set (clients then send Authorization: Bearer <token>); or bind 127.0.0.1`,
    );
  }
  const extra = opts.allowedHosts ?? (process.env.AGENTPR_MCP_ALLOWED_HOSTS ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  const hostnames = [...new Set(['localhost', '127.0.0.1', '[::1]', ...(host === '0.0.0.0' || host === '::' ? [] : [host.includes(':') && !host.startsWith('[') ? `[${host}]` : host]), ...extra])];
  const validateHost = hostHeaderValidation(hostnames);
  const validateOrigin = originValidation(hostnames);
  const maxBody = opts.maxBodyBytes ?? 4 * 1024 * 1024;
  const log = app.logger.child({ component: 'mcp-http' });

  const handler = createMcpHandler(() => createMcpServer(app, { readOnly: opts.readOnly }), {
    legacy: 'stateless',
    maxRequestBodySize: maxBody,
    onerror: (err) => log.warn({ err: err.message }, 'mcp request rejected'),
  });
  // Stateless HTTP has no connection to push on; 2026-era clients hold a subscriptions/listen
  // stream instead, and the handler's bus fans change events out to them.
  const onRun = () => handler.notify.resourcesChanged();
  const onArtifact = (a: { artifact_type: string }) => {
    if (a.artifact_type === 'run_digest' || a.artifact_type === 'manager_insight') handler.notify.resourcesChanged();
  };
  app.service.on('run', onRun);
  app.service.on('artifact', onArtifact);
  const nodeHandler = toNodeHandler(handler, {
    maxRequestBodySize: maxBody,
    onerror: (err) => log.error({ err: err.message }, 'mcp adapter error'),
  });

  const limits = httpLimits(opts, process.env);
  const server = createServer({ connectionsCheckingInterval: limits.checkEveryMs }, (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname !== path) {
      answer(res, 404, { error: `not found; the MCP endpoint is ${path}` });
      return;
    }
    if (!validateHost(req, res) || !validateOrigin(req, res)) {
      log.warn({ host: req.headers.host, origin: req.headers.origin }, 'rejected Host/Origin');
      return;
    }
    if (token && !bearerMatches(req.headers.authorization, token)) {
      answer(res, 401, { error: 'missing or wrong bearer token; send Authorization: Bearer <AGENTPR_MCP_TOKEN>' }, { 'www-authenticate': 'Bearer' });
      return;
    }
    nodeHandler(req, res).catch((err: unknown) => {
      log.error({ err }, 'mcp request failed');
      if (!res.headersSent) answer(res, 500, { error: 'internal error' });
      else res.end();
    });
  });
  // Slow clients (a head or body trickling in) are cut off; this bounds receiving the request only,
  // so SSE responses of long tool calls stay open.
  server.headersTimeout = limits.headersTimeoutMs;
  server.requestTimeout = limits.requestTimeoutMs;
  server.keepAliveTimeout = 5_000;
  server.maxConnections = limits.maxConnections;

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  const shownHost = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  const url = `http://${shownHost}:${addr.port}${path}`;
  log.info({ url, readOnly: Boolean(opts.readOnly), auth: token ? 'bearer' : 'none' }, 'MCP HTTP server listening');
  return {
    url,
    host: addr.address,
    port: addr.port,
    server,
    close: async () => {
      app.service.off('run', onRun);
      app.service.off('artifact', onArtifact);
      await handler.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Request/header timeouts and the connection cap of an HTTP server (MCP and webhook). */
export function httpLimits(
  opts: { requestTimeoutMs?: number; headersTimeoutMs?: number; maxConnections?: number },
  env: NodeJS.ProcessEnv,
): { requestTimeoutMs: number; headersTimeoutMs: number; maxConnections: number; checkEveryMs: number } {
  const fromEnv = Number(env.AGENTPR_HTTP_MAX_CONNECTIONS);
  const maxConnections = opts.maxConnections ?? (Number.isInteger(fromEnv) && fromEnv > 0 ? fromEnv : 1024);
  const requestTimeoutMs = opts.requestTimeoutMs ?? 30_000;
  // Node requires headersTimeout <= requestTimeout.
  const headersTimeoutMs = Math.min(opts.headersTimeoutMs ?? 10_000, requestTimeoutMs);
  // Node checks the timeouts every this often (its default, 30 s, would let a slow client stay twice as long).
  const checkEveryMs = Math.max(250, Math.min(5_000, Math.floor(headersTimeoutMs / 2)));
  return { requestTimeoutMs, headersTimeoutMs, maxConnections, checkEveryMs };
}
