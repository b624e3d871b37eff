import { appendFileSync, createReadStream, createWriteStream, existsSync, mkdirSync, openSync, renameSync, rmSync, statSync, type WriteStream } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import { createInterface } from 'node:readline';
import { z } from 'zod';
import type { App } from '../app.js';

/** One JSONL line per webhook request. */
export const AuditLineSchema = z.object({
  ts: z.string(),
  event: z.string().nullable(),
  delivery: z.string().nullable(),
  status_code: z.number().int(),
  outcome: z.string(),
  processed: z.number().int(),
  ignored: z.number().int(),
  error: z.string().nullable(),
  duration_ms: z.number().optional(),
});
export type AuditLine = z.infer<typeof AuditLineSchema>;

/** policy github_webhook.audit_log_file; a relative path lives under the reports directory. */
export function webhookAuditPath(app: App): string {
  const file = app.policy.github_webhook.audit_log_file;
  return isAbsolute(file) ? file : join(app.config.reportsDir, file);
}

/**
 * Appends audit lines through one buffered stream (a line is one write, so lines never interleave).
 * Lines are gathered for at most `flushMs` (or `flushBytes`) and go out together in one write by
 * the stream's worker thread: the request path never waits on the file, and a busy receiver makes
 * one write per batch, not one per request. close() flushes what is left.
 * Past `maxBytes` the file is rotated: file -> file.1 -> file.2 ..., `keep` rotated files kept.
 */
export class AuditWriter {
  readonly path: string;
  private stream: WriteStream;
  private bytes: number;
  private readonly maxBytes: number;
  private readonly keep: number;
  private readonly flushMs: number;
  private readonly flushBytes: number;
  private batch: string[] = [];
  private batchBytes = 0;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Lines written after close() while the stream still writes its last ones. */
  private late: string[] | undefined;

  constructor(path: string, opts: { maxBytes?: number; keep?: number; flushMs?: number; flushBytes?: number } = {}) {
    this.path = path;
    this.maxBytes = opts.maxBytes ?? Infinity;
    this.keep = opts.keep ?? 3;
    this.flushMs = opts.flushMs ?? 10;
    this.flushBytes = opts.flushBytes ?? 64 * 1024;
    mkdirSync(dirname(path), { recursive: true });
    this.bytes = existsSync(path) ? statSync(path).size : 0;
    this.stream = openStream(path);
  }

  write(line: AuditLine): void {
    const text = `${JSON.stringify(line)}\n`;
    const size = Buffer.byteLength(text);
    if (this.closed) {
      // A request answered while the receiver was closing: its line follows the stream's last ones.
      if (this.late) this.late.push(text);
      else appendLines(this.path, [text]);
      return;
    }
    if (this.bytes > 0 && this.bytes + size > this.maxBytes) this.rotate();
    this.bytes += size;
    if (this.batch.length === 0 && this.flushMs > 0) {
      this.timer = setTimeout(() => this.flush(), this.flushMs);
      this.timer.unref();
    }
    this.batch.push(text);
    this.batchBytes += size;
    if (this.flushMs <= 0 || this.batchBytes >= this.flushBytes) this.flush();
  }

  /** Hands the gathered lines to the stream as one write. */
  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.batch.length === 0) return;
    const text = this.batch.length === 1 ? this.batch[0]! : this.batch.join('');
    this.batch = [];
    this.batchBytes = 0;
    this.stream.write(text);
  }

  private rotate(): void {
    // The gathered lines belong to the file being rotated out.
    this.flush();
    const old = this.stream;
    old.end();
    try {
      rmSync(`${this.path}.${this.keep}`, { force: true });
      for (let i = this.keep - 1; i >= 1; i--) if (existsSync(`${this.path}.${i}`)) renameSync(`${this.path}.${i}`, `${this.path}.${i + 1}`);
      // The old stream still writes its buffered lines through its descriptor, now to file.1.
      renameSync(this.path, `${this.path}.1`);
    } catch {
      // A failed rotation leaves the file growing; the next write tries again.
    }
    this.bytes = 0;
    this.stream = openStream(this.path);
  }

  close(): Promise<void> {
    this.flush();
    if (this.closed) return new Promise((resolve) => (this.late ? this.stream.once('close', resolve) : resolve()));
    this.closed = true;
    this.late = [];
    return new Promise((resolve) =>
      this.stream.end(() => {
        const late = this.late ?? [];
        this.late = undefined;
        if (late.length) appendLines(this.path, late);
        resolve();
      }),
    );
  }
}

function appendLines(path: string, lines: string[]): void {
  try {
    appendFileSync(path, lines.join(''));
  } catch {
    // The audit never stops the receiver.
  }
}

function openStream(path: string): WriteStream {
  // Opened now, not when the stream gets round to it: a rotation right after renames the file this
  // descriptor writes to, and never a path a later stream will open too.
  let fd: number;
  try {
    fd = openSync(path, 'a');
  } catch {
    fd = -1;
  }
  const stream = fd >= 0 ? createWriteStream(path, { fd, flags: 'a' }) : createWriteStream(path, { flags: 'a' });
  // A failed audit write (full disk, say) never takes the receiver down.
  stream.on('error', () => undefined);
  return stream;
}

export interface AuditSummary {
  file: string;
  window_hours: number;
  since: string;
  total: number;
  by_outcome: Record<string, number>;
  by_status_code: Record<string, number>;
  by_event: Record<string, number>;
  processed: number;
  ignored: number;
  /** Requests GitHub has to deliver again: answered 5xx or 429 (the delivery was released). */
  retryable_failures: number;
  http_5xx: number;
  /** Share of the window's requests answered 5xx, in percent (2 decimals). */
  http_5xx_rate_pct: number;
  last_errors: AuditLine[];
  unreadable_lines: number;
  /** Lines read (at most max_lines, the newest ones). */
  lines_read: number;
}

export interface SummarizeOptions {
  hours: number;
  lastErrors: number;
  /** Only the newest N lines of the file are read (default: all). */
  maxLines?: number;
  now?: number;
}

/** The newest `max` lines of a file, streamed (the file only grows; memory stays at `max` lines). */
async function tailLines(file: string, max: number): Promise<string[]> {
  const ring: string[] = [];
  let next = 0;
  const rl = createInterface({ input: createReadStream(file, { encoding: 'utf8' }), crlfDelay: Infinity });
  for await (const text of rl) {
    if (!text.trim()) continue;
    if (ring.length < max) ring.push(text);
    else {
      ring[next] = text;
      next = (next + 1) % max;
    }
  }
  return ring.length < max ? ring : [...ring.slice(next), ...ring.slice(0, next)];
}

/** Counts the audit lines of the last `hours` among the newest `maxLines` lines of the file. */
export async function summarizeAudit(file: string, opts: SummarizeOptions): Promise<AuditSummary> {
  const sinceMs = (opts.now ?? Date.now()) - opts.hours * 3_600_000;
  const summary: AuditSummary = {
    file,
    window_hours: opts.hours,
    since: new Date(sinceMs).toISOString(),
    total: 0,
    by_outcome: {},
    by_status_code: {},
    by_event: {},
    processed: 0,
    ignored: 0,
    retryable_failures: 0,
    http_5xx: 0,
    http_5xx_rate_pct: 0,
    last_errors: [],
    unreadable_lines: 0,
    lines_read: 0,
  };
  if (!existsSync(file)) return summary;
  const lines = await tailLines(file, opts.maxLines ?? Number.MAX_SAFE_INTEGER);
  summary.lines_read = lines.length;
  for (const text of lines) {
    let line: AuditLine;
    try {
      const parsed = AuditLineSchema.safeParse(JSON.parse(text));
      if (!parsed.success) throw new Error('shape');
      line = parsed.data;
    } catch {
      summary.unreadable_lines++;
      continue;
    }
    const ts = Date.parse(line.ts);
    if (!(ts >= sinceMs)) continue;
    summary.total++;
    summary.by_outcome[line.outcome] = (summary.by_outcome[line.outcome] ?? 0) + 1;
    summary.by_status_code[String(line.status_code)] = (summary.by_status_code[String(line.status_code)] ?? 0) + 1;
    const ev = line.event ?? '(none)';
    summary.by_event[ev] = (summary.by_event[ev] ?? 0) + 1;
    summary.processed += line.processed;
    summary.ignored += line.ignored;
    if (line.status_code >= 500) summary.http_5xx++;
    if (line.status_code >= 500 || line.status_code === 429) summary.retryable_failures++;
    if (line.error) {
      summary.last_errors.push(line);
      if (summary.last_errors.length > opts.lastErrors) summary.last_errors.shift();
    }
  }
  summary.http_5xx_rate_pct = summary.total ? Math.round((summary.http_5xx / summary.total) * 10_000) / 100 : 0;
  summary.last_errors.reverse();
  return summary;
}
