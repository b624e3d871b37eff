import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

/** The last `maxBytes` bytes of a file as UTF-8, read without loading the rest (logs can be huge). Throws when the file cannot be read. */
export function readTail(path: string, maxBytes: number): string {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    const len = Math.min(size, maxBytes);
    const buf = Buffer.alloc(len);
    readSync(fd, buf, 0, len, size - len);
    return buf.toString('utf8');
  } finally {
    closeSync(fd);
  }
}
