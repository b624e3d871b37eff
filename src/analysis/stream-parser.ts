import { open, type FileHandle } from 'node:fs/promises';
import { isUtf8 } from 'node:buffer';
import type { Readable } from 'node:stream';
import { NotFoundError, UserInputError } from '../core/errors.js';
import { readReasoning, readStartedCommand, typeAt } from './line-shapes.js';
import { Tally, type Slot } from './tally.js';
import { classifyCommand, shortCommand, type CommandCategory, type CommandFacts, type PushKind, type SafetyRule, COMMAND_CATEGORIES } from './commands.js';

/**
 * Incremental reader of `codex exec --json` streams: one JSON object a line. Nothing here
 * holds the stream: lines are judged one at a time and only bounded summaries are kept, so a
 * 100 MB stream or a single 30 MB line of command output costs a few MB.
 *
 * Stamped lines. The worker stores each stdout line with the local time it was received, as an
 * extra first key `"_ts"` (ISO 8601, UTC) in the same object:
 *
 *     {"_ts":"2026-02-25T01:01:56.572Z","type":"item.started","item":{...}}
 *
 * so a stored stream is still plain codex JSONL that any tool reads. `stampLine` writes it, the
 * parser reads it for command durations (item.started -> item.completed of the same item id).
 * Lines that are not JSON objects are stored as they came (they are parse errors anyway).
 */
export const STREAM_TS_FIELD = '_ts';

export function stampLine(line: string, at: Date): string {
  let s = line;
  if (s.endsWith('\n')) s = s.slice(0, s.endsWith('\r\n') ? -2 : -1);
  const start = s.search(/\S/);
  if (start === -1 || s[start] !== '{') return s;
  const rest = s.slice(start + 1).trimStart();
  const stamp = `{"${STREAM_TS_FIELD}":${JSON.stringify(at.toISOString())}`;
  return rest.startsWith('}') ? `${stamp}${rest}` : `${stamp},${rest}`;
}

export const KNOWN_EVENT_TYPES = [
  'thread.started',
  'turn.started',
  'turn.completed',
  'turn.failed',
  'item.started',
  'item.updated',
  'item.completed',
  'error',
] as const;
export const KNOWN_ITEM_TYPES = [
  'agent_message',
  'reasoning',
  'command_execution',
  'file_change',
  'mcp_tool_call',
  'web_search',
  'todo_list',
  'plan',
  'error',
  'collab_tool_call',
] as const;
const EVENT_SET = new Set<string>(KNOWN_EVENT_TYPES);
const ITEM_SET = new Set<string>(KNOWN_ITEM_TYPES);

export interface StreamParserOptions {
  /** A line longer than this is never held whole: its head and tail are kept, the middle is counted. Default 8 MiB. */
  maxLineBytes?: number;
  /** Command lines longer than this are read by head and tail only (the output is not decoded). Default 64 KiB. */
  liteLineBytes?: number;
  /** Command records kept in `commands` (counts and top lists cover all). Default 2000. */
  maxCommandRecords?: number;
  /** Samples kept per list (parse errors, failed tests, safety hits, ...). Default 50. */
  maxSamples?: number;
}

export interface UsageTotals {
  input_tokens: number;
  cached_input_tokens: number;
  /** Input tokens written to the prompt cache (codex 0.171.0 reports them; 0 when absent). */
  cache_write_input_tokens: number;
  output_tokens: number;
  reasoning_output_tokens: number;
  total_tokens: number;
}
export interface StreamUsage extends UsageTotals {
  /** codex reports usage cumulative per thread; these totals are the last report of each thread, summed. */
  turns: number;
  thread_ids: string[];
}

export interface CommandRecord {
  id: string;
  command: string;
  exit_code: number | null;
  /** codex status: completed, failed, declined, in_progress (never completed in this stream). */
  status: string;
  duration_ms: number | null;
  category: CommandCategory;
  is_test: boolean;
  /** Line of the item.completed event (item.started when it never completed). */
  line: number;
  /**
   * Approximate size of the output: characters when the line was parsed whole, bytes of the
   * escaped text when a long line was read by head and tail only.
   */
  output_bytes: number;
  /** Head and tail of the output, kept for failed test commands only (allowlist matching, evidence). */
  output_excerpt?: string;
}

export interface ParseErrorSample {
  line: number;
  reason: 'invalid_json' | 'not_an_object' | 'missing_type' | 'truncated' | 'line_too_long' | 'binary';
  excerpt: string;
}

export interface CommandHit {
  id: string;
  command: string;
  line: number;
}

export interface StreamSummary {
  lines: number;
  bytes: number;
  blank_lines: number;
  /** Lines that were a JSON object with a `type`. */
  parsed_events: number;
  stamped_lines: number;
  first_ts: string | null;
  last_ts: string | null;
  parse_errors: number;
  parse_error_samples: ParseErrorSample[];
  oversized_lines: number;
  oversized_samples: Array<{ line: number; bytes: number; salvaged: boolean }>;
  max_line_bytes: number;
  invalid_utf8_lines: number;
  type_counts: Record<string, number>;
  item_type_counts: Record<string, number>;
  unknown_type_counts: Record<string, number>;
  unknown_item_type_counts: Record<string, number>;
  commands: CommandRecord[];
  commands_total: number;
  commands_truncated: number;
  command_stats: {
    completed: number;
    failed: number;
    in_progress: number;
    durations_known: number;
    by_category: Record<CommandCategory, { count: number; duration_ms: number }>;
    top_by_duration: CommandRecord[];
    top_by_frequency: Array<{ command: string; count: number; category: CommandCategory }>;
  };
  test_commands: CommandRecord[];
  test_command_count: number;
  failed_test_commands: CommandRecord[];
  failed_test_command_count: number;
  file_changes: Array<{ path: string; kind: string }>;
  file_change_count: number;
  /** Sub-agent tool calls (spawn_agent, wait_agent, ...): their commands and edits are NOT in this stream. */
  collab_tool_call_count: number;
  collab_tools: Record<string, number>;
  agent_message_count: number;
  final_message: string | null;
  final_message_truncated: boolean;
  error_messages: string[];
  error_count: number;
  usage: StreamUsage | null;
  safety_violations: Array<CommandHit & { rules: SafetyRule[] }>;
  safety_violation_count: number;
  push_attempts: Array<CommandHit & { kinds: PushKind[] }>;
  push_attempt_count: number;
}

const HEAD_BYTES = 64 * 1024;
const TAIL_BYTES = 64 * 1024;
const EXCERPT_HEAD = 4 * 1024;
const EXCERPT_TAIL = 12 * 1024;
const FINAL_MESSAGE_MAX = 64 * 1024;
const COMMAND_TEXT_MAX = 4 * 1024;
const TOP_N = 10;
const MAX_FREQUENCY_KEYS = 5000;
/** Distinct keys per count map and unfinished commands tracked; a hostile stream cannot grow them further. */
const MAX_KEYS = 1000;
const MAX_PENDING = 10_000;
/**
 * Agents run the same commands again and again (`git status`, the test command, `sed -n` on one
 * file), and classifying one costs more than parsing its line. Judgements of commands up to
 * 4 Ki characters are remembered per stream, at most 512 of them (2 Mi characters); the cache
 * starts over when full.
 */
const MAX_CACHED_COMMANDS = 512;
const MAX_CACHED_COMMAND_CHARS = 4 * 1024;

// The head and tail of a command_execution line as codex serialises it (fixed field order).
const LITE_HEAD =
  /^\{(?:"_ts":"([^"\\]*)",)?"type":"(item\.(?:started|updated|completed))","item":\{"id":"((?:[^"\\]|\\.)*)","type":"command_execution","command":"((?:[^"\\]|\\.)*)","aggregated_output":"/;
const LITE_TAIL = /","exit_code":(null|-?\d+),"status":"([a-z_]+)"\}\}\s*$/;
const STAMP_SHAPE = /^\d{4}-\d{2}-\d{2}T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d\.\d{3}Z$/;

interface Pending {
  command: string;
  startMs: number | null;
  line: number;
  judgement: CommandJudgement;
}

/** What a command is (pure functions of its text), remembered per stream. */
interface CommandJudgement {
  facts: CommandFacts;
  /** Key of `top_by_frequency`, computed on first completion. */
  frequencyKey: string | null;
}

/**
 * Where a command's output excerpt would come from (only failed test commands keep one, so it is
 * cut when needed): the output, a long line's head and tail, or nothing (a command start).
 */
type OutputSource = string | LiteOutput | null;

interface LiteOutput {
  head: string;
  tail: string;
  /** Where the output starts in `head` and ends in `tail` (still JSON-escaped). */
  outStart: number;
  outEndInTail: number;
}

/**
 * Push-style parser: feed lines (or raw chunks) as they arrive, read `result()` whenever needed.
 * The live runner uses it on codex stdout; `parseStreamFile` uses it on a stored stream.
 */
export class StreamAccumulator {
  private readonly maxLineBytes: number;
  private readonly liteLineBytes: number;
  private readonly maxCommandRecords: number;
  private readonly maxSamples: number;
  private readonly splitter: LineSplitter;

  private lines = 0;
  private bytes = 0;
  private blank = 0;
  private parsed = 0;
  private stamped = 0;
  private firstTs: number | null = null;
  private lastTs: number | null = null;
  private parseErrors = 0;
  private readonly parseErrorSamples: ParseErrorSample[] = [];
  private oversized = 0;
  private readonly oversizedSamples: StreamSummary['oversized_samples'] = [];
  private maxLine = 0;
  private invalidUtf8 = 0;
  private readonly typeCounts = new Tally(MAX_KEYS);
  private readonly itemTypeCounts = new Tally(MAX_KEYS);
  private readonly unknownTypes = new Tally(MAX_KEYS);
  private readonly unknownItemTypes = new Tally(MAX_KEYS);
  /** Slots of the commonest counts, taken on first use (see Tally.slot). */
  private startedSlot: Slot | null = null;
  private commandSlot: Slot | null = null;
  private reasoningSlot: Slot | null = null;
  private completedSlot: Slot | null = null;
  private readonly pending = new Map<string, Pending>();
  private readonly commands: CommandRecord[] = [];
  private commandsTotal = 0;
  private completed = 0;
  private failed = 0;
  private durationsKnown = 0;
  private readonly byCategory = Object.fromEntries(COMMAND_CATEGORIES.map((c) => [c, { count: 0, duration_ms: 0 }])) as Record<
    CommandCategory,
    { count: number; duration_ms: number }
  >;
  private topByDuration: CommandRecord[] = [];
  private readonly frequency = new Map<string, { count: number; category: CommandCategory }>();
  private readonly testCommands: CommandRecord[] = [];
  private testCount = 0;
  private readonly failedTests: CommandRecord[] = [];
  private failedTestCount = 0;
  private readonly fileChanges: Array<{ path: string; kind: string }> = [];
  private collabCount = 0;
  private readonly collabTools = new Tally(MAX_KEYS);
  private fileChangeCount = 0;
  private agentMessages = 0;
  private finalMessage: string | null = null;
  private finalTruncated = false;
  private readonly errorMessages: string[] = [];
  private errorCount = 0;
  private currentThread = '';
  private readonly threadIds: string[] = [];
  private readonly usageByThread = new Map<string, UsageTotals>();
  private turns = 0;
  private readonly safety: StreamSummary['safety_violations'] = [];
  private safetyCount = 0;
  private readonly safetyIds = new Set<string>();
  private readonly pushes: StreamSummary['push_attempts'] = [];
  private pushCount = 0;
  private readonly pushIds = new Set<string>();
  private readonly judged = new Map<string, CommandJudgement>();
  /** `YYYY-MM-DDTHH:MM:` of the last stamp read the slow way, and its time at second 0. */
  private tsMinute = '';
  private tsMinuteMs = 0;

  constructor(opts: StreamParserOptions = {}) {
    this.maxLineBytes = Math.max(1024, opts.maxLineBytes ?? 8 * 1024 * 1024);
    this.liteLineBytes = Math.max(1024, opts.liteLineBytes ?? 64 * 1024);
    this.maxCommandRecords = opts.maxCommandRecords ?? 2000;
    this.maxSamples = opts.maxSamples ?? 50;
    this.splitter = new LineSplitter(this.maxLineBytes, {
      line: (buf, start, end) => this.onBufferLine(buf, start, end, true),
      tail: (buf, start, end) => this.onBufferLine(buf, start, end, false),
      oversized: (head, tail, total, terminated) => this.onOversized(head, tail, total, terminated),
    });
  }

  /** One line as text, without its newline. */
  pushLine(line: string): void {
    const text = line.endsWith('\r') ? line.slice(0, -1) : line;
    const byteLength = Buffer.byteLength(text);
    if (byteLength > this.maxLineBytes) {
      const head = Buffer.from(text.slice(0, HEAD_BYTES));
      const tail = Buffer.from(text.slice(-TAIL_BYTES));
      this.onOversized(head, tail, byteLength + 1, true);
      return;
    }
    this.countLine(byteLength + 1);
    if (byteLength > this.liteLineBytes && this.tryLite(text.slice(0, HEAD_BYTES), text.slice(-TAIL_BYTES), byteLength)) return;
    this.handleText(text, byteLength, true);
  }

  /** Raw bytes as they arrive (any chunking); call `end()` after the last chunk. */
  pushChunk(chunk: Buffer): void {
    this.splitter.push(chunk);
  }

  /** Flush a last line that had no newline. */
  end(): void {
    this.splitter.end();
  }

  private countLine(bytes: number): void {
    this.lines++;
    this.bytes += bytes;
    if (bytes > this.maxLine) this.maxLine = bytes;
  }

  private onBufferLine(buf: Buffer, start: number, end: number, terminated: boolean): void {
    let e = end;
    if (e > start && buf[e - 1] === 13) e--;
    const len = e - start;
    this.countLine(end - start + (terminated ? 1 : 0));
    if (len > this.liteLineBytes) {
      const head = buf.toString('utf8', start, start + Math.min(HEAD_BYTES, len));
      const tail = buf.toString('utf8', Math.max(start, e - TAIL_BYTES), e);
      if (this.tryLite(head, tail, len)) return;
    }
    const text = buf.toString('utf8', start, e);
    if (text.indexOf('\uFFFD') !== -1 && !isUtf8(buf.subarray(start, e))) this.invalidUtf8++;
    this.handleText(text, len, terminated);
  }

  private onOversized(head: Buffer, tail: Buffer, total: number, terminated: boolean): void {
    this.countLine(total);
    this.oversized++;
    const salvaged = this.tryLite(head.toString('utf8'), tail.toString('utf8'), total);
    if (this.oversizedSamples.length < this.maxSamples) this.oversizedSamples.push({ line: this.lines, bytes: total, salvaged });
    if (!salvaged) {
      this.parseError(terminated ? 'line_too_long' : 'truncated', head.toString('utf8', 0, Math.min(head.length, 200)));
    }
  }

  private parseError(reason: ParseErrorSample['reason'], text: string): void {
    this.parseErrors++;
    if (this.parseErrorSamples.length < this.maxSamples) {
      this.parseErrorSamples.push({ line: this.lines, reason, excerpt: printable(text.slice(0, 160)) });
    }
  }

  private handleText(text: string, byteLength: number, terminated: boolean): void {
    const first = text.charCodeAt(0);
    if (first === 0x7b) {
      if (this.readSmallLine(text)) return;
    } else if (byteLength === 0 || /^\s*$/.test(text)) {
      this.blank++;
      return;
    }
    let obj: unknown;
    try {
      obj = JSON.parse(text);
    } catch {
      const reason = !terminated ? 'truncated' : /[\u0000-\u0008\u000e-\u001f]/.test(text.slice(0, 512)) ? 'binary' : 'invalid_json';
      this.parseError(reason, text);
      return;
    }
    if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) {
      this.parseError('not_an_object', text);
      return;
    }
    const ev = obj as Record<string, unknown>;
    const type = ev.type;
    if (typeof type !== 'string') {
      this.parseError('missing_type', text);
      return;
    }
    const tsMs = this.readTs(ev[STREAM_TS_FIELD]);
    this.onEvent(type, ev, tsMs);
  }

  /**
   * A command start or a reasoning item in exactly codex's shape, read without JSON.parse (see
   * line-shapes.ts); the same steps as handleText -> onEvent -> onItem would take. False: not
   * such a line, parse it.
   */
  private readSmallLine(text: string): boolean {
    const at = typeAt(text);
    const started = readStartedCommand(text, at);
    if (started) {
      const tsMs = this.readTs(started.ts);
      this.parsed++;
      (this.startedSlot ??= this.typeCounts.slot('item.started')).n++;
      (this.commandSlot ??= this.itemTypeCounts.slot('command_execution')).n++;
      this.onCommand('item.started', started.id, started.command, null, 'in_progress', 0, null, tsMs);
      return true;
    }
    const reasoning = readReasoning(text, at);
    if (reasoning) {
      this.readTs(reasoning.ts);
      this.parsed++;
      this.typeCounts.add(reasoning.event);
      (this.reasoningSlot ??= this.itemTypeCounts.slot('reasoning')).n++;
      return true;
    }
    return false;
  }

  private readTs(raw: unknown): number | null {
    if (typeof raw !== 'string') return null;
    const ms = this.parseTs(raw);
    if (Number.isNaN(ms)) return null;
    this.stamped++;
    if (this.firstTs === null) this.firstTs = ms;
    this.lastTs = ms;
    return ms;
  }

  /**
   * `Date.parse`, without its cost on every line: stamps are `YYYY-MM-DDTHH:MM:SS.mmmZ` and
   * consecutive ones share their minute, so a stamp in the minute last parsed is that minute's
   * time plus its seconds and milliseconds. Anything else goes to `Date.parse`.
   */
  private parseTs(raw: string): number {
    if (raw.length === 24 && this.tsMinute !== '' && raw.startsWith(this.tsMinute) && raw.charCodeAt(19) === 46 && raw.charCodeAt(23) === 90) {
      const s1 = raw.charCodeAt(17) - 48;
      const s2 = raw.charCodeAt(18) - 48;
      const m1 = raw.charCodeAt(20) - 48;
      const m2 = raw.charCodeAt(21) - 48;
      const m3 = raw.charCodeAt(22) - 48;
      if (s1 >= 0 && s1 <= 5 && s2 >= 0 && s2 <= 9 && m1 >= 0 && m1 <= 9 && m2 >= 0 && m2 <= 9 && m3 >= 0 && m3 <= 9) {
        return this.tsMinuteMs + (s1 * 10 + s2) * 1000 + m1 * 100 + m2 * 10 + m3;
      }
    }
    const ms = Date.parse(raw);
    // Remember the minute only for a plain UTC stamp with hour <= 23 and minute <= 59, where every
    // second 00-59 and millisecond of it is valid and Date.parse is linear in them.
    if (!Number.isNaN(ms) && STAMP_SHAPE.test(raw)) {
      const minute = raw.slice(0, 17);
      const base = Date.parse(`${minute}00.000Z`);
      if (!Number.isNaN(base)) {
        // A copy of its own: a slice of `raw` would keep reading through the line it came from
        // (every later stamp is compared with it).
        this.tsMinute = Buffer.from(minute, 'latin1').toString('latin1');
        this.tsMinuteMs = base;
      }
    }
    return ms;
  }

  /** Head/tail reading of a long command_execution line; false when the line does not have codex's shape. */
  private tryLite(head: string, tail: string, totalBytes: number): boolean {
    const h = LITE_HEAD.exec(head);
    if (!h) return false;
    // Only the last few hundred characters can hold the closing fields; an anchored search over
    // the whole 64 KiB tail would try every position.
    const from = Math.max(0, tail.length - 256);
    const t = LITE_TAIL.exec(from ? tail.slice(from) : tail);
    if (!t) return false;
    const outEndInTail = from + t.index;
    let id: string;
    let command: string;
    try {
      id = JSON.parse(`"${h[3]}"`) as string;
      command = JSON.parse(`"${h[4]}"`) as string;
    } catch {
      return false;
    }
    const tsMs = this.readTs(h[1]);
    const event = h[2]!;
    const outStart = h[0].length;
    this.parsed++;
    this.typeCounts.add(event);
    (this.commandSlot ??= this.itemTypeCounts.slot('command_execution')).n++;
    const outputBytes = Math.max(0, totalBytes - Buffer.byteLength(h[0]) - Buffer.byteLength(tail.slice(outEndInTail)));
    this.onCommand(event, id, command, t[1] === 'null' ? null : Number(t[1]), t[2]!, outputBytes, { head, tail, outStart, outEndInTail }, tsMs);
    return true;
  }

  private onEvent(type: string, ev: Record<string, unknown>, tsMs: number | null): void {
    this.parsed++;
    // The commonest parsed line (a command's completion with its output) skips the map lookups.
    if (type === 'item.completed') {
      (this.completedSlot ??= this.typeCounts.slot('item.completed')).n++;
      this.onItem(type, ev.item, tsMs);
      return;
    }
    this.typeCounts.add(type);
    if (!EVENT_SET.has(type)) {
      this.unknownTypes.add(type);
      return;
    }
    switch (type) {
      case 'thread.started': {
        const id = typeof ev.thread_id === 'string' ? ev.thread_id : '';
        this.currentThread = id;
        if (id && !this.threadIds.includes(id) && this.threadIds.length < 100) this.threadIds.push(id);
        return;
      }
      case 'turn.completed': {
        this.turns++;
        const u = readUsage(ev.usage);
        if (u && (this.usageByThread.size < 100 || this.usageByThread.has(this.currentThread))) this.usageByThread.set(this.currentThread, u);
        return;
      }
      case 'turn.failed': {
        const err = ev.error as { message?: unknown } | undefined;
        this.addError(typeof err?.message === 'string' ? err.message : JSON.stringify(ev.error ?? null));
        return;
      }
      case 'error':
        this.addError(typeof ev.message === 'string' ? ev.message : JSON.stringify(ev));
        return;
      case 'item.started':
      case 'item.updated':
      case 'item.completed':
        this.onItem(type, ev.item, tsMs);
        return;
      default:
        return;
    }
  }

  private addError(message: string): void {
    this.errorCount++;
    if (this.errorMessages.length < this.maxSamples) this.errorMessages.push(message.slice(0, 2000));
  }

  private onItem(event: string, raw: unknown, tsMs: number | null): void {
    if (raw === null || typeof raw !== 'object') {
      this.unknownItemTypes.add('(missing item)');
      return;
    }
    const item = raw as Record<string, unknown>;
    const itype = typeof item.type === 'string' ? item.type : '(no type)';
    if (itype === 'command_execution') (this.commandSlot ??= this.itemTypeCounts.slot('command_execution')).n++;
    else this.itemTypeCounts.add(itype);
    if (itype !== 'command_execution' && !ITEM_SET.has(itype)) {
      this.unknownItemTypes.add(itype);
      return;
    }
    const done = event === 'item.completed';
    switch (itype) {
      case 'command_execution': {
        const output = typeof item.aggregated_output === 'string' ? item.aggregated_output : '';
        this.onCommand(
          event,
          String(item.id ?? ''),
          typeof item.command === 'string' ? item.command : JSON.stringify(item.command ?? ''),
          typeof item.exit_code === 'number' ? item.exit_code : null,
          typeof item.status === 'string' ? item.status : done ? 'completed' : 'in_progress',
          output.length,
          output,
          tsMs,
        );
        return;
      }
      case 'agent_message':
        if (!done) return;
        this.agentMessages++;
        if (typeof item.text === 'string') {
          this.finalTruncated = item.text.length > FINAL_MESSAGE_MAX;
          this.finalMessage = this.finalTruncated ? item.text.slice(0, FINAL_MESSAGE_MAX) : item.text;
        }
        return;
      case 'file_change':
        if (!done || !Array.isArray(item.changes)) return;
        for (const ch of item.changes as unknown[]) {
          if (ch === null || typeof ch !== 'object') continue;
          const c = ch as Record<string, unknown>;
          this.fileChangeCount++;
          if (this.fileChanges.length < 500) this.fileChanges.push({ path: String(c.path ?? ''), kind: String(c.kind ?? 'update') });
        }
        return;
      case 'collab_tool_call':
        if (!done) return;
        this.collabCount++;
        this.collabTools.add(typeof item.tool === 'string' ? item.tool : 'unknown');
        return;
      case 'error':
        if (done) this.addError(typeof item.message === 'string' ? item.message : JSON.stringify(item));
        return;
      default:
        return;
    }
  }

  /** A command start or completion, from whichever reader took its line. */
  private onCommand(event: string, id: string, command: string, exitCode: number | null, status: string, outputBytes: number, output: OutputSource, tsMs: number | null): void {
    if (event !== 'item.completed') {
      if (this.pending.has(id)) return;
      const judgement = this.judge(command);
      if (this.pending.size < MAX_PENDING) this.pending.set(id, { command, startMs: tsMs, line: this.lines, judgement });
      this.noteHits(id, command, judgement.facts);
      return;
    }
    const started = this.pending.get(id);
    if (started) this.pending.delete(id);
    const judgement = started && started.command === command ? started.judgement : this.judge(command);
    const facts = judgement.facts;
    this.noteHits(id, command, facts);
    const duration = started?.startMs != null && tsMs != null ? Math.max(0, tsMs - started.startMs) : null;
    const failed = status === 'failed' || status === 'declined' || (exitCode !== null && exitCode !== 0);
    this.completed++;
    if (failed) this.failed++;
    const clipped = clipCommand(command);
    judgement.frequencyKey ??= shortCommand(clipped).slice(0, 300);
    const rec: CommandRecord = { id, command: clipped, exit_code: exitCode, status, duration_ms: duration, category: facts.category, is_test: facts.isTest, line: this.lines, output_bytes: outputBytes };
    this.record(rec, duration, judgement.frequencyKey);
    if (facts.isTest) {
      this.testCount++;
      if (this.testCommands.length < this.maxSamples * 4) this.testCommands.push(rec);
      if (failed) {
        this.failedTestCount++;
        if (this.failedTests.length < this.maxSamples * 4) this.failedTests.push({ ...rec, output_excerpt: excerptOf(output) });
      }
    }
  }

  /** `classifyCommand` of a command, remembered for short commands (see MAX_CACHED_COMMANDS). */
  private judge(command: string): CommandJudgement {
    const known = this.judged.get(command);
    if (known) return known;
    const judgement: CommandJudgement = { facts: classifyCommand(command), frequencyKey: null };
    if (command.length <= MAX_CACHED_COMMAND_CHARS) {
      if (this.judged.size >= MAX_CACHED_COMMANDS) this.judged.clear();
      this.judged.set(command, judgement);
    }
    return judgement;
  }

  private record(rec: CommandRecord, duration: number | null, frequencyKey: string): void {
    this.commandsTotal++;
    if (this.commands.length < this.maxCommandRecords) this.commands.push(rec);
    const category = rec.category;
    const cat = this.byCategory[category];
    cat.count++;
    if (duration !== null) {
      this.durationsKnown++;
      cat.duration_ms += duration;
      const top = this.topByDuration;
      if (top.length < TOP_N || duration > (top[top.length - 1]!.duration_ms ?? 0)) {
        top.push(rec);
        top.sort((a, b) => (b.duration_ms ?? 0) - (a.duration_ms ?? 0));
        if (top.length > TOP_N) top.pop();
      }
    }
    const key = frequencyKey;
    const f = this.frequency.get(key);
    if (f) f.count++;
    else if (this.frequency.size < MAX_FREQUENCY_KEYS) this.frequency.set(key, { count: 1, category });
  }

  private noteHits(id: string, command: string, facts: CommandFacts): void {
    const short = command.length > 500 ? `${command.slice(0, 500)}…` : command;
    if (facts.safety.length && !this.safetyIds.has(id)) {
      this.safetyIds.add(id);
      this.safetyCount++;
      if (this.safety.length < this.maxSamples) this.safety.push({ id, command: short, line: this.lines, rules: [...facts.safety] });
    }
    if (facts.push.length && !this.pushIds.has(id)) {
      this.pushIds.add(id);
      this.pushCount++;
      if (this.pushes.length < this.maxSamples) this.pushes.push({ id, command: short, line: this.lines, kinds: [...facts.push] });
    }
  }

  result(): StreamSummary {
    // Commands that started but never completed (killed, timed out, truncated stream).
    const inProgress: CommandRecord[] = [];
    for (const [id, p] of this.pending) {
      inProgress.push({
        id,
        command: p.command.slice(0, COMMAND_TEXT_MAX),
        exit_code: null,
        status: 'in_progress',
        duration_ms: null,
        category: p.judgement.facts.category,
        is_test: p.judgement.facts.isTest,
        line: p.line,
        output_bytes: 0,
      });
    }
    const frequency = [...this.frequency.entries()]
      .filter(([, v]) => v.count > 0)
      .sort((a, b) => b[1].count - a[1].count || (a[0] < b[0] ? -1 : 1))
      .slice(0, TOP_N)
      .map(([command, v]) => ({ command, count: v.count, category: v.category }));
    let usage: StreamUsage | null = null;
    if (this.usageByThread.size) {
      const sum = emptyUsage();
      for (const u of this.usageByThread.values()) addUsage(sum, u);
      usage = { ...sum, turns: this.turns, thread_ids: [...this.threadIds] };
    }
    const byCategory = structuredClone(this.byCategory);
    for (const r of inProgress) byCategory[r.category].count++;
    return {
      lines: this.lines,
      bytes: this.bytes,
      blank_lines: this.blank,
      parsed_events: this.parsed,
      stamped_lines: this.stamped,
      first_ts: this.firstTs === null ? null : new Date(this.firstTs).toISOString(),
      last_ts: this.lastTs === null ? null : new Date(this.lastTs).toISOString(),
      parse_errors: this.parseErrors,
      parse_error_samples: [...this.parseErrorSamples],
      oversized_lines: this.oversized,
      oversized_samples: [...this.oversizedSamples],
      max_line_bytes: this.maxLine,
      invalid_utf8_lines: this.invalidUtf8,
      type_counts: this.typeCounts.toRecord(),
      item_type_counts: this.itemTypeCounts.toRecord(),
      unknown_type_counts: this.unknownTypes.toRecord(),
      unknown_item_type_counts: this.unknownItemTypes.toRecord(),
      commands: [...this.commands, ...inProgress].slice(0, Math.max(this.maxCommandRecords, this.commands.length)),
      commands_total: this.commandsTotal + inProgress.length,
      commands_truncated: Math.max(0, this.commandsTotal + inProgress.length - this.maxCommandRecords),
      command_stats: {
        completed: this.completed,
        failed: this.failed,
        in_progress: inProgress.length,
        durations_known: this.durationsKnown,
        by_category: byCategory,
        top_by_duration: [...this.topByDuration],
        top_by_frequency: frequency,
      },
      test_commands: [...this.testCommands],
      test_command_count: this.testCount,
      failed_test_commands: [...this.failedTests],
      failed_test_command_count: this.failedTestCount,
      file_changes: [...this.fileChanges],
      file_change_count: this.fileChangeCount,
      collab_tool_call_count: this.collabCount,
      collab_tools: this.collabTools.toRecord(),
      agent_message_count: this.agentMessages,
      final_message: this.finalMessage,
      final_message_truncated: this.finalTruncated,
      error_messages: [...this.errorMessages],
      error_count: this.errorCount,
      usage,
      safety_violations: [...this.safety],
      safety_violation_count: this.safetyCount,
      push_attempts: [...this.pushes],
      push_attempt_count: this.pushCount,
    };
  }
}

interface SplitterSink {
  /** A complete line: buf[start, end) without the newline. */
  line(buf: Buffer, start: number, end: number): void;
  /** The last line of the input, which had no newline. */
  tail(buf: Buffer, start: number, end: number): void;
  /** A line over the limit: its first and last bytes, its full length (with newline when terminated). */
  oversized(head: Buffer, tail: Buffer, totalBytes: number, terminated: boolean): void;
}

/**
 * Splits bytes into lines without ever holding more than `maxLineBytes` of one line: past that,
 * only the first and last 64 KiB are kept and the rest is counted.
 */
export class LineSplitter {
  private parts: Buffer[] = [];
  private partBytes = 0;
  private overHead: Buffer | null = null;
  private overTail: Buffer[] = [];
  private overTailBytes = 0;
  private overTotal = 0;

  constructor(
    private readonly maxLineBytes: number,
    private readonly sink: SplitterSink,
  ) {}

  /** `chunk` may be reused by the caller after this returns. */
  push(chunk: Buffer): void {
    let pos = 0;
    const n = chunk.length;
    while (pos < n) {
      const nl = chunk.indexOf(10, pos);
      if (nl === -1) {
        this.carry(chunk, pos, n);
        return;
      }
      if (this.overHead) {
        this.overAppend(chunk, pos, nl);
        this.sink.oversized(this.overHead, Buffer.concat(this.overTail), this.overTotal + 1, true);
        this.resetOver();
      } else if (this.partBytes) {
        if (this.partBytes + (nl - pos) > this.maxLineBytes) {
          this.startOver();
          this.overAppend(chunk, pos, nl);
          this.sink.oversized(this.overHead!, Buffer.concat(this.overTail), this.overTotal + 1, true);
          this.resetOver();
        } else {
          this.parts.push(chunk.subarray(pos, nl));
          const line = Buffer.concat(this.parts);
          this.parts = [];
          this.partBytes = 0;
          this.sink.line(line, 0, line.length);
        }
      } else if (nl - pos > this.maxLineBytes) {
        this.overHead = Buffer.from(chunk.subarray(pos, pos + HEAD_BYTES));
        this.overTotal = HEAD_BYTES;
        this.overAppend(chunk, pos + HEAD_BYTES, nl);
        this.sink.oversized(this.overHead, Buffer.concat(this.overTail), this.overTotal + 1, true);
        this.resetOver();
      } else {
        this.sink.line(chunk, pos, nl);
      }
      pos = nl + 1;
    }
  }

  end(): void {
    if (this.overHead) {
      this.sink.oversized(this.overHead, Buffer.concat(this.overTail), this.overTotal, false);
      this.resetOver();
    } else if (this.partBytes) {
      const line = Buffer.concat(this.parts);
      this.parts = [];
      this.partBytes = 0;
      this.sink.tail(line, 0, line.length);
    }
  }

  private carry(chunk: Buffer, start: number, end: number): void {
    if (this.overHead) {
      this.overAppend(chunk, start, end);
      return;
    }
    this.parts.push(Buffer.from(chunk.subarray(start, end)));
    this.partBytes += end - start;
    if (this.partBytes > this.maxLineBytes) this.startOver();
  }

  private startOver(): void {
    const all = Buffer.concat(this.parts);
    this.parts = [];
    this.partBytes = 0;
    this.overHead = Buffer.from(all.subarray(0, HEAD_BYTES));
    this.overTotal = this.overHead.length;
    this.overAppend(all, this.overHead.length, all.length);
  }

  private overAppend(chunk: Buffer, start: number, end: number): void {
    if (end <= start) return;
    this.overTotal += end - start;
    const keep = Math.min(end - start, TAIL_BYTES);
    this.overTail.push(Buffer.from(chunk.subarray(end - keep, end)));
    this.overTailBytes += keep;
    while (this.overTailBytes - this.overTail[0]!.length >= TAIL_BYTES) {
      this.overTailBytes -= this.overTail.shift()!.length;
    }
    // Input in tiny chunks would grow the list to one piece per chunk, and shift() over it makes
    // the line quadratic: join the pieces now and then.
    if (this.overTail.length > 256) this.overTail = [Buffer.concat(this.overTail)];
  }

  private resetOver(): void {
    this.overHead = null;
    this.overTail = [];
    this.overTailBytes = 0;
    this.overTotal = 0;
  }
}

/** Parse a stored stream file. A missing path is a clear error; anything inside the file is counted, never thrown. */
export async function parseStreamFile(path: string, opts: StreamParserOptions = {}): Promise<StreamSummary> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new NotFoundError(`stream file not found: ${path}; pass the path of a stored codex --json stream (.jsonl)`);
    if (code === 'EISDIR') throw new UserInputError(`stream path is a directory: ${path}; pass the path of a .jsonl file`);
    throw new UserInputError(`cannot read stream file ${path}: ${(err as Error).message}`);
  }
  try {
    const stat = await handle.stat();
    if (stat.isDirectory()) throw new UserInputError(`stream path is a directory: ${path}; pass the path of a .jsonl file`);
    const acc = new StreamAccumulator(opts);
    await readAhead(handle, (chunk) => acc.pushChunk(chunk));
    acc.end();
    return acc.result();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EISDIR') throw new UserInputError(`stream path is a directory: ${path}; pass the path of a .jsonl file`);
    throw err;
  } finally {
    await handle.close();
  }
}

const READ_BYTES = 1024 * 1024;

/**
 * Feed a file to `onChunk` in 1 MiB pieces, reading the next piece while the current one is
 * parsed (two buffers, one read in flight), so the disk and the parser overlap.
 */
async function readAhead(handle: FileHandle, onChunk: (chunk: Buffer) => void): Promise<void> {
  const bufs = [Buffer.allocUnsafe(READ_BYTES), Buffer.allocUnsafe(READ_BYTES)] as const;
  let which = 0;
  // Position null reads on from the file's offset (a pipe has no positions); one read at a time.
  let next: Promise<{ bytesRead: number }> | null = handle.read(bufs[0], 0, READ_BYTES, null);
  try {
    for (;;) {
      const { bytesRead } = await next;
      next = null;
      if (bytesRead === 0) return;
      const buf = bufs[which]!;
      which ^= 1;
      next = handle.read(bufs[which]!, 0, READ_BYTES, null);
      onChunk(bytesRead === READ_BYTES ? buf : buf.subarray(0, bytesRead));
    }
  } finally {
    // A read still in flight (the parser threw) must finish before the caller closes the file.
    if (next) await next.catch(() => undefined);
  }
}

/** Parse a live or stored stream given as a Readable (codex stdout) or any async iterable of chunks. */
export async function parseStream(source: Readable | AsyncIterable<Buffer | string>, opts: StreamParserOptions = {}): Promise<StreamSummary> {
  const acc = new StreamAccumulator(opts);
  for await (const chunk of source as AsyncIterable<Buffer | string>) {
    acc.pushChunk(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  }
  acc.end();
  return acc.result();
}

export function emptyUsage(): UsageTotals {
  return { input_tokens: 0, cached_input_tokens: 0, cache_write_input_tokens: 0, output_tokens: 0, reasoning_output_tokens: 0, total_tokens: 0 };
}

function addUsage(into: UsageTotals, u: UsageTotals): void {
  into.input_tokens += u.input_tokens;
  into.cached_input_tokens += u.cached_input_tokens;
  into.cache_write_input_tokens += u.cache_write_input_tokens;
  into.output_tokens += u.output_tokens;
  into.reasoning_output_tokens += u.reasoning_output_tokens;
  into.total_tokens += u.total_tokens;
}

function readUsage(raw: unknown): UsageTotals | null {
  if (raw === null || typeof raw !== 'object') return null;
  const u = raw as Record<string, unknown>;
  const num = (k: string): number => (typeof u[k] === 'number' && Number.isFinite(u[k]) ? (u[k] as number) : 0);
  const input = num('input_tokens');
  const output = num('output_tokens');
  return {
    input_tokens: input,
    cached_input_tokens: num('cached_input_tokens'),
    cache_write_input_tokens: num('cache_write_input_tokens'),
    output_tokens: output,
    reasoning_output_tokens: num('reasoning_output_tokens') || num('reasoning_tokens'),
    // codex 0.171.0 sends no total_tokens: input + output (cached and reasoning tokens are parts of those).
    total_tokens: num('total_tokens') || input + output,
  };
}

function printable(text: string): string {
  return text.replace(/[\u0000-\u0008\u000b-\u001f\u007f]/g, '?');
}

/** A command's text as records keep it: at most 4 Ki characters. */
function clipCommand(command: string): string {
  return command.length > COMMAND_TEXT_MAX ? `${command.slice(0, COMMAND_TEXT_MAX)}…` : command;
}

function excerptOf(output: OutputSource): string {
  if (output === null) return outputExcerpt('');
  if (typeof output === 'string') return outputExcerpt(output);
  const { head, tail, outStart, outEndInTail } = output;
  return joinExcerpt(unescapeFragment(head.slice(outStart, outStart + EXCERPT_HEAD), 'head'), unescapeFragment(tail.slice(Math.max(0, outEndInTail - EXCERPT_TAIL), outEndInTail), 'tail'), true);
}

/** Head and tail of a command's output, kept for failed test commands. */
function outputExcerpt(output: string): string {
  return joinExcerpt(output.slice(0, EXCERPT_HEAD), output.slice(Math.max(EXCERPT_HEAD, output.length - EXCERPT_TAIL)), output.length > EXCERPT_HEAD + EXCERPT_TAIL);
}

function joinExcerpt(head: string, tail: string, cut: boolean): string {
  if (!cut) return head + tail;
  return `${head}\n…\n${tail}`;
}

/** Decode a piece cut out of a JSON string literal; a broken escape at the cut edge is dropped. */
function unescapeFragment(fragment: string, edge: 'head' | 'tail'): string {
  let f = fragment;
  for (let attempt = 0; attempt < 8; attempt++) {
    try {
      return JSON.parse(`"${f}"`) as string;
    } catch {
      f = edge === 'head' ? f.slice(0, -1) : f.slice(1);
    }
  }
  return fragment.replace(/\\n/g, '\n').replace(/\\"/g, '"');
}
