import { Client, InMemoryTransport } from '@modelcontextprotocol/client';
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
