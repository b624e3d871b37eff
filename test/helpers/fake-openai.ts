import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';

const FAKE_CODEX = join(import.meta.dirname, '..', 'fixtures', 'bin', 'fake-codex');

/**
 * A local HTTP server speaking the OpenAI chat-completions wire protocol (POST
 * /v1/chat/completions), for the openai SDK with `baseURL` pointed at `server.baseURL`.
 * Answers come from a script: queue replies with `reply()` (one per request, in order) or set a
 * `handler`; with neither, it answers a plain assistant message. Every request body is recorded.
 */

export interface ChatRequestBody {
  model: string;
  messages: Array<{ role: string; content?: unknown; tool_calls?: unknown }>;
  tools?: Array<{ type: string; function: { name: string; description?: string; parameters?: Record<string, unknown> } }>;
  tool_choice?: unknown;
  [key: string]: unknown;
}

export interface RecordedRequest {
  path: string;
  headers: IncomingMessage['headers'];
  body: ChatRequestBody;
}

export type FakeReply =
  | { kind: 'tool_calls'; calls: Array<{ name: string; arguments: string | Record<string, unknown> }>; content?: string | null }
  | { kind: 'text'; content: string }
  | { kind: 'error'; status: number; message: string; type?: string }
  /** Accepts the request and never answers (until the server closes): a timeout. */
  | { kind: 'hang' }
  /** Answers with this raw body and status (malformed responses). */
  | { kind: 'raw'; status: number; body: string };

export function toolCall(name: string, args: string | Record<string, unknown>, content: string | null = null): FakeReply {
  return { kind: 'tool_calls', calls: [{ name, arguments: args }], content };
}

export function textReply(content: string): FakeReply {
  return { kind: 'text', content };
}

export function errorReply(status: number, message = 'upstream failure'): FakeReply {
  return { kind: 'error', status, message };
}

let counter = 0;

function completion(model: string, reply: Extract<FakeReply, { kind: 'tool_calls' | 'text' }>): Record<string, unknown> {
  counter += 1;
  const message =
    reply.kind === 'text'
      ? { role: 'assistant', content: reply.content, refusal: null }
      : {
          role: 'assistant',
          content: reply.content ?? null,
          refusal: null,
          tool_calls: reply.calls.map((c, i) => ({
            id: `call_${counter}_${i}`,
            type: 'function',
            function: { name: c.name, arguments: typeof c.arguments === 'string' ? c.arguments : JSON.stringify(c.arguments) },
          })),
        };
  return {
    id: `chatcmpl-fake${counter}`,
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model,
    choices: [{ index: 0, message, logprobs: null, finish_reason: reply.kind === 'text' ? 'stop' : 'tool_calls' }],
    usage: { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 },
  };
}

export class FakeOpenAI {
  readonly requests: RecordedRequest[] = [];
  /** Answers used in order, one per request; when empty, `handler` or a default text answer. */
  readonly script: FakeReply[] = [];
  handler?: (req: RecordedRequest) => FakeReply;
  /** Required bearer token; a request without it gets 401 like the real API. */
  apiKey = 'sk-test-fake';
  private server?: Server;
  private readonly hanging = new Set<ServerResponse>();

  get baseURL(): string {
    const addr = this.server?.address() as AddressInfo | null | undefined;
    if (!addr) throw new Error('FakeOpenAI is not listening; call start() first');
    return `http://127.0.0.1:${addr.port}/v1`;
  }

  /** The environment that points agentpr's manager model at this server (with the fake codex as worker). */
  managerEnv(timeoutSec: string): NodeJS.ProcessEnv {
    return {
      AGENTPR_CODEX_BIN: FAKE_CODEX,
      AGENTPR_MANAGER_API_KEY: this.apiKey,
      AGENTPR_MANAGER_BASE_URL: this.baseURL,
      AGENTPR_MANAGER_MODEL: 'manager-test-model',
      AGENTPR_MANAGER_TIMEOUT_SEC: timeoutSec,
    };
  }

  reply(...replies: FakeReply[]): this {
    this.script.push(...replies);
    return this;
  }

  async start(): Promise<this> {
    this.server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    return this;
  }

  async close(): Promise<void> {
    for (const res of this.hanging) res.destroy();
    this.hanging.clear();
    const server = this.server;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const path = (req.url ?? '').split('?')[0] ?? '';
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(typeof body === 'string' ? body : JSON.stringify(body));
    };
    if (req.method !== 'POST' || !/\/chat\/completions$/.test(path)) {
      send(404, { error: { message: `fake openai: no route ${req.method} ${path}`, type: 'invalid_request_error' } });
      return;
    }
    if (req.headers.authorization !== `Bearer ${this.apiKey}`) {
      send(401, { error: { message: 'Incorrect API key provided', type: 'invalid_request_error', code: 'invalid_api_key' } });
      return;
    }
    let body: ChatRequestBody;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as ChatRequestBody;
    } catch {
      send(400, { error: { message: 'We could not parse the JSON body of your request.', type: 'invalid_request_error' } });
      return;
    }
    const recorded: RecordedRequest = { path, headers: req.headers, body };
    this.requests.push(recorded);
    const reply = this.script.shift() ?? this.handler?.(recorded) ?? textReply('I can only help with agentpr runs.');
    switch (reply.kind) {
      case 'hang':
        this.hanging.add(res);
        res.on('close', () => this.hanging.delete(res));
        return;
      case 'raw':
        send(reply.status, reply.body);
        return;
      case 'error':
        send(reply.status, { error: { message: reply.message, type: reply.type ?? 'server_error', param: null, code: null } });
        return;
      default:
        send(200, completion(body.model, reply));
    }
  }
}

export async function startFakeOpenAI(): Promise<FakeOpenAI> {
  return new FakeOpenAI().start();
}
