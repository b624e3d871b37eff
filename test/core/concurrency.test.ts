import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { makeTestApp } from '../helpers/app.js';
import type { App } from '../../src/app.js';

const run = promisify(execFile);
const CHILD = join(import.meta.dirname, '..', 'fixtures', 'bin', 'apply-events.mjs');

let app: App;
let home: string;
let cleanup: () => Promise<void>;
beforeAll(() => {
  ({ app, home, cleanup } = makeTestApp());
});
afterAll(async () => cleanup());

test('two OS processes apply the same 2,000 events to one file: each exactly once, no SQLITE_BUSY', async () => {
  const runIds = Array.from({ length: 20 }, (_, i) => app.service.createRun({ owner: 'octo', repo: `repo-${i}` }).run_id);
  const idsFile = join(home, 'run-ids.json');
  writeFileSync(idsFile, JSON.stringify(runIds));
  const children = [0, 1].map(() => run(process.execPath, [CHILD, app.config.dbPath, idsFile, '2000'], { maxBuffer: 1 << 24 }));
  const results = await Promise.all(children);
  const counts = results.map((r) => JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { applied: number; duplicates: number });
  for (const r of results) expect(r.stderr).not.toMatch(/SQLITE_BUSY|database is locked/);
  expect(counts[0]!.applied + counts[1]!.applied).toBe(2000);
  expect(counts[0]!.duplicates + counts[1]!.duplicates).toBe(2000);
  const rows = app.db.prepare(`SELECT COUNT(*) AS n, COUNT(DISTINCT idempotency_key) AS k FROM events WHERE event_type = 'github.review.submitted'`).get() as { n: number; k: number };
  expect(rows).toEqual({ n: 2000, k: 2000 });
  expect(app.db.pragma('integrity_check', { simple: true })).toBe('ok');
});
