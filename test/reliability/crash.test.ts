import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import Database from 'better-sqlite3';
import { makeTestApp } from '../helpers/app.js';
import type { App } from '../../src/app.js';

const CHILD = join(import.meta.dirname, '..', 'fixtures', 'bin', 'apply-events.mjs');

let app: App;
let home: string;
let cleanup: () => Promise<void>;
beforeAll(() => {
  ({ app, home, cleanup } = makeTestApp());
});
afterAll(async () => cleanup());

/** Runs a child that applies events and echoes each key after its commit; SIGKILLs it after `ms`. */
function applyUntilKilled(dbPath: string, idsFile: string, start: number, ms: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CHILD, dbPath, idsFile, '1000000', String(start)], {
      env: { ...process.env, APPLY_EVENTS_ECHO: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    let started = false;
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (!started) {
        // Start the clock once the child is really writing, so every kill lands mid-stream.
        started = true;
        setTimeout(() => child.kill('SIGKILL'), ms);
      }
    });
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('exit', (_code, signal) => {
      if (signal !== 'SIGKILL') return reject(new Error(`child ended without being killed: ${err}`));
      // Only complete lines were acknowledged; a torn last line was never a finished echo.
      resolve(out.split('\n').slice(0, -1).filter(Boolean));
    });
  });
}

test('kill -9 at 20 random moments: every acknowledged event is stored exactly once and the file is intact', async () => {
  const runIds = Array.from({ length: 10 }, (_, i) => app.service.createRun({ owner: 'octo', repo: `crash-${i}` }).run_id);
  const idsFile = join(home, 'crash-ids.json');
  writeFileSync(idsFile, JSON.stringify(runIds));
  const acknowledged: string[] = [];
  for (let round = 0; round < 20; round++) {
    const ms = 20 + Math.floor(Math.random() * 250);
    acknowledged.push(...(await applyUntilKilled(app.config.dbPath, idsFile, round * 1_000_000, ms)));
  }
  expect(acknowledged.length).toBeGreaterThan(20);
  const db = new Database(app.config.dbPath);
  try {
    expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
    const count = db.prepare('SELECT COUNT(*) AS n FROM events WHERE idempotency_key = ?');
    for (const key of acknowledged) expect((count.get(key) as { n: number }).n, key).toBe(1);
    const dupes = db.prepare('SELECT COUNT(*) AS n FROM (SELECT run_id, idempotency_key FROM events GROUP BY 1, 2 HAVING COUNT(*) > 1)').get() as { n: number };
    expect(dupes.n).toBe(0);
  } finally {
    db.close();
  }
}, 240_000); // 20 child processes: on a loaded 2-core machine each start alone can take seconds
