import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { hostname, networkInterfaces } from 'node:os';
import { hostHeaderValidation, toNodeHandler } from '@modelcontextprotocol/node';
import { createMcpHandler } from '@modelcontextprotocol/server';
import type { App } from '../app.js';
import { ConfigurationError } from '../core/errors.js';
import { createMcpServer } from './server.js';
import { createBoardRoutes } from '../board/http.js';
import type { Toolset } from './toolsets.js';

export interface HttpServerOptions {
  app: App;
  host?: string;
  port?: number;
  /** Bearer token; default AGENTPR_MCP_TOKEN, else the token file in the data home (generated on first start). */
  token?: string;
  /** Serve without a token (loopback only; logged as a warning). */
  noAuth?: boolean;
  /** Browser origins accepted besides the server's own (AGENTPR_MCP_ALLOWED_ORIGINS), e.g. https://app.example.com. */
  allowedOrigins?: string[];
  /** Where the one-time token notice goes (default process stderr). */
  stderr?: (text: string) => void;
  readOnly?: boolean;
  /** Expose only these toolsets (default all). */
  toolsets?: readonly Toolset[];
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
  /** 'bearer' unless started with noAuth. */
  auth: 'bearer' | 'none';
  /** The token file used, when the token came from the data home. */
  tokenFile?: string;
  close: () => Promise<void>;
}

export const MCP_TOKEN_FILE = 'mcp_token';

/**
 * The HTTP token kept in the data home, as Jupyter does: generated on first start (32 random
 * bytes, hex), written 0600; a file other users can read is narrowed to 0600 again.
 */
export function loadOrCreateToken(home: string): { token: string; file: string; created: boolean } {
  const file = join(home, MCP_TOKEN_FILE);
  try {
    const token = randomBytes(32).toString('hex');
    writeFileSync(file, `${token}\n`, { mode: 0o600, flag: 'wx' });
    return { token, file, created: true };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new ConfigurationError(`cannot write the MCP token file ${file}: ${(err as Error).message}`);
  }
  if ((statSync(file).mode & 0o077) !== 0) chmodSync(file, 0o600);
  const token = readFileSync(file, 'utf8').trim();
  if (token.length < 16) throw new ConfigurationError(`the MCP token file ${file} holds no usable token (16+ characters); delete it to generate a new one`);
  return { token, file, created: false };
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1', '[::1]']);

export function isLoopbackHost(host: string): boolean {
  return LOOPBACK.has(host) || /^127\.\d+\.\d+\.\d+$/.test(host);
}

function bracketed(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

/**
 * A wildcard bind (0.0.0.0, ::) answers on every interface: its addresses and the machine's name
 * are Host values a remote client uses as written. A DNS name of the machine (agentpr.example.com)
 * goes in AGENTPR_MCP_ALLOWED_HOSTS.
 */
export function machineHostnames(): string[] {
  const names = [hostname()];
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) names.push(a.family === 'IPv6' ? `[${a.address.split('%')[0]}]` : a.address);
  }
  return names;
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
 * createMcpHandler). Guards, in order: path, Host allow-list and Origin (this server's own or a
 * configured one; DNS rebinding and other local pages -> 403), bearer token (401, on by default).
 */
export async function startHttpServer(opts: HttpServerOptions): Promise<RunningHttpServer> {
  const { app } = opts;
  const host = opts.host ?? '127.0.0.1';
  const port = opts.port ?? 8765;
  const path = opts.path ?? '/mcp';
  let token = opts.token || app.env.AGENTPR_MCP_TOKEN || undefined;
  let stored: ReturnType<typeof loadOrCreateToken> | undefined;
  if (opts.noAuth) {
    if (!isLoopbackHost(host)) {
      throw new ConfigurationError(`refusing to bind ${host} without a token: --no-auth is for loopback addresses only; drop --no-auth (a token is generated) or bind 127.0.0.1`);
    }
    token = undefined;
  } else if (!token) {
    stored = loadOrCreateToken(app.config.home);
    token = stored.token;
  }
  const extra = opts.allowedHosts ?? (process.env.AGENTPR_MCP_ALLOWED_HOSTS ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  const hostnames = [...new Set(['localhost', '127.0.0.1', '[::1]', ...(host === '0.0.0.0' || host === '::' ? machineHostnames() : [bracketed(host)]), ...extra])];
  const validateHost = hostHeaderValidation(hostnames);
  const extraOrigins = new Set(
    (opts.allowedOrigins ?? (app.env.AGENTPR_MCP_ALLOWED_ORIGINS ?? '').split(',')).map((s) => s.trim().replace(/\/+$/, '')).filter(Boolean),
  );
  const maxBody = opts.maxBodyBytes ?? 4 * 1024 * 1024;
  const log = app.logger.child({ component: 'mcp-http' });

  const handler = createMcpHandler(() => createMcpServer(app, { readOnly: opts.readOnly, toolsets: opts.toolsets }), {
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

  // The run board (/, /board/...) shares the guards and the token; see src/board/http.ts.
  const board = createBoardRoutes({ app, token, readOnly: opts.readOnly, log: app.logger.child({ component: 'board-http' }) });
  // A browser page may call only from this server's own origin (scheme, host and port) or a
  // configured one; any other localhost port is another program's page.
  const originAllowed = (req: IncomingMessage, res: ServerResponse): boolean => {
    const origin = req.headers.origin;
    if (origin === undefined) return true;
    const own = (server.address() as AddressInfo | null)?.port;
    const allowed = extraOrigins.has(origin) || hostnames.some((h) => origin === `http://${h}:${own}`);
    if (!allowed) answer(res, 403, { error: `origin ${origin} is not allowed; pages must come from this server's own origin or AGENTPR_MCP_ALLOWED_ORIGINS` });
    return allowed;
  };

  const limits = httpLimits(opts, process.env);
  const server = createServer({ connectionsCheckingInterval: limits.checkEveryMs }, (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname !== path && board.handles(url.pathname)) {
      if (!validateHost(req, res) || !originAllowed(req, res)) return;
      board.handle(req, res, url);
      return;
    }
    if (url.pathname !== path) {
      answer(res, 404, { error: `not found; the MCP endpoint is ${path}` });
      return;
    }
    if (!validateHost(req, res) || !originAllowed(req, res)) {
      log.warn({ host: req.headers.host, origin: req.headers.origin }, 'rejected Host/Origin');
      return;
    }
    if (token && !bearerMatches(req.headers.authorization, token)) {
      answer(res, 401, { error: `missing or wrong bearer token; send Authorization: Bearer <token> (AGENTPR_MCP_TOKEN, or the token in ${join(app.config.home, MCP_TOKEN_FILE)})` }, { 'www-authenticate': 'Bearer' });
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
  log.info({ url, readOnly: Boolean(opts.readOnly), auth: token ? 'bearer' : 'none', token_file: stored?.file }, 'MCP HTTP server listening');
  if (opts.noAuth) log.warn({ url }, 'MCP HTTP server without a token (--no-auth): every local user and program can call every tool');
  if (stored?.created) {
    // Printed once, when generated; later starts read it from the file.
    (opts.stderr ?? ((t: string) => process.stderr.write(t)))(
      `agentpr: generated the MCP HTTP token, stored in ${stored.file} (mode 0600); clients send Authorization: Bearer <token>\n  ${url}\n  token: ${stored.token}\n`,
    );
  }
  return {
    url,
    host: addr.address,
    port: addr.port,
    server,
    auth: token ? 'bearer' : 'none',
    ...(stored ? { tokenFile: stored.file } : {}),
    close: async () => {
      app.service.off('run', onRun);
      app.service.off('artifact', onArtifact);
      board.close();
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
