import { spawn } from 'node:child_process';
import { chmodSync, existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { detectContainment, type ContainmentMode } from '../../src/worker/contain.js';
import { runProcess } from '../../src/worker/runner.js';
import { tempDir } from '../helpers/app.js';

/**
 * Issue 14: every process of a worker dies with it. A worker that starts a setsid daemon holding
 * stdout, a 600 MiB line, a flood past the stored-stream cap, a disk that is full.
 */

const dir = tempDir('agentpr-contain-');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Pids whose command line contains `tag` (how the tests find a daemon in any PID namespace). */
function withTag(tag: string): number[] {
  const out: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const cmd = readFileSync(`/proc/${e}/cmdline`, 'utf8');
      const state = readFileSync(`/proc/${e}/stat`, 'utf8').split(') ')[1]?.[0];
      if (cmd.includes(tag) && state !== 'Z') out.push(Number(e));
    } catch {
      // gone
    }
  }
  return out;
}

function script(name: string, body: string): string {
  const p = join(dir, name);
  writeFileSync(p, `#!/bin/bash\n${body}\n`);
  chmodSync(p, 0o755);
  return p;
}

const modes: ContainmentMode[] = ['session'];
if (detectContainment({}).mode === 'pidns') modes.unshift('pidns');
const hasProc = existsSync('/proc/self/cmdline');

describe.runIf(hasProc)('worker containment', () => {
  test('the doctor-visible mode is one of pidns, session', () => {
    expect(['pidns', 'session']).toContain(detectContainment({}).mode);
    expect(() => detectContainment({ AGENTPR_WORKER_CONTAINMENT: 'chroot' })).toThrow(/AGENTPR_WORKER_CONTAINMENT=chroot is not one of auto, pidns, session/);
  });

  test.each(modes)('%s: a setsid daemon holding stdout is killed at the timeout and the step returns within timeout plus grace', async (mode) => {
    const tag = `agentpr-daemon-${mode}-${process.pid}`;
    // The daemon leaves the worker's session and group, ignores SIGTERM and keeps stdout open.
    const bin = script(`daemon-${mode}.sh`, `echo '{"type":"thread.started"}'\nsetsid bash -c 'trap "" TERM; exec -a ${tag} sleep 600' &\nexec sleep 600`);
    const t0 = Date.now();
    const r = await runProcess({
      bin,
      args: [],
      cwd: dir,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
      eventsPath: join(dir, `ev-${mode}.jsonl`),
      stderrPath: join(dir, `err-${mode}.log`),
      timeoutMs: 2000,
      killGraceMs: 500,
      stamp: (l) => l,
      containment: detectContainment({ AGENTPR_WORKER_CONTAINMENT: mode }),
    });
    const took = Date.now() - t0;
    expect(r).toMatchObject({ timedOut: true, containment: mode, lineCount: 1 });
    // timeout 2 s + grace 0.5 s + the SIGKILL wait and sweep; the daemon would hold it for 600 s.
    expect(took).toBeLessThan(2000 + 500 + 6000);
    expect(withTag(tag)).toEqual([]);
  }, 30_000);

  test.runIf(modes.includes('pidns'))('kill -9 of the process running the worker: no worker process is alive 5 s later', async () => {
    const tag = `agentpr-orphan-${process.pid}`;
    const bin = script('orphan.sh', `setsid bash -c 'exec -a ${tag}-daemon sleep 600' &\nexec -a ${tag}-worker sleep 600`);
    const host = join(dir, 'host.mjs');
    const runner = new URL('../../dist/src/worker/runner.js', import.meta.url).pathname;
    writeFileSync(
      host,
      `import { runProcess } from ${JSON.stringify(runner)};\nawait runProcess({ bin: ${JSON.stringify(bin)}, args: [], cwd: ${JSON.stringify(dir)}, env: { PATH: process.env.PATH }, eventsPath: ${JSON.stringify(join(dir, 'o.jsonl'))}, stderrPath: ${JSON.stringify(join(dir, 'o.err'))}, timeoutMs: 600000, stamp: (l) => l });\n`,
    );
    const child = spawn(process.execPath, [host], { stdio: 'ignore' });
    const until = Date.now() + 15_000;
    while (withTag(tag).length < 2 && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
    expect(withTag(tag).length).toBe(2);
    child.kill('SIGKILL');
    await new Promise((r) => setTimeout(r, 5000));
    const left = withTag(tag);
    for (const p of left) process.kill(p, 'SIGKILL');
    expect(left).toEqual([]);
  }, 40_000);
});

describe.runIf(hasProc)('worker limits', () => {
  test.each(modes)('%s: policy worker_limits reach the worker through prlimit', async (mode) => {
    const bin = script(`limits-${mode}.sh`, `echo "{\\"nofile\\":$(ulimit -n),\\"cpu\\":\\"$(ulimit -t)\\",\\"as\\":\\"$(ulimit -v)\\"}"`);
    const lines: string[] = [];
    const r = await runProcess({
      bin,
      args: [],
      cwd: dir,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
      eventsPath: join(dir, `limits-${mode}.jsonl`),
      stderrPath: join(dir, `limits-${mode}.err`),
      timeoutMs: 20_000,
      stamp: (l) => l,
      onLine: (l) => lines.push(l),
      limits: { open_files: 64, cpu_seconds: 120, address_space_mb: 4096 },
      containment: detectContainment({ AGENTPR_WORKER_CONTAINMENT: mode }),
    });
    expect(r.exitCode, readFileSync(join(dir, `limits-${mode}.err`), 'utf8')).toBe(0);
    expect(JSON.parse(lines[0]!)).toEqual({ nofile: 64, cpu: '120', as: String(4096 * 1024) });
  }, 30_000);
});

describe.runIf(hasProc)('bounded capture', () => {
  test('a 600 MiB line without a newline is counted and stored short, never held whole', async () => {
    const bin = script('huge.sh', `echo '{"type":"thread.started"}'\nhead -c 629145600 /dev/zero | tr '\\0' 'a'`);
    const before = process.memoryUsage().rss;
    let peak = before;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 50);
    const lines: string[] = [];
    const r = await runProcess({
      bin,
      args: [],
      cwd: dir,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
      eventsPath: join(dir, 'huge.jsonl'),
      stderrPath: join(dir, 'huge.err'),
      timeoutMs: 120_000,
      maxLineBytes: 8 * 1024 * 1024,
      stamp: (l) => l,
      onLine: (l) => lines.push(l.slice(0, 200)),
      containment: detectContainment({ AGENTPR_WORKER_CONTAINMENT: 'session' }),
    });
    clearInterval(sampler);
    expect(r).toMatchObject({ exitCode: 0, oversizedLines: 1, lineCount: 2, writeError: null });
    const stored = readFileSync(join(dir, 'huge.jsonl'), 'utf8').split('\n');
    const record = JSON.parse(stored[1]!) as { type: string; bytes: number; head: string };
    expect(record).toMatchObject({ type: 'agentpr.oversized_line', bytes: 629145600 });
    expect(record.head).toBe('a'.repeat(2048));
    expect(r.storedBytes).toBeLessThan(16 * 1024);
    // Held whole, the line alone would be 600 MiB (and a string that long cannot even be made).
    expect(peak - before).toBeLessThan(200 * 1024 * 1024);
  }, 180_000);

  test('the stored stream stops at max_stream_bytes; later lines are counted, not stored', async () => {
    const bin = script('flood.sh', `yes '{"type":"item.completed","item":{"type":"agent_message","text":"flood flood flood flood"}}' | head -n 50000`);
    const r = await runProcess({
      bin,
      args: [],
      cwd: dir,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
      eventsPath: join(dir, 'flood.jsonl'),
      stderrPath: join(dir, 'flood.err'),
      timeoutMs: 60_000,
      maxStreamBytes: 256 * 1024,
      stamp: (l) => l,
      containment: detectContainment({ AGENTPR_WORKER_CONTAINMENT: 'session' }),
    });
    expect(r.lineCount).toBe(50000);
    expect(r.droppedLines).toBeGreaterThan(40000);
    expect(r.storedBytes).toBeLessThanOrEqual(256 * 1024);
    expect(readFileSync(join(dir, 'flood.jsonl')).length).toBe(r.storedBytes);
  }, 60_000);

  test.runIf(existsSync('/dev/full'))('a full disk (ENOSPC on /dev/full) stops the worker and comes back as a write error, not a crash', async () => {
    const bin = script('writer.sh', `while true; do echo '{"type":"item.started"}'; sleep 0.01; done`);
    const r = await runProcess({
      bin,
      args: [],
      cwd: dir,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
      eventsPath: '/dev/full',
      stderrPath: join(dir, 'full.err'),
      timeoutMs: 60_000,
      killGraceMs: 500,
      stamp: (l) => l,
      containment: detectContainment({ AGENTPR_WORKER_CONTAINMENT: 'session' }),
    });
    expect(r.writeError).toMatchObject({ code: 'ENOSPC' });
    expect(r.timedOut).toBe(false);
    expect(r.durationMs).toBeLessThan(30_000);
  }, 60_000);
});
