import type { FileHandle } from 'node:fs/promises';
import { Worker } from 'node:worker_threads';
import { LineSplitter, type StreamAccumulator } from './stream-parser.js';

/**
 * A large stored stream is read on two threads: most of its bytes are the long `item.completed`
 * lines of commands with their output, and `JSON.parse` of those is most of the work. A worker
 * thread parses a share of them (from shared memory: the main thread reads the file into a ring of
 * three 1 MiB shared buffers) and sends back only what the digest keeps of each (id, command, exit
 * code, status, output length; the few output excerpts kept are cut from the bytes by the main
 * thread, which still holds them). The main thread
 * splits lines, reads everything else, parses the rest of the long lines itself, and takes the
 * worker's answers in line order, so the summary is the one a single thread gives. At most two
 * buffers are in flight, so memory stays flat.
 *
 * The worker is a plain script (no imports of this package), so it runs the same from `dist/`,
 * a bundle or the test runner.
 */
/** Numbers per answered line (see the worker's `one`). */
export const ROW = 12;
const WORKER_SOURCE = String.raw`
const { parentPort } = require('node:worker_threads');
const { isUtf8 } = require('node:buffer');
let slots = [];
const EVENTS = { started: 0, updated: 1, completed: 2 };
const STATUSES = { completed: 0, failed: 1, declined: 2, in_progress: 3 };
// codex's head of a command line; the "d" flag gives where each string's body starts and ends.
const HEAD = /^\{(?:"_ts":"((?:[^"\\]|\\.)*)",)?"type":"item\.(started|updated|completed)","item":\{"id":"((?:[^"\\]|\\.)*)","type":"command_execution","command":"((?:[^"\\]|\\.)*)","aggregated_output":"/d;
const dec = (b) => (b.indexOf('\\') === -1 ? b : JSON.parse('"' + b + '"'));
// What the main thread's reader does with the line (decode, JSON.parse, onEvent, onItem), up to
// the command's fields. Numbers go back in a row of ROW; strings as where their JSON bodies are
// in the line (the main thread decodes those few bytes), after checking that decoding them gives
// what JSON.parse gave. Anything else (row[0] = 0) the main thread reads itself.
const one = (buf, s, e, row, at) => {
  row[at] = 0;
  const text = buf.toString('utf8', s, e);
  const m = HEAD.exec(text);
  if (!m) return;
  let ev;
  try {
    ev = JSON.parse(text);
  } catch {
    return;
  }
  if (ev === null || typeof ev !== 'object' || Array.isArray(ev)) return;
  const item = ev.item;
  if (ev.type !== 'item.' + m[2] || item === null || typeof item !== 'object' || item.type !== 'command_execution') return;
  if (typeof item.id !== 'string' || typeof item.command !== 'string') return;
  try {
    if (dec(m[3]) !== item.id || dec(m[4]) !== item.command) return;
    if (m[1] === undefined ? ev._ts !== undefined : dec(m[1]) !== ev._ts) return;
  } catch {
    return;
  }
  const status = typeof item.status === 'string' ? item.status : ev.type === 'item.completed' ? 'completed' : 'in_progress';
  const code = STATUSES[status];
  if (code === undefined || !Object.hasOwn(STATUSES, status)) return;
  const output = typeof item.aggregated_output === 'string' ? item.aggregated_output : '';
  const ascii = Buffer.byteLength(m[0]) === m[0].length;
  const byteAt = (i) => s + (ascii ? i : Buffer.byteLength(text.slice(0, i)));
  row[at] = 1;
  row[at + 1] = EVENTS[m[2]];
  row[at + 2] = code;
  row[at + 3] = typeof item.exit_code === 'number' ? item.exit_code : NaN;
  row[at + 4] = output.length;
  row[at + 5] = text.indexOf('\uFFFD') !== -1 && !isUtf8(buf.subarray(s, e)) ? 1 : 0;
  const ix = m.indices;
  row[at + 6] = ix[1] ? byteAt(ix[1][0]) : -1;
  row[at + 7] = ix[1] ? byteAt(ix[1][1]) : -1;
  row[at + 8] = byteAt(ix[3][0]);
  row[at + 9] = byteAt(ix[3][1]);
  row[at + 10] = byteAt(ix[4][0]);
  row[at + 11] = byteAt(ix[4][1]);
};
parentPort.on('message', (m) => {
  if (m.slots) {
    slots = m.slots.map((s) => Buffer.from(s));
    return;
  }
  const buf = slots[m.slot];
  const r = m.ranges;
  const rows = new Float64Array((r.length / 2) * ${ROW});
  for (let i = 0; i < r.length; i += 2) one(buf, r[i], r[i + 1], rows, (i / 2) * ${ROW});
  parentPort.postMessage(rows, [rows.buffer]);
});
`;

/** The worker could not be started or stopped early: the caller reads the file on one thread instead. */
export class WorkerFailure extends Error {}

const DBG = { wait: 0, read: 0, n: 0, shares: [] as number[] };
const SLOT_BYTES = 1024 * 1024;
/** Lines shorter than this are not worth a trip to the worker. */
const MIN_DELEGATED_BYTES = 1024;

type Entry =
  | { kind: 'line'; buf: Buffer; start: number; end: number; terminated: boolean }
  | { kind: 'oversized'; head: Buffer; tail: Buffer; total: number; terminated: boolean }
  | { kind: 'delegated'; start: number; end: number; index: number };

interface Batch {
  slot: number;
  entries: Entry[];
  answer: Promise<Float64Array> | null;
  answered: boolean;
}

/** Feeds `handle` (from its current offset) to `acc` on two threads; see above. */
export async function readOnTwoThreads(handle: FileHandle, acc: StreamAccumulator): Promise<void> {
  const shared = [0, 1, 2].map(() => new SharedArrayBuffer(SLOT_BYTES));
  const slots = shared.map((s) => Buffer.from(s));
  const worker = new Worker(WORKER_SOURCE, { eval: true });
  worker.unref();
  worker.postMessage({ slots: shared });
  // Answers come back in the order batches were sent.
  const waiting: Array<{ resolve: (v: Float64Array) => void; reject: (e: Error) => void }> = [];
  let failure: Error | null = null;
  const fail = (err: Error): void => {
    failure ??= err;
    for (const w of waiting.splice(0)) w.reject(err);
  };
  worker.on('message', (out: Float64Array) => waiting.shift()?.resolve(out));
  worker.on('exit', (code) => fail(new WorkerFailure(`stream parse worker exited (${code})`)));
  worker.on('error', (err) => fail(new WorkerFailure(`stream parse worker failed: ${err.message}`)));

  const { maxLineBytes, liteLineBytes } = acc.lineLimits();
  // The share of long-line bytes sent to the worker, moved after each batch toward the split where
  // neither thread waits for the other.
  let share = 0.8;
  let sentBytes = 0;
  let longBytes = 0;
  let current: Batch = { slot: 0, entries: [], answer: null, answered: false };
  let chunk: Buffer = slots[0]!;
  let ranges: number[] = [];
  const splitter = new LineSplitter(maxLineBytes, {
    line: (buf, start, end) => {
      let e = end;
      if (e > start && buf[e - 1] === 13) e--;
      const len = e - start;
      if (buf === chunk && len >= MIN_DELEGATED_BYTES && len <= liteLineBytes && buf[start] === 0x7b) {
        longBytes += len;
        if (sentBytes <= share * longBytes) {
          sentBytes += len;
          current.entries.push({ kind: 'delegated', start, end, index: ranges.length / 2 });
          ranges.push(start, e);
          return;
        }
      }
      current.entries.push({ kind: 'line', buf, start, end, terminated: true });
    },
    tail: (buf, start, end) => current.entries.push({ kind: 'line', buf, start, end, terminated: false }),
    oversized: (head, tail, total, terminated) => current.entries.push({ kind: 'oversized', head, tail, total, terminated }),
  });

  const send = (batch: Batch): void => {
    if (!ranges.length) return;
    batch.answer = new Promise((resolve, reject) => {
      if (failure) return reject(failure);
      waiting.push({ resolve, reject });
    });
    batch.answer.then(
      () => (batch.answered = true),
      () => undefined,
    );
    worker.postMessage({ slot: batch.slot, ranges: Int32Array.from(ranges) });
    ranges = [];
  };

  const apply = async (batch: Batch): Promise<void> => {
    let answers: Float64Array = new Float64Array(0);
    if (batch.answer) {
      // Waiting here means the worker is behind: send it less; not waiting, send it more.
      share = Math.min(1, Math.max(0.1, share + (batch.answered ? 0.05 : -0.05)));
      const w0 = performance.now();
      answers = await batch.answer;
      DBG.wait += performance.now() - w0; DBG.n++; DBG.shares.push(Math.round(share*100));
    }
    const buf = slots[batch.slot]!;
    for (const en of batch.entries) {
      if (en.kind === 'line') acc.acceptLine(en.buf, en.start, en.end, en.terminated);
      else if (en.kind === 'oversized') acc.acceptOversized(en.head, en.tail, en.total, en.terminated);
      else {
        const at = en.index * ROW;
        if (answers[at] === 1) acc.acceptParsedCommand(en.end - en.start + 1, answers, at, buf, en.start, en.end);
        else acc.acceptLine(buf, en.start, en.end, true);
      }
    }
  };

  let previous: Batch | null = null;
  let index = 0;
  let reading: Promise<{ bytesRead: number }> | null = handle.read(slots[0]!, 0, SLOT_BYTES, null);
  try {
    for (;;) {
      const r0 = performance.now();
      const { bytesRead } = await reading;
      DBG.read += performance.now() - r0;
      reading = null;
      if (bytesRead === 0) break;
      current = { slot: index % 3, entries: [], answer: null, answered: false };
      chunk = slots[current.slot]!.subarray(0, bytesRead);
      sentBytes = 0;
      longBytes = 0;
      splitter.push(chunk);
      send(current);
      index++;
      // The slot read next held the batch before `previous`, which is done with.
      reading = handle.read(slots[index % 3]!, 0, SLOT_BYTES, null);
      if (previous) await apply(previous);
      previous = current;
    }
    current = { slot: index % 3, entries: [], answer: null, answered: false };
    chunk = Buffer.alloc(0);
    splitter.end();
    if (previous) await apply(previous);
    await apply(current);
  } finally {
    if (reading) await reading.catch(() => undefined);
    await worker.terminate();
    if (process.env.STREAM_DEBUG) console.error(JSON.stringify({ ...DBG, shares: DBG.shares.length, index, sentBytes, longBytes }));
  }
}
