import { httpLimits } from '../mcp/http.js';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { App } from '../app.js';
import { ConfigurationError, errorMessage } from '../core/errors.js';
import { Registry } from '../registry.js';
import { TOOLS } from '../../tools/index.js';
import { AuditWriter, webhookAuditPath, type AuditLine } from './audit.js';
import { DeliveryProcessingError, planRead, processDelivery, readDelivery, type DeliveryPlan, type DeliveryRead } from './webhook-events.js';
import { DELIVERY_SOURCE } from './ledger.js';
import { startFollowupWorker, type FollowupWorker, type FollowupWorkerOptions } from './followups.js';
import { GroupCommit } from './group-commit.js';
import { payloadSha256, SIGNATURE_PREFIX, signatureMatches } from './webhook-signature.js';

export { DELIVERY_SOURCE };
export const DEFAULT_WEBHOOK_HOST = '127.0.0.1';
export const DEFAULT_WEBHOOK_PORT = 8787;
export const DEFAULT_WEBHOOK_PATH = '/github/webhook';

export interface WebhookServerOptions {
  app: App;
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  path?: string;
  /** Slow clients: see HttpServerOptions (defaults 30 s request, 10 s head, 1024 connections). */
  requestTimeoutMs?: number;
  headersTimeoutMs?: number;
  maxConnections?: number;
  /** The first secret is current; the others are accepted too, for rotation. */
  secrets?: string[];
  /** Accept unsigned deliveries when no secret is set (local development only). */
  allowUnsigned?: boolean;
  /** Defaults to the one registry of TOOLS. */
  registry?: Registry;
  /** The follow-up worker (queued syncs); on by default. Tests may tune its backoff. */
  followups?: false | Omit<FollowupWorkerOptions, 'app' | 'registry'>;
}

export interface WebhookServer {
  url: string;
  server: Server;
  auditPath: string;
  /** The queued-sync worker, when running (idle() waits until nothing due is left). */
  followups?: FollowupWorker;
  close(): Promise<void>;
}

/** Secrets from the environment: AGENTPR_GITHUB_WEBHOOK_SECRET, plus comma-separated AGENTPR_GITHUB_WEBHOOK_SECRETS for rotation. */
export function webhookSecretsFromEnv(env: NodeJS.ProcessEnv = process.env): string[] {
  const extra = (env.AGENTPR_GITHUB_WEBHOOK_SECRETS ?? '').split(',').map((s) => s.trim());
  return [env.AGENTPR_GITHUB_WEBHOOK_SECRET?.trim() ?? '', ...extra].filter((s) => s.length > 0);
}

interface Answer {
  status: number;
  outcome: string;
  body: Record<string, unknown>;
  processed?: number;
  ignored?: number;
  error?: string | null;
  /** Close the connection after answering (the body was not read to its end). */
  close?: boolean;
}

const MAX_DELIVERY_ID = 200;

interface Reserved {
  plan: DeliveryPlan | undefined;
  settledOutcome: string | undefined;
  reservation: ReturnType<App['service']['reserveDelivery']>;
}

/**
 * The GitHub webhook receiver, checks in this order: path 404, Content-Length 400,
 * size 413 (declared, then counted while the body streams in), X-GitHub-Event 400, signature 401,
 * delivery reservation (repeat -> 200 duplicate_delivery), JSON 400 (released), recording 500
 * (released, so GitHub's redelivery is processed), else 200. A sync the delivery asks for is queued
 * in the database and worked after the answer (followups.ts). One audit line per request.
 */
export async function startWebhookServer(opts: WebhookServerOptions): Promise<WebhookServer> {
  const { app } = opts;
  const secrets = opts.secrets ?? [];
  if (!secrets.length && !opts.allowUnsigned) {
    throw new ConfigurationError(
      'no webhook secret: set AGENTPR_GITHUB_WEBHOOK_SECRET to the secret configured on the GitHub webhook (or pass --allow-unsigned for local development only)',
    );
  }
  const unsigned = secrets.length === 0;
  const path = opts.path ?? DEFAULT_WEBHOOK_PATH;
  if (!path.startsWith('/')) throw new ConfigurationError(`webhook path '${path}' must start with /, e.g. ${DEFAULT_WEBHOOK_PATH}`);
  const maxBytes = app.policy.github_webhook.max_payload_bytes;
  const registry = opts.registry ?? new Registry(TOOLS);
  const audit = new AuditWriter(webhookAuditPath(app), { maxBytes: app.policy.github_webhook.audit_log_max_bytes, keep: app.policy.github_webhook.audit_log_keep });
  const log = app.logger.child({ component: 'github-webhook' });
  const followups = opts.followups === false ? undefined : startFollowupWorker({ app, registry, ...(opts.followups ?? {}) });
  const ledger = new GroupCommit(app.service);
  if (unsigned) {
    log.warn('GitHub webhook runs WITHOUT signature verification (--allow-unsigned): anyone who can reach it can change run states; use only for local development');
  }

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const started = performance.now();
    const event = headerValue(req, 'x-github-event');
    const delivery = headerValue(req, 'x-github-delivery');
    const answer = await decide(req);
    const line: AuditLine = {
      ts: new Date().toISOString(),
      // Header values are the sender's: kept short, so an unauthenticated request costs a few bytes.
      event: clip(event),
      delivery: clip(delivery),
      status_code: answer.status,
      outcome: answer.outcome,
      processed: answer.processed ?? 0,
      ignored: answer.ignored ?? 0,
      error: answer.error ? answer.error.slice(0, 500) : null,
      duration_ms: Math.round((performance.now() - started) * 100) / 100,
    };
    audit.write(line);
    if (answer.status >= 500) log.error({ delivery, event, err: answer.error }, 'webhook delivery failed; reservation released');
    else if (answer.status >= 400) log.warn({ delivery, event, status: answer.status, outcome: answer.outcome }, 'webhook request refused');
    else log.debug({ delivery, event, outcome: answer.outcome }, 'webhook delivery');
    send(req, res, answer);
  };

  const decide = async (req: IncomingMessage): Promise<Answer> => {
    const urlPath = (req.url ?? '/').split('?')[0];
    if (urlPath !== path) return { status: 404, outcome: 'not_found', body: { ok: false, error: `not found; the webhook listens on ${path}` }, close: true };
    if (req.method === 'GET' || req.method === 'HEAD') return { status: 200, outcome: 'alive', body: { ok: true, alive: true, path } };
    if (req.method !== 'POST') {
      return { status: 405, outcome: 'method_not_allowed', body: { ok: false, error: `method ${req.method} not allowed; POST deliveries, GET to check the receiver is alive` }, close: true };
    }
    const lengthHeader = req.headers['content-length'];
    let declared: number | undefined;
    if (lengthHeader !== undefined) {
      if (!/^\d{1,15}$/.test(lengthHeader)) return { status: 400, outcome: 'bad_length', body: { ok: false, error: `invalid Content-Length '${lengthHeader}'` }, close: true };
      declared = Number(lengthHeader);
    } else if (req.headers['transfer-encoding'] === undefined) {
      return { status: 400, outcome: 'bad_length', body: { ok: false, error: 'missing Content-Length' }, close: true };
    }
    const tooLarge = (size: string): Answer => ({
      status: 413,
      outcome: 'payload_too_large',
      body: { ok: false, error: `payload ${size} exceeds github_webhook.max_payload_bytes (${maxBytes})` },
      error: `payload ${size} > ${maxBytes} bytes`,
      close: true,
    });
    if (declared !== undefined && declared > maxBytes) return tooLarge(`of ${declared} bytes`);
    const body = await readBody(req, maxBytes);
    if (body === 'too_large') return tooLarge('over the limit');
    if (body === 'aborted') return { status: 400, outcome: 'aborted', body: { ok: false, error: 'request body ended early' }, error: 'client aborted the body', close: true };

    const event = headerValue(req, 'x-github-event');
    if (!event) return { status: 400, outcome: 'missing_event', body: { ok: false, error: 'missing X-GitHub-Event header' } };
    const signature = unsigned ? undefined : headerValue(req, 'x-hub-signature-256');
    if (!unsigned) {
      if (!signature || !signatureMatches(secrets, body, signature)) {
        return { status: 401, outcome: 'invalid_signature', body: { ok: false, error: 'invalid or missing X-Hub-Signature-256' }, error: signature ? 'signature mismatch' : 'missing signature' };
      }
    }
    const delivery = headerValue(req, 'x-github-delivery');
    if (!delivery || delivery.length > MAX_DELIVERY_ID) {
      return { status: 400, outcome: 'missing_delivery', body: { ok: false, error: `missing or over-long X-GitHub-Delivery header (at most ${MAX_DELIVERY_ID} characters)` } };
    }

    // Parsing and planning only read. A delivery that needs no tool call (most of them: PRs no run
    // tracks, pings) is reserved with its final outcome in one write; the others are reserved,
    // processed, then finished, in the documented order.
    const form = formEncoded(req);
    let read: DeliveryRead | undefined;
    let parseError: unknown;
    try {
      const raw = body.toString('utf8');
      // Only what planning reads is kept: the parsed body is garbage before the next await, so
      // deliveries waiting for their ledger write do not hold (and the GC does not copy) 20 KB graphs.
      read = readDelivery(event, JSON.parse(form ? formPayload(raw) : raw));
    } catch (err) {
      parseError = err;
    }
    // The ledger's fingerprint of the body: the signature just verified (the HMAC-SHA256 of these
    // bytes), so the body is hashed once; a plain SHA-256 only when deliveries are not signed.
    const digest = signature ? `hmac-sha256:${signature.slice(SIGNATURE_PREFIX.length)}` : `sha256:${payloadSha256(body)}`;
    // Planning reads and the reservation share one transaction: the plan is made from the state the
    // reservation is written against. Deliveries that arrive together share that transaction (group
    // commit); each answer waits for the commit.
    let reserved: Reserved;
    try {
      reserved = await ledger.run(() => {
        const plan = read ? planRead(app, read) : undefined;
        const settledOutcome = plan && plan.calls.length === 0 && plan.followups.length === 0 ? (plan.pong ? 'pong' : 'ignored') : undefined;
        const reservation = app.service.reserveDelivery({ source: DELIVERY_SOURCE, delivery_id: delivery, event_type: event, payload_digest: digest }, undefined, settledOutcome);
        return { plan, settledOutcome, reservation };
      });
    } catch (err) {
      return notRecorded(err, delivery, event);
    }
    const { plan, settledOutcome, reservation } = reserved;
    if (!reservation.reserved) {
      return { status: 200, outcome: 'duplicate_delivery', body: { ok: true, outcome: 'duplicate_delivery', first_received_at: reservation.received_at, first_outcome: reservation.outcome } };
    }
    if (!plan) {
      app.service.releaseDelivery(DELIVERY_SOURCE, delivery);
        return {
        status: 400,
        outcome: 'invalid_json',
        body: { ok: false, error: `${form ? "the form field 'payload' is not valid JSON" : 'body is not valid JSON'}: ${errorMessage(parseError)}` },
        error: 'invalid JSON',
      };
    }
    try {
      const report = await processDelivery(app, registry, plan, { actor: read?.sender ? `github:${read.sender}` : 'github', deliveryId: delivery });
      if (!settledOutcome) await ledger.run(() => app.service.finishDelivery(DELIVERY_SOURCE, delivery, report.outcome));
      if (report.queued.length) followups?.kick();
      return {
        status: 200,
        outcome: report.outcome,
        processed: report.processed,
        ignored: report.ignored,
        error: report.warning,
        body: { ok: true, outcome: report.outcome, processed: report.processed, ignored: report.ignored, calls: report.calls, queued: report.queued, notes: report.notes },
      };
    } catch (err) {
      app.service.releaseDelivery(DELIVERY_SOURCE, delivery);
      const message = err instanceof DeliveryProcessingError ? err.message : `processing failed: ${errorMessage(err)}`;
      if (!(err instanceof DeliveryProcessingError)) log.error({ err, delivery, event }, 'webhook processing threw');
      return { status: 500, outcome: 'error', body: { ok: false, error: `${message}; the delivery was released, redeliver it from GitHub` }, error: message };
    }
  };

  /** The ledger write failed (the database refused it or stayed locked): nothing was recorded. */
  const notRecorded = (err: unknown, delivery: string, event: string): Answer => {
    const message = `recording the delivery failed: ${errorMessage(err)}`;
    log.error({ err, delivery, event }, 'webhook delivery not recorded');
    return { status: 500, outcome: 'error', body: { ok: false, error: `${message}; nothing was recorded, redeliver it from GitHub` }, error: message };
  };

  const limits = httpLimits(opts, app.env);
  const server = createServer({ requestTimeout: limits.requestTimeoutMs, headersTimeout: limits.headersTimeoutMs, keepAliveTimeout: 5_000, connectionsCheckingInterval: limits.checkEveryMs }, (req, res) => {
    handle(req, res).catch((err: unknown) => {
      log.error({ err }, 'webhook request handler crashed');
      if (!res.headersSent) send(req, res, { status: 500, outcome: 'error', body: { ok: false, error: 'internal error' }, close: true });
    });
  });
  // Expect: 100-continue is answered only after the cheap checks, so an oversized body is never sent.
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    const declared = Number(req.headers['content-length']);
    if ((req.url ?? '/').split('?')[0] === path && req.method === 'POST' && !(declared > maxBytes)) res.writeContinue();
    server.emit('request', req, res);
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.maxConnections = limits.maxConnections;
    server.listen(opts.port ?? DEFAULT_WEBHOOK_PORT, opts.host ?? DEFAULT_WEBHOOK_HOST, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  const url = `http://${host}:${addr.port}${path}`;
  log.info({ url, audit: audit.path, max_payload_bytes: maxBytes, secrets: secrets.length, unsigned }, 'GitHub webhook receiver listening');

  let closed: Promise<void> | undefined;
  return {
    url,
    server,
    auditPath: audit.path,
    ...(followups ? { followups } : {}),
    close: () =>
      (closed ??= (async () => {
        await followups?.stop();
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeIdleConnections();
        });
        await audit.close();
      })()),
  };
}

/** GitHub's other content type: `application/x-www-form-urlencoded` with the JSON in the `payload` field. */
function formEncoded(req: IncomingMessage): boolean {
  return /^application\/x-www-form-urlencoded\b/i.test(headerValue(req, 'content-type') ?? '');
}

function formPayload(raw: string): string {
  const payload = new URLSearchParams(raw).get('payload');
  if (payload === null) throw new Error("no 'payload' field in the form body");
  return payload;
}

function headerValue(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  const s = Array.isArray(v) ? v[0] : v;
  return s && s.length ? s : undefined;
}

/**
 * Reads the body, counting bytes as they arrive; past `max` it stops reading at once (the rest is
 * never buffered) and answers 'too_large'.
 */
function readBody(req: IncomingMessage, max: number): Promise<Buffer | 'too_large' | 'aborted'> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (v: Buffer | 'too_large' | 'aborted') => {
      if (done) return;
      done = true;
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('aborted', onAborted);
      req.off('error', onAborted);
      resolve(v);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > max) {
        req.pause();
        finish('too_large');
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => finish(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    const onAborted = () => finish('aborted');
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('aborted', onAborted);
    req.on('error', onAborted);
  });
}

function send(req: IncomingMessage, res: ServerResponse, answer: Answer): void {
  if (res.headersSent || res.destroyed) return;
  const text = JSON.stringify(answer.body);
  const headers: Record<string, string | number> = { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) };
  if (answer.close) headers.connection = 'close';
  res.writeHead(answer.status, headers);
  res.end(req.method === 'HEAD' ? undefined : text);
  if (answer.close && !req.complete) {
    // The body was not read to its end: half-close once the answer is out, then drop the
    // connection (an immediate reset could discard the answer before the client reads it).
    res.once('finish', () => {
      req.socket.end();
      setTimeout(() => req.socket.destroy(), 1_000).unref();
    });
  }
}

/** A header value as the audit keeps it: at most 64 printable characters. */
function clip(v: string | undefined): string | null {
  if (v === undefined) return null;
  const printable = v.replace(/[^\x20-\x7e]/g, '?');
  return printable.length > 64 ? `${printable.slice(0, 64)}...` : printable;
}
