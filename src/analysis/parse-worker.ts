import type { FileHandle } from 'node:fs/promises';
import { Worker } from 'node:worker_threads';
import { LineSplitter, type StreamAccumulator, type ParsedCommandLine } from './stream-parser.js';

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
const WORKER_SOURCE = String.raw`
const { parentPort } = require('node:worker_threads');
const { isUtf8 } = require('node:buffer');
let slots = [];
// What the main thread's reader does with the line (decode, JSON.parse, onEvent, onItem), up to
// the command's fields; anything that is not a command item is left to the main thread (null).
const one = (buf, s, e) => {
  const text = buf.toString('utf8', s, e);
  const invalid = text.indexOf('\uFFFD') !== -1 && !isUtf8(buf.subarray(s, e));
  let ev;
  try {
    ev = JSON.parse(text);
  } catch {
    return null;
  }
  if (ev === null || typeof ev !== 'object' || Array.isArray(ev)) return null;
  const type = ev.type;
  if (type !== 'item.started' && type !== 'item.updated' && type !== 'item.completed') return null;
  const item = ev.item;
  if (item === null || typeof item !== 'object' || item.type !== 'command_execution') return null;
  const output = typeof item.aggregated_output === 'string' ? item.aggregated_output : '';
  const exitCode = typeof item.exit_code === 'number' ? item.exit_code : null;
  const status = typeof item.status === 'string' ? item.status : type === 'item.completed' ? 'completed' : 'in_progress';
  return [
    typeof ev._ts === 'string' ? ev._ts : null,
    type,
    String(item.id ?? ''),
    typeof item.command === 'string' ? item.command : JSON.stringify(item.command ?? ''),
    exitCode,
    status,
    output.length,
    invalid,
  ];
};
parentPort.on('message', (m) => {
  if (m.slots) {
    slots = m.slots.map((s) => Buffer.from(s));
    return;
  }
  const buf = slots[m.slot];
  const r = m.ranges;
  const out = new Array(r.length / 2);
  for (let i = 0; i < r.length; i += 2) out[i >> 1] = one(buf, r[i], r[i + 1]);
  parentPort.postMessage(out);
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
  answer: Promise<Array<ParsedCommandLine | null>> | null;
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
  const waiting: Array<{ resolve: (v: Array<ParsedCommandLine | null>) => void; reject: (e: Error) => void }> = [];
  let failure: Error | null = null;
  const fail = (err: Error): void => {
    failure ??= err;
    for (const w of waiting.splice(0)) w.reject(err);
  };
  worker.on('message', (out: Array<ParsedCommandLine | null>) => waiting.shift()?.resolve(out));
  worker.on('exit', (code) => fail(new WorkerFailure(`stream parse worker exited (${code})`)));
  worker.on('error', (err) => fail(new WorkerFailure(`stream parse worker failed: ${err.message}`)));

  const { maxLineBytes, liteLineBytes } = acc.lineLimits();
  // The share of long-line bytes sent to the worker, moved after each batch toward the split where
  // neither thread waits for the other.
  let share = 0.5;
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
    let answers: Array<ParsedCommandLine | null> = [];
    if (batch.answer) {
      // Waiting here means the worker is behind: send it less; not waiting, send it more.
      share = Math.min(0.9, Math.max(0.1, share + (batch.answered ? 0.05 : -0.05)));
      const w0 = performance.now();
      answers = await batch.answer;
      DBG.wait += performance.now() - w0; DBG.n++; DBG.shares.push(Math.round(share*100));
    }
    const buf = slots[batch.slot]!;
    for (const en of batch.entries) {
      if (en.kind === 'line') acc.acceptLine(en.buf, en.start, en.end, en.terminated);
      else if (en.kind === 'oversized') acc.acceptOversized(en.head, en.tail, en.total, en.terminated);
      else {
        const parsed = answers[en.index];
        if (parsed) acc.acceptParsedCommand(en.end - en.start + 1, parsed, buf, en.start, en.end);
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
    if (process.env.STREAM_DEBUG) console.error(JSON.stringify(DBG));
  }
}
