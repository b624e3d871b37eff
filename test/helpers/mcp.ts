import { afterAll, afterEach, beforeAll, beforeEach } from 'vitest';
import { Client, InMemoryTransport } from '@modelcontextprotocol/client';
import { makeTestApp } from './app.js';
import type { App } from '../../src/app.js';
import { createMcpServer, type McpServerOptions } from '../../src/mcp/server.js';

/** A real SDK Client connected to a real server over the SDK's in-memory transport pair. */
export async function connectInMemory(app: App, opts: McpServerOptions = {}): Promise<{ client: Client; close: () => Promise<void> }> {
  const server = createMcpServer(app, { notifyChanges: true, ...opts });
  const [serverSide, clientSide] = InMemoryTransport.createLinkedPair();
  await server.connect(serverSide);
  const client = new Client({ name: 'agentpr-test', version: '1.0.0' });
  await client.connect(clientSide);
  return {
    client,
    close: async () => {
      await client.close();
      await server.close();
    },
  };
}

export type ToolCallResult = { isError?: boolean; content: Array<{ type: string; text?: string }>; structuredContent?: Record<string, unknown> };

export function textOf(r: ToolCallResult): string {
  return r.content.map((c) => c.text ?? '').join('\n');
}

/** The text of the first content of a resources/read answer. */
export function resourceText(r: { contents: Array<{ text?: string } | { blob: string }> }): string {
  const first = r.contents[0];
  if (!first || !('text' in first) || typeof first.text !== 'string') throw new Error('resource answered without text');
  return first.text;
}

/**
 * Registers vitest hooks that give the file a fresh test App and a connected in-memory client,
 * per test (`each`) or once for the file (`all`). Read `ctx.app` / `ctx.client` inside tests.
 */
export function useInMemoryClient(opts: { per?: 'each' | 'all'; env?: NodeJS.ProcessEnv } = {}): { app: App; client: Client } {
  const ctx = {} as { app: App; client: Client };
  let done: (() => Promise<void>) | undefined;
  const setup = async () => {
    const t = makeTestApp({ env: opts.env });
    const c = await connectInMemory(t.app);
    ctx.app = t.app;
    ctx.client = c.client;
    done = async () => {
      await c.close();
      await t.cleanup();
    };
  };
  const teardown = async () => {
    await done?.();
    done = undefined;
  };
  if (opts.per === 'each') {
    beforeEach(setup);
    afterEach(teardown);
  } else {
    beforeAll(setup);
    afterAll(teardown);
  }
  return ctx;
}
