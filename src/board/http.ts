import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { App } from '../app.js';
import { NotFoundError, errorMessage } from '../core/errors.js';
import { RUN_ID_PATTERN } from '../core/ids.js';
import { Registry } from '../registry.js';
import { TOOLS } from '../../tools/index.js';
import { boardSnapshot, boardVersion, runPage } from './model.js';
import { boardHtmlWithNonce } from './page.js';

/**
 * The run board over HTTP, mounted next to /mcp by the HTTP server:
 *   GET  /                      the board page (one self-contained HTML file)
 *   POST /board/login           token from the login form -> HttpOnly session cookie
 *   POST /board/logout          drops the cookie
 *   GET  /board/api/board       columns, cards and chart data (JSON)
 *   GET  /board/api/runs/<id>   one run's page data (JSON)
 *   POST /board/api/tools/<t>   pause, resume, retry, request-open-pr, approve-open-pr (JSON body = tool input)
 *   GET  /board/events          server-sent events: `change` whenever a run or its artifacts change
 * With a token configured, every route except the login form needs either the session cookie or
 * `Authorization: Bearer <token>`.
 */

export const BOARD_COOKIE = 'agentpr_board';
/** The tools the board's buttons may call; everything else is refused. */
export const BOARD_TOOLS = ['pause', 'resume', 'retry', 'request-open-pr', 'approve-open-pr'] as const;
const MAX_SSE_CLIENTS = 32;
const HEARTBEAT_MS = 20_000;
const POLL_MS = 2_000;
const MAX_JSON_BODY = 256 * 1024;

export interface BoardRoutesOptions {
  app: App;
  token?: string;
  readOnly?: boolean;
  log: Logger;
}

export interface BoardRoutes {
  handles: (pathname: string) => boolean;
  handle: (req: IncomingMessage, res: ServerResponse, url: URL) => void;
  close: () => void;
}

/** The cookie value: derived from the token, so a stolen cookie is not the token itself. */
export function sessionValue(token: string): string {
  return createHmac('sha256', token).update('agentpr-board-session-v1').digest('base64url');
}

function sameSecret(a: string, b: string): boolean {
  const x = createHmac('sha256', 'cmp').update(a).digest();
  const y = createHmac('sha256', 'cmp').update(b).digest();
  return timingSafeEqual(x, y);
}

function cookieOf(req: IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) return part.slice(i + 1).trim();
  }
  return undefined;
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff', ...headers });
  res.end(JSON.stringify(body));
}

const PAGE_HEADERS = (nonce: string): Record<string, string> => ({
  'content-type': 'text/html; charset=utf-8',
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'same-origin',
  'x-frame-options': 'DENY',
  'content-security-policy': `default-src 'none'; script-src 'nonce-${nonce}'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'`,
});

function loginPage(message: string | null): string {
  const esc = (t: string) => t.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>agentpr runs: sign in</title><link rel="icon" href="data:,">
<style>body{font-family:system-ui,sans-serif;background:#f6f7f9;display:grid;place-items:center;height:100vh;margin:0}
form{background:#fff;border:1px solid #e3e6ec;border-radius:8px;padding:20px 24px;min-width:320px}
input{font:inherit;padding:6px 8px;width:100%;margin:8px 0;box-sizing:border-box}button{font:inherit;padding:6px 14px}.bad{color:#b42318}</style></head>
<body><form method="post" action="/board/login"><h1 style="font-size:18px;margin-top:0">agentpr runs</h1>
<p>This board needs the server's token (<code>AGENTPR_MCP_TOKEN</code>). It is asked once; the browser then keeps a session cookie.</p>
${message ? `<p class="bad" role="alert">${esc(message)}</p>` : ''}
<label>Token <input type="password" name="token" autocomplete="current-password" autofocus required></label>
<button type="submit">Open the board</button></form></body></html>`;
}

function readBody(req: IncomingMessage, max: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let size = 0;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > max) {
        reject(new Error(`request body over ${max} bytes`));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

export function createBoardRoutes(opts: BoardRoutesOptions): BoardRoutes {
  const { app, token, log } = opts;
  const registry = new Registry(TOOLS);
  const session = token ? sessionValue(token) : undefined;
  const clients = new Set<ServerResponse>();
  let lastVersion = -1;
  let pending: NodeJS.Timeout | undefined;
  let pendingChange: Record<string, unknown> = {};

  const authorized = (req: IncomingMessage): boolean => {
    if (!token || !session) return true;
    const m = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '');
    if (m && sameSecret(m[1]!.trim(), token)) return true;
    const c = cookieOf(req, BOARD_COOKIE);
    return c !== undefined && sameSecret(c, session);
  };

  // Changes reach open pages as one `change` event per burst (an action moves state and adds
  // artifacts in a few milliseconds).
  const broadcast = (change: Record<string, unknown>) => {
    if (clients.size === 0) return;
    // One burst about one run names it; a burst over several runs names none (pages reload all).
    const prev = pendingChange.run_id;
    pendingChange = pendingChange.mixed ? pendingChange : { ...pendingChange, ...change };
    if (prev !== undefined && change.run_id !== undefined && prev !== change.run_id) pendingChange = { mixed: true };
    if (pending) return;
    pending = setTimeout(() => {
      pending = undefined;
      const data = JSON.stringify(pendingChange);
      pendingChange = {};
      for (const c of clients) c.write(`event: change\ndata: ${data}\n\n`);
    }, 50);
  };
  const onRun = (r: { run_id: string; state: string }) => broadcast({ run_id: r.run_id, state: r.state });
  const onEvent = (r: { run_id: string; state: string }) => broadcast({ run_id: r.run_id, state: r.state });
  const onArtifact = (a: { run_id: string }) => broadcast({ run_id: a.run_id });
  app.service.on('run', onRun);
  app.service.on('event', onEvent);
  app.service.on('artifact', onArtifact);
  // Other processes (the CLI, the webhook receiver, a manager loop) write the same database: a
  // cheap version read picks their changes up while a page is open.
  const poller = setInterval(() => {
    if (clients.size === 0) return;
    try {
      const v = boardVersion(app);
      if (lastVersion !== -1 && v !== lastVersion) broadcast({});
      lastVersion = v;
    } catch (err) {
      log.warn({ err: errorMessage(err) }, 'board change poll failed');
    }
  }, POLL_MS);
  poller.unref();
  const heartbeat = setInterval(() => {
    for (const c of clients) c.write(': keep-alive\n\n');
  }, HEARTBEAT_MS);
  heartbeat.unref();

  const deny = (req: IncomingMessage, res: ServerResponse, url: URL) => {
    if (req.method === 'GET' && (url.pathname === '/' || url.pathname === '/board')) {
      res.writeHead(401, { ...PAGE_HEADERS('none'), 'www-authenticate': 'Bearer' });
      res.end(loginPage(null));
      return;
    }
    sendJson(res, 401, { error: 'missing or wrong token; sign in at / or send Authorization: Bearer <AGENTPR_MCP_TOKEN>' }, { 'www-authenticate': 'Bearer' });
  };

  const login = async (req: IncomingMessage, res: ServerResponse) => {
    let given = '';
    try {
      given = new URLSearchParams(await readBody(req, 8 * 1024)).get('token')?.trim() ?? '';
    } catch (err) {
      sendJson(res, 413, { error: errorMessage(err) });
      return;
    }
    if (!token || !session) {
      res.writeHead(303, { location: '/' });
      res.end();
      return;
    }
    if (!given || !sameSecret(given, token)) {
      log.warn({ remote: req.socket.remoteAddress }, 'board sign-in with a wrong token');
      res.writeHead(401, { ...PAGE_HEADERS('none'), 'www-authenticate': 'Bearer' });
      res.end(loginPage('That token is not the one this server was started with (AGENTPR_MCP_TOKEN). Try again.'));
      return;
    }
    res.writeHead(303, { location: '/', 'set-cookie': `${BOARD_COOKIE}=${session}; HttpOnly; SameSite=Strict; Path=/` });
    res.end();
  };

  const callTool = async (req: IncomingMessage, res: ServerResponse, name: string) => {
    if (!(BOARD_TOOLS as readonly string[]).includes(name)) {
      sendJson(res, 404, { ok: false, error: `the board calls ${BOARD_TOOLS.join(', ')} only; '${name}' is not one of them` });
      return;
    }
    if (!/^application\/json\b/i.test(req.headers['content-type'] ?? '')) {
      sendJson(res, 415, { ok: false, error: 'send the tool input as a JSON body (content-type: application/json)' });
      return;
    }
    let args: unknown;
    try {
      args = JSON.parse(await readBody(req, MAX_JSON_BODY));
    } catch (err) {
      sendJson(res, 400, { ok: false, error: `the body is not JSON tool input: ${errorMessage(err)}` });
      return;
    }
    const outcome = await registry.call(name, args, { app, entry: 'mcp', actor: 'board' }, { maxTier: opts.readOnly ? 'read' : 'admin' });
    if (!outcome.ok) {
      const status = outcome.code === 'invalid_input' ? 400 : outcome.code === 'forbidden' ? 403 : outcome.code === 'conflict' ? 409 : outcome.code === 'internal' ? 500 : 422;
      sendJson(res, status, { ok: false, code: outcome.code, error: outcome.error });
      return;
    }
    sendJson(res, 200, { ok: true, text: outcome.text, data: outcome.data });
  };

  const events = (req: IncomingMessage, res: ServerResponse) => {
    if (clients.size >= MAX_SSE_CLIENTS) {
      sendJson(res, 503, { error: `too many open boards (${MAX_SSE_CLIENTS}); close one and reload` }, { 'retry-after': '10' });
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    res.write(`retry: 2000\nevent: hello\ndata: ${JSON.stringify({ version: boardVersion(app) })}\n\n`);
    if (lastVersion === -1) lastVersion = boardVersion(app);
    clients.add(res);
    const drop = () => clients.delete(res);
    req.on('close', drop);
    res.on('close', drop);
  };

  const route = async (req: IncomingMessage, res: ServerResponse, url: URL) => {
    const p = url.pathname;
    const method = req.method ?? 'GET';
    if (p === '/board/login' && method === 'POST') return login(req, res);
    if (!authorized(req)) return deny(req, res, url);
    if ((p === '/' || p === '/board') && method === 'GET') {
      const nonce = randomBytes(16).toString('base64');
      res.writeHead(200, PAGE_HEADERS(nonce));
      res.end(boardHtmlWithNonce(nonce));
      return;
    }
    if (p === '/board/logout' && method === 'POST') {
      res.writeHead(303, { location: '/', 'set-cookie': `${BOARD_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0` });
      res.end();
      return;
    }
    if (p === '/board/api/board' && method === 'GET') return sendJson(res, 200, boardSnapshot(app));
    const run = /^\/board\/api\/runs\/([^/]+)$/.exec(p);
    if (run && method === 'GET') {
      const id = decodeURIComponent(run[1]!);
      if (!RUN_ID_PATTERN.test(id)) return sendJson(res, 400, { error: `'${id}' is not a run id (run_ + 12 hex digits)` });
      try {
        return sendJson(res, 200, runPage(app, id));
      } catch (err) {
        if (err instanceof NotFoundError) return sendJson(res, 404, { error: err.message });
        throw err;
      }
    }
    const tool = /^\/board\/api\/tools\/([a-z-]+)$/.exec(p);
    if (tool && method === 'POST') return callTool(req, res, tool[1]!);
    if (p === '/board/events' && method === 'GET') return events(req, res);
    sendJson(res, method === 'GET' || method === 'POST' ? 404 : 405, { error: `no board route ${method} ${p}; the board is at /, the MCP endpoint at /mcp` });
  };

  return {
    handles: (pathname) => pathname === '/' || pathname === '/board' || pathname.startsWith('/board/'),
    handle: (req, res, url) => {
      route(req, res, url).catch((err: unknown) => {
        log.error({ err: errorMessage(err) }, 'board request failed');
        if (!res.headersSent) sendJson(res, 500, { error: 'internal error' });
        else res.end();
      });
    },
    close: () => {
      app.service.off('run', onRun);
      app.service.off('event', onEvent);
      app.service.off('artifact', onArtifact);
      clearInterval(poller);
      clearInterval(heartbeat);
      if (pending) clearTimeout(pending);
      for (const c of clients) c.end();
      clients.clear();
    },
  };
}
