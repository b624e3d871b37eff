import { readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { sign } from '@octokit/webhooks-methods';
import pino from 'pino';
import { createApp } from '../src/app.js';
import { startWebhookServer } from '../src/github/webhook-server.js';
import { packageRoot } from '../src/policy-file.js';
import { isMain, percentile, ratioTarget, round, tmp } from './util.js';

/**
 * `webhook`: signed GitHub deliveries over loopback HTTP to the receiver (signature check, ledger
 * reservation, run lookup, tool calls for tracked PRs, audit line), 32 requests in flight, beside
 * a bare node:http server that reads the body and answers 200, driven by the same client in the
 * same run, the two taking turns in blocks of 2,000. The client runs in a worker thread so it does
 * not share the servers' event loop.
 * Target: at least half the bare server's deliveries/s, every delivery verified (200).
 */

const SECRET = 'bench-webhook-secret';
const OWNER = 'Codertocat';
const REPO = 'Hello-World';
const TRACKED_RUNS = 40;
/** Deliveries per turn of each server. */
const BLOCK = 2_000;

// From the package root, so the same file works from bench/ (tsx) and dist/bench/ (built).
const FIXTURES = join(packageRoot(), 'test', 'fixtures', 'github');
const fixture = (name: string): Record<string, unknown> => JSON.parse(readFileSync(join(FIXTURES, `${name}.json`), 'utf8')) as Record<string, unknown>;

interface Body {
  event: string;
  body: string;
  signature: string;
}

/**
 * Plain JS (an eval worker), so it runs the same from tsx and from dist. One keep-alive agent per
 * server; the main thread asks for one block of deliveries at a time and gets its timings back.
 */
const CLIENT = `
const { parentPort, workerData } = require('node:worker_threads');
const http = require('node:http');
const { bodies, plan, concurrency } = workerData;
const agents = new Map();
function send(url, id, b) {
  const u = new URL(url);
  let agent = agents.get(url);
  if (!agent) agents.set(url, (agent = new http.Agent({ keepAlive: true, maxSockets: concurrency })));
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const req = http.request({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', agent, headers: {
      'content-type': 'application/json', 'content-length': Buffer.byteLength(b.body), 'user-agent': 'GitHub-Hookshot/bench',
      'x-github-event': b.event, 'x-github-delivery': id, 'x-hub-signature-256': b.signature } }, (res) => {
      res.resume();
      res.on('end', () => resolve([res.statusCode, performance.now() - t0]));
    });
    req.on('error', reject);
    req.end(b.body);
  });
}
async function block({ url, prefix, from, to }) {
  let next = from;
  const lat = [];
  const codes = {};
  const t0 = performance.now();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < to) {
      const i = next++;
      const [code, ms] = await send(url, prefix + i, bodies[plan[i]]);
      lat.push(ms);
      codes[code] = (codes[code] || 0) + 1;
    }
  }));
  return { ms: performance.now() - t0, lat, codes };
}
parentPort.on('message', (m) => {
  if (m === 'close') {
    for (const a of agents.values()) a.destroy();
    parentPort.close();
    return;
  }
  block(m).then((r) => parentPort.postMessage(r), (err) => parentPort.postMessage({ error: String(err && err.stack || err) }));
});
`;

interface PhaseResult {
  ms: number;
  lat: number[];
  codes: Record<string, number>;
  error?: string;
}

/** The load generator: a worker thread, so it does not share the servers' event loop. */
class Client {
  private readonly w: Worker;
  constructor(bodies: Body[], plan: number[], concurrency: number) {
    this.w = new Worker(CLIENT, { eval: true, workerData: { bodies, plan, concurrency } });
  }

  block(url: string, prefix: string, from: number, to: number): Promise<PhaseResult> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      this.w.once('error', onError);
      this.w.once('message', (m: PhaseResult) => {
        this.w.off('error', onError);
        if (m.error) reject(new Error(m.error));
        else resolve(m);
      });
      this.w.postMessage({ url, prefix, from, to });
    });
  }

  async close(): Promise<void> {
    this.w.postMessage('close');
    await this.w.terminate();
  }
}

function accumulate(total: PhaseResult, r: PhaseResult): void {
  total.ms += r.ms;
  for (const x of r.lat) total.lat.push(x);
  for (const [code, k] of Object.entries(r.codes)) total.codes[code] = (total.codes[code] ?? 0) + k;
}

function summary(r: PhaseResult, n: number) {
  return {
    deliveries: n,
    per_sec: round((n / r.ms) * 1000, 0),
    p50_ms: round(percentile(r.lat, 50)),
    p99_ms: round(percentile(r.lat, 99)),
    max_ms: round(Math.max(...r.lat)),
    status_codes: r.codes,
  };
}

export async function run(n = 20_000, concurrency = 32): Promise<Record<string, unknown>> {
  const home = tmp();
  const app = createApp({ home, logger: pino({ level: 'silent' }), env: { ...process.env, AGENTPR_POLICY_FILE: '', GITHUB_TOKEN: '', AGENTPR_GITHUB_TOKEN: '', GH_TOKEN: '' } });
  try {
    // Tracked PRs 1..40 (runs in CI_WAIT); everything else is a PR nobody tracks.
    for (let pr = 1; pr <= TRACKED_RUNS; pr++) {
      const run = app.service.createRun({ owner: OWNER, repo: REPO });
      for (const [event_type, payload] of [
        ['command.start.discovery', {}],
        ['worker.discovery.completed', { contract_path: '/tmp/contract.md' }],
        ['command.start.implementation', {}],
        ['command.local.validation.passed', {}],
        ['worker.push.completed', { branch: `b${pr}` }],
        ['command.pr.linked', { pr_number: pr }],
      ] as const) {
        app.service.applyEvent({ run_id: run.run_id, event_type, payload });
      }
    }
    const bodies: Body[] = [];
    const add = async (event: string, payload: unknown) => {
      const body = JSON.stringify(payload);
      bodies.push({ event, body, signature: await sign(SECRET, body) });
      return bodies.length - 1;
    };
    const untracked: number[] = [];
    const tracked: number[] = [];
    for (let k = 0; k < 10; k++) {
      const p = fixture('pull_request.opened');
      p.number = 100_000 + k;
      (p.pull_request as Record<string, unknown>).number = 100_000 + k;
      untracked.push(await add('pull_request', p));
    }
    for (let k = 0; k < TRACKED_RUNS; k++) {
      const c = fixture('check_run.completed.failure');
      const cr = c.check_run as { id: number; pull_requests: Array<{ number: number }> };
      cr.id = 500_000 + k;
      cr.pull_requests[0]!.number = k + 1;
      tracked.push(await add('check_run', c));
      const r = fixture('pull_request_review.submitted');
      (r.pull_request as { number: number }).number = k + 1;
      (r.review as { id: number }).id = 700_000 + k;
      tracked.push(await add('pull_request_review', r));
    }
    const warmup = 1_000;
    // 70% deliveries for PRs nobody tracks, 30% for tracked PRs (tool calls, events written).
    const body = Array.from({ length: warmup + n }, (_, i) => (i % 10 < 7 ? untracked[i % untracked.length]! : tracked[i % tracked.length]!));

    const bare = createServer((req, res) => {
      req.on('data', () => undefined);
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': 2 });
        res.end('{}');
      });
    });
    await new Promise<void>((r) => bare.listen(0, '127.0.0.1', () => r()));
    const bareUrl = `http://127.0.0.1:${(bare.address() as AddressInfo).port}/github/webhook`;
    const hook = await startWebhookServer({ app, host: '127.0.0.1', port: 0, secrets: [SECRET] });
    const client = new Client(bodies, body, concurrency);
    const receiver: PhaseResult = { ms: 0, lat: [], codes: {} };
    const baseline: PhaseResult = { ms: 0, lat: [], codes: {} };
    try {
      await client.block(hook.url, 'd-', 0, warmup);
      await client.block(bareUrl, 'b-', 0, warmup);
      // The two servers take turns in blocks (in ABBA order), so a load change on a shared machine
      // hits both alike.
      for (let from = warmup, k = 0; from < warmup + n; from += BLOCK, k++) {
        const to = Math.min(warmup + n, from + BLOCK);
        const order: Array<[string, string, PhaseResult]> = [
          [hook.url, 'd-', receiver],
          [bareUrl, 'b-', baseline],
        ];
        if (k % 2) order.reverse();
        for (const [url, prefix, total] of order) accumulate(total, await client.block(url, prefix, from, to));
      }
    } finally {
      await client.close();
      await hook.close();
      bare.closeAllConnections();
      await new Promise<void>((r) => bare.close(() => r()));
    }
    const auditLines = readFileSync(hook.auditPath, 'utf8').split('\n').filter(Boolean).length;
    const ledger = (app.db.prepare('SELECT outcome, COUNT(*) AS n FROM webhook_deliveries GROUP BY outcome').all() as Array<{ outcome: string; n: number }>).reduce<Record<string, number>>(
      (acc, r) => ({ ...acc, [r.outcome]: r.n }),
      {},
    );
    const rec = summary(receiver, n);
    const base = summary(baseline, n);
    const ok200 = receiver.codes['200'] ?? 0;
    const speed = ratioTarget(rec.per_sec / base.per_sec, '>=', 0.5, 'receiver/bare deliveries per second');
    return {
      concurrency,
      payload_bytes: { min: Math.min(...bodies.map((b) => b.body.length)), max: Math.max(...bodies.map((b) => b.body.length)) },
      mix: '70% pull_request for untracked PRs, 30% check_run failure / pull_request_review for 40 tracked runs',
      receiver: rec,
      bare_http_baseline: base,
      ...speed,
      pass: speed.pass && ok200 === n,
      verified_200: ok200,
      audit_lines: auditLines,
      ledger,
    };
  } finally {
    await app.close();
    rmSync(home, { recursive: true, force: true });
  }
}

if (isMain(import.meta.url)) {
  console.log(JSON.stringify(await run(), null, 2));
}
