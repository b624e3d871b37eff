import { join } from 'node:path';
import { rmSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { openDatabase } from '../src/store/db.js';
import { Service } from '../src/service.js';
import { growth, isMain, ratioTarget, round, tmp } from './util.js';

/**
 * `events`: 50,000 events applied through the service (validation, duplicate check, transition
 * rules, event row + state change in one IMMEDIATE transaction each) versus raw better-sqlite3
 * single-row inserts of the same rows into the same schema, in the same run, the two taking turns
 * in blocks of 1,000 so a load change on a shared machine hits both. Target ratio >= 0.8.
 * Then the same at 10x the events (fresh databases), reporting how the time grows.
 */
export async function run(n = 50_000, scale = process.env.AGENTPR_BENCH_NO_SCALE ? 0 : 10): Promise<Record<string, unknown>> {
  const one = await measure(n);
  const result: Record<string, unknown> = {
    events: n,
    service: { ms: round(one.serviceMs), per_sec: Math.round(one.servicePerSec) },
    baseline_raw_inserts: { ms: round(one.rawMs), per_sec: Math.round(one.rawPerSec) },
    ...ratioTarget(one.servicePerSec / one.rawPerSec, '>=', 0.8, 'service/raw events per second'),
  };
  if (scale) {
    const big = await measure(n * scale);
    result.scale = {
      service: growth(n, one.serviceMs, big.serviceMs),
      baseline_raw_inserts: growth(n, one.rawMs, big.rawMs),
      ratio_at_10x: round(big.servicePerSec / big.rawPerSec, 3),
    };
  }
  return result;
}

/** Events are applied in blocks, service and raw taking turns, so both see the same machine load. */
const BLOCK = 1_000;

async function measure(n: number): Promise<{ serviceMs: number; rawMs: number; servicePerSec: number; rawPerSec: number }> {
  const dir = tmp();
  try {
    const runsCount = 100;
    // Service path.
    const db = openDatabase(join(dir, 'service.db'));
    const service = new Service(db, { workspaceRoot: dir });
    const runIds = Array.from({ length: runsCount }, (_, i) => service.createRun({ owner: 'bench', repo: `r${i}` }).run_id);
    for (const id of runIds) service.applyEvent({ run_id: id, event_type: 'command.start.discovery', payload: {} });

    // Baseline: the same rows, raw single-row inserts (each its own autocommit transaction), into
    // the same schema opened with the same pragmas (WAL, synchronous NORMAL).
    const raw = openDatabase(join(dir, 'raw.db'));
    const rawService = new Service(raw, { workspaceRoot: dir });
    const rawRuns = Array.from({ length: runsCount }, (_, i) => rawService.createRun({ owner: 'bench', repo: `r${i}` }).run_id);
    for (const id of rawRuns) rawService.applyEvent({ run_id: id, event_type: 'command.start.discovery', payload: {} });
    const insert = raw.prepare(`INSERT INTO events (run_id, event_type, idempotency_key, payload_json, from_state, to_state, outcome, note, created_at)
      VALUES (?, ?, ?, ?, ?, ?, 'applied', NULL, ?)`);

    let serviceMs = 0;
    let rawMs = 0;
    for (let from = 0; from < n; from += BLOCK) {
      const to = Math.min(n, from + BLOCK);
      const t0 = performance.now();
      for (let i = from; i < to; i++) {
        const run_id = runIds[i % runsCount]!;
        const pause = Math.floor(i / runsCount) % 2 === 0;
        service.applyEvent(
          pause
            ? { run_id, event_type: 'command.pause', payload: { seq: i }, idempotency_key: `k${i}` }
            : { run_id, event_type: 'command.resume', payload: { target_state: 'DISCOVERY', seq: i }, idempotency_key: `k${i}` },
        );
      }
      serviceMs += performance.now() - t0;
      const t1 = performance.now();
      for (let i = from; i < to; i++) {
        const pause = Math.floor(i / runsCount) % 2 === 0;
        insert.run(
          rawRuns[i % runsCount]!,
          pause ? 'command.pause' : 'command.resume',
          `k${i}`,
          JSON.stringify(pause ? { seq: i } : { target_state: 'DISCOVERY', seq: i }),
          pause ? 'DISCOVERY' : 'PAUSED',
          pause ? 'PAUSED' : 'DISCOVERY',
          new Date().toISOString(),
        );
      }
      rawMs += performance.now() - t1;
    }
    db.close();
    raw.close();
    const servicePerSec = (n / serviceMs) * 1000;
    const rawPerSec = (n / rawMs) * 1000;
    return { serviceMs, rawMs, servicePerSec, rawPerSec };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (isMain(import.meta.url)) console.log(JSON.stringify(await run(), null, 2));
