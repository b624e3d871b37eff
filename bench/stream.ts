import { spawn } from 'node:child_process';
import { open, readdir, readFile, rm, stat } from 'node:fs/promises';
import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { PACKAGE_ROOT } from '../src/version.js';
import { analyzeAttempt, stampLine } from '../src/analysis/index.js';
import { DEFAULT_POLICY, agentPolicyFor } from '../src/policy.js';
import { isMain, median, ratioTarget, round, tmp } from './util.js';

const FIXTURES = join(PACKAGE_ROOT, 'test', 'fixtures', 'codex-streams');
const TARGET_RATIO = 0.9;
const TARGET_PEAK_RSS_MB = 150;

/** ~`targetBytes` of stamped codex stream: the recorded fixtures repeated, item ids renumbered per copy. */
export async function generate(path: string, targetBytes: number): Promise<{ bytes: number; lines: number; copies: number }> {
  const files = (await readdir(FIXTURES)).filter((f) => f.endsWith('.jsonl')).sort();
  const lines: string[] = [];
  for (const f of files) for (const l of (await readFile(join(FIXTURES, f), 'utf8')).split('\n')) if (l) lines.push(l);
  const out = createWriteStream(path);
  let bytes = 0;
  let count = 0;
  let copies = 0;
  let t = Date.parse('2026-02-25T00:00:00.000Z');
  while (bytes < targetBytes) {
    const base = copies * 1000;
    for (const l of lines) {
      t += 37;
      const renumbered = l.replace(/"id":"item_(\d+)"/, (_, n: string) => `"id":"item_${base + Number(n)}"`);
      const s = `${stampLine(renumbered, new Date(t))}\n`;
      bytes += Buffer.byteLength(s);
      count++;
      if (!out.write(s)) await once(out, 'drain');
    }
    copies++;
  }
  out.end();
  await once(out, 'finish');
  return { bytes, lines: count, copies };
}

/** The limit: read the same way (1 MiB reads), split on newlines, JSON.parse every line, nothing else. */
async function bare(path: string): Promise<{ lines: number; parsed: number }> {
  const fh = await open(path, 'r');
  const buf = Buffer.allocUnsafe(1024 * 1024);
  let carry: Buffer | null = null;
  let lines = 0;
  let parsed = 0;
  const handle = (b: Buffer, s: number, e: number): void => {
    lines++;
    try {
      const o = JSON.parse(b.toString('utf8', s, e)) as { type?: unknown };
      if (o && typeof o.type === 'string') parsed++;
    } catch {
      /* counted as not parsed */
    }
  };
  try {
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (!bytesRead) break;
      let chunk = buf.subarray(0, bytesRead);
      let pos = 0;
      if (carry) {
        const nl = chunk.indexOf(10);
        if (nl === -1) {
          carry = Buffer.concat([carry, chunk]);
          continue;
        }
        const line = Buffer.concat([carry, chunk.subarray(0, nl)]);
        handle(line, 0, line.length);
        carry = null;
        pos = nl + 1;
      }
      for (let nl = chunk.indexOf(10, pos); nl !== -1; nl = chunk.indexOf(10, pos)) {
        handle(chunk, pos, nl);
        pos = nl + 1;
      }
      if (pos < chunk.length) carry = Buffer.from(chunk.subarray(pos));
      chunk = buf;
    }
    if (carry?.length) handle(carry, 0, carry.length);
  } finally {
    await fh.close();
  }
  return { lines, parsed };
}

/** Child-process body: one mode over one file; prints {ms, peak_rss_mb, ...} as JSON. */
async function child(mode: string, path: string): Promise<void> {
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  let detail: Record<string, unknown>;
  if (mode === 'bare') {
    detail = await bare(path);
  } else {
    const a = await analyzeAttempt({ streamPath: path, exitCode: 0, stateBefore: 'IMPLEMENTING', attemptNo: 1, runId: 'run_000000bench0', policy: agentPolicyFor(DEFAULT_POLICY) });
    detail = { lines: a.parse.lines, parsed: a.parse.parsed_events, parse_errors: a.parse.parse_errors, commands: a.parse.commands_total, test_commands: a.parse.test_command_count, reason_code: a.verdict.reason_code, insight_chars: a.insightMarkdown.length };
  }
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(c0);
  process.stdout.write(JSON.stringify({ ms, cpu_ms: (cpu.user + cpu.system) / 1000, peak_rss_mb: process.resourceUsage().maxRSS / 1024, ...detail }));
}

function runChild(mode: string, path: string): Promise<{ ms: number; cpu_ms: number; peak_rss_mb: number } & Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), '--child', mode, path], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.on('error', reject);
    p.on('close', (code) => {
      if (code !== 0) return reject(new Error(`bench child ${mode} exited ${code}`));
      try {
        resolve(JSON.parse(out) as { ms: number; cpu_ms: number; peak_rss_mb: number });
      } catch (err) {
        reject(err);
      }
    });
  });
}

/**
 * `stream`: digest a ~100 MB stamped codex stream (parse, verdict, digest, insight) in a fresh
 * process, beside a bare line-split + JSON.parse loop over the same file in the same run.
 * Targets: at least 0.9x the bare loop's speed and peak RSS < 150 MB.
 * Each round runs the two back to back (in alternating order); the speed ratio is the median of
 * the rounds' own ratios, so a change in the machine's load between rounds does not count as a
 * difference between the two.
 */
export async function run(targetMb = 100, rounds = 7): Promise<Record<string, unknown>> {
  const dir = tmp();
  const path = join(dir, 'stream.jsonl');
  try {
    const gen = await generate(path, targetMb * 1024 * 1024);
    const size = (await stat(path)).size;
    const mb = size / 1024 / 1024;
    const digest: Array<Awaited<ReturnType<typeof runChild>>> = [];
    const bareRuns: Array<Awaited<ReturnType<typeof runChild>>> = [];
    for (let i = 0; i < rounds; i++) {
      if (i % 2) {
        digest.push(await runChild('digest', path));
        bareRuns.push(await runChild('bare', path));
      } else {
        bareRuns.push(await runChild('bare', path));
        digest.push(await runChild('digest', path));
      }
    }
    const dMs = median(digest.map((r) => r.ms));
    const bMs = median(bareRuns.map((r) => r.ms));
    const dRss = Math.max(...digest.map((r) => r.peak_rss_mb));
    const last = digest[digest.length - 1]!;
    const perRound = digest.map((d, i) => bareRuns[i]!.ms / d.ms);
    const speed = ratioTarget(median(perRound), '>=', TARGET_RATIO, 'digest MB/s / bare parse MB/s, median of the rounds');
    return {
      file_mb: round(mb),
      lines: gen.lines,
      fixture_copies: gen.copies,
      rounds,
      ratio_per_round: perRound.map((r) => round(r)),
      ratio_of_cpu_medians: round(median(bareRuns.map((r) => r.cpu_ms)) / median(digest.map((r) => r.cpu_ms))),
      digest: {
        median_ms: round(dMs),
        mb_per_s: round(mb / (dMs / 1000)),
        // CPU time is less sensitive to other load on the machine than wall time.
        mb_per_cpu_s: round(mb / (median(digest.map((r) => r.cpu_ms)) / 1000)),
        peak_rss_mb: round(dRss),
        lines: last.lines,
        parse_errors: last.parse_errors,
        commands: last.commands,
        test_commands: last.test_commands,
      },
      baseline_bare_json_parse: {
        median_ms: round(bMs),
        mb_per_s: round(mb / (bMs / 1000)),
        mb_per_cpu_s: round(mb / (median(bareRuns.map((r) => r.cpu_ms)) / 1000)),
        peak_rss_mb: round(Math.max(...bareRuns.map((r) => r.peak_rss_mb))),
      },
      ...speed,
      target: `${speed.target}, peak RSS < ${TARGET_PEAK_RSS_MB} MB`,
      pass: speed.pass && dRss < TARGET_PEAK_RSS_MB,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

if (isMain(import.meta.url)) {
  const i = process.argv.indexOf('--child');
  if (i !== -1) await child(process.argv[i + 1]!, process.argv[i + 2]!);
  else console.log(JSON.stringify(await run(), null, 2));
}
