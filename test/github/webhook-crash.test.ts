import { createHmac } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/app.js';
import { killLive, spawnCli, type CliProcess } from '../helpers/cli-process.js';
import { fixture } from './runs.js';

const SECRET = 'crash-secret';
const env = { ...process.env, AGENTPR_POLICY_FILE: '', AGENTPR_GITHUB_WEBHOOK_SECRET: SECRET, AGENTPR_GITHUB_WEBHOOK_SECRETS: '', GITHUB_TOKEN: '', AGENTPR_GITHUB_TOKEN: '', GH_TOKEN: '' };

async function receiver(home: string, live: ChildProcess[]): Promise<{ proc: CliProcess; url: string }> {
  const proc = spawnCli(home, ['run-github-webhook', '--port', '0'], env, live);
  let stderr = '';
  const child = live.at(-1)!;
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  for (let i = 0; i < 600; i++) {
    const url = /GitHub webhook receiver on (http:\/\/\S+)/.exec(stderr)?.[1];
    if (url) return { proc, url };
    if (child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`the webhook receiver did not start: ${stderr}`);
}

describe('webhook receiver killed while deliveries are in flight', () => {
  const live: ChildProcess[] = [];
  let home: string | undefined;
  afterEach(() => {
    killLive(live);
    if (home) rmSync(home, { recursive: true, force: true });
  });

  it('every delivery answered 200 is in the ledger after the crash; redelivering all of them records each exactly once', async () => {
    home = tempDir('agentpr-crash-');
    const body = JSON.stringify(fixture('pull_request.opened'));
    const signature = `sha256=${createHmac('sha256', SECRET).update(body).digest('hex')}`;
    const post = async (url: string, id: string) => {
      const res = await fetch(url, { method: 'POST', body, headers: { 'content-type': 'application/json', 'x-github-event': 'pull_request', 'x-github-delivery': id, 'x-hub-signature-256': signature } });
      return { status: res.status, outcome: ((await res.json()) as { outcome?: string }).outcome };
    };
    const ids = Array.from({ length: 160 }, (_, i) => `crash-${i}`);

    const first = await receiver(home, live);
    const answered = new Map<string, string | undefined>();
    let next = 0;
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        while (next < ids.length) {
          const id = ids[next++]!;
          try {
            const r = await post(first.url, id);
            expect(r.status).toBe(200);
            answered.set(id, r.outcome);
            // Killed mid-stream: deliveries are in flight, some written and not yet answered.
            if (answered.size === 40) first.proc.kill();
          } catch (err) {
            if (err instanceof Error && err.name === 'AssertionError') throw err;
            // The connection died with the process: this delivery has no answer.
          }
        }
      }),
    );
    await first.proc.done;
    expect(answered.size).toBeGreaterThanOrEqual(40);
    expect(answered.size).toBeLessThan(ids.length);

    const second = await receiver(home, live);
    const again = await Promise.all(ids.map(async (id) => [id, await post(second.url, id)] as const));
    for (const [id, r] of again) {
      expect(r.status, id).toBe(200);
      // Answered before the crash: its ledger row was committed first, so this is a repeat.
      if (answered.has(id)) expect(r.outcome, id).toBe('duplicate_delivery');
      // Not answered: written or not, it is recorded now, and only once.
      else expect(['ignored', 'duplicate_delivery'], id).toContain(r.outcome);
    }
    second.proc.kill();
    await second.proc.done;

    const db = new Database(join(home, 'agentpr.db'), { readonly: true });
    try {
      const rows = db.prepare(`SELECT delivery_id, outcome FROM webhook_deliveries`).all() as Array<{ delivery_id: string; outcome: string }>;
      expect(rows.map((r) => r.delivery_id).sort()).toEqual([...ids].sort());
      expect(new Set(rows.map((r) => r.outcome))).toEqual(new Set(['ignored']));
    } finally {
      db.close();
    }
  });
});
