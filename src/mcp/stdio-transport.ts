import type { Readable, Writable } from 'node:stream';
import { parseJSONRPCMessage, serializeMessage, type JSONRPCMessage, type Transport } from '@modelcontextprotocol/server';

export const DEFAULT_MAX_MESSAGE_BYTES = 8 * 1024 * 1024;

/**
 * MCP over newline-delimited JSON on stdin/stdout. Unlike the SDK's stdio transport, a line that
 * is not JSON is answered with a JSON-RPC parse error (-32700), a line that is JSON but not a
 * JSON-RPC message with -32600, and a line over the size limit is skipped while it streams in
 * (never buffered whole) and answered with -32600. The connection keeps serving after each.
 */
export class LineStdioTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage) => void;

  private chunks: Buffer[] = [];
  private buffered = 0;
  private skipping = 0; // bytes dropped from an oversized line so far; 0 when not skipping
  private started = false;
  private readonly onData = (chunk: Buffer) => this.ingest(chunk);
  private readonly onEnd = () => void this.close();

  constructor(
    private readonly stdin: Readable = process.stdin,
    private readonly stdout: Writable = process.stdout,
    private readonly maxMessageBytes = DEFAULT_MAX_MESSAGE_BYTES,
  ) {}

  async start(): Promise<void> {
    if (this.started) throw new Error('LineStdioTransport already started');
    this.started = true;
    this.stdin.on('data', this.onData);
    this.stdin.on('end', this.onEnd);
    this.stdin.on('error', (err: Error) => this.onerror?.(err));
  }

  private ingest(chunk: Buffer): void {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, start);
      const piece = nl < 0 ? chunk.subarray(start) : chunk.subarray(start, nl);
      if (this.skipping > 0) {
        this.skipping += piece.length;
      } else if (this.buffered + piece.length > this.maxMessageBytes) {
        this.skipping = this.buffered + piece.length;
        this.chunks = [];
        this.buffered = 0;
      } else if (piece.length) {
        this.chunks.push(piece);
        this.buffered += piece.length;
      }
      if (nl < 0) return;
      if (this.skipping > 0) {
        const size = this.skipping;
        this.skipping = 0;
        this.reply(null, -32600, `message of ${size} bytes exceeds the ${this.maxMessageBytes}-byte limit; it was discarded`);
      } else {
        const line = Buffer.concat(this.chunks, this.buffered).toString('utf8').replace(/\r$/, '');
        this.chunks = [];
        this.buffered = 0;
        if (line.trim()) this.dispatch(line);
      }
      start = nl + 1;
    }
  }

  private dispatch(line: string): void {
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (err) {
      this.reply(null, -32700, `Parse error: ${(err as Error).message}`);
      return;
    }
    let message: JSONRPCMessage;
    try {
      message = parseJSONRPCMessage(value);
    } catch {
      const id = value && typeof value === 'object' && 'id' in value ? (value as { id: unknown }).id : null;
      this.reply(typeof id === 'string' || typeof id === 'number' ? id : null, -32600, 'Invalid Request: not a JSON-RPC 2.0 message');
      return;
    }
    this.onmessage?.(message);
  }

  private reply(id: string | number | null, code: number, message: string): void {
    this.stdout.write(`${JSON.stringify({ jsonrpc: '2.0', id, error: { code, message } })}\n`);
    this.onerror?.(new Error(message));
  }

  send(message: JSONRPCMessage): Promise<void> {
    return new Promise((resolve) => {
      if (this.stdout.write(serializeMessage(message))) resolve();
      else this.stdout.once('drain', resolve);
    });
  }

  async close(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    this.stdin.off('data', this.onData);
    this.stdin.off('end', this.onEnd);
    this.chunks = [];
    this.onclose?.();
  }
}
