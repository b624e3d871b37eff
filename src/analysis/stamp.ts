import { Transform, type TransformCallback } from 'node:stream';
import { STREAM_TS_FIELD } from './stream-parser.js';

/**
 * Stamps codex stdout as it streams, the same way `stampLine` stamps one line: every line that
 * starts with `{` gets `"_ts":"<ISO receive time>"` as its first key. Bytes pass straight through
 * (nothing is buffered but the one byte after `{`), so a 30 MB line costs nothing extra.
 *
 *     child.stdout.pipe(createStampTransform()).pipe(createWriteStream(streamPath));
 *
 * The receive time is the time the chunk holding the line's first byte arrived.
 */
export function createStampTransform(clock: () => Date = () => new Date()): Transform {
  // 0: at the start of a line; 1: inside a line that is passed through; 2: saw `{`, waiting for the next non-blank byte.
  let state: 0 | 1 | 2 = 0;
  let stamp = '';
  return new Transform({
    transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback) {
      const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      const now = `{"${STREAM_TS_FIELD}":${JSON.stringify(clock().toISOString())}`;
      const out: Buffer[] = [];
      let pos = 0;
      const n = buf.length;
      while (pos < n) {
        if (state === 1) {
          const nl = buf.indexOf(10, pos);
          if (nl === -1) {
            out.push(buf.subarray(pos));
            pos = n;
          } else {
            out.push(buf.subarray(pos, nl + 1));
            pos = nl + 1;
            state = 0;
          }
          continue;
        }
        if (state === 0) {
          if (buf[pos] === 0x7b) {
            stamp = now;
            state = 2;
            pos++;
          } else {
            state = 1;
          }
          continue;
        }
        // state 2: decide between `{"_ts":..}` (empty object) and `{"_ts":..,` (more keys).
        const b = buf[pos]!;
        if (b === 0x20 || b === 0x09 || b === 0x0d) {
          pos++;
        } else if (b === 0x7d) {
          out.push(Buffer.from(stamp));
          state = 1;
        } else if (b === 10) {
          out.push(Buffer.from('{'));
          state = 1;
        } else {
          out.push(Buffer.from(`${stamp},`));
          state = 1;
        }
      }
      done(null, out.length === 1 ? out[0] : Buffer.concat(out));
    },
    flush(done: TransformCallback) {
      done(null, state === 2 ? Buffer.from('{') : undefined);
    },
  });
}
