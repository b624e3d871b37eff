import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * A local server speaking the OpenAI Responses API the way the Codex CLI uses it: `POST
 * <base_url>/responses` with `stream: true`, answered by Server-Sent Events (`response.created`,
 * `response.output_item.added` / `.done`, `response.output_text.delta`, `response.completed` with
 * usage). The real Codex CLI is pointed at it by a `CODEX_HOME/config.toml` (writeCodexConfig).
 *
 * Like the real API it refuses: a missing or wrong bearer key (401), a non-streaming request or a
 * body without `model`/`input` (400), other paths (404). A scripted tool call must name a tool the
 * request offered, in the dialect codex chose for the model:
 *   - code mode (the default model): one custom `exec` tool taking JavaScript that calls
 *     `tools.exec_command({cmd})` / `tools.apply_patch(patch)` (offered in an `additional_tools` input item);
 *   - classic (e.g. gpt-5.5): top-level `exec_command` function and freeform `apply_patch` custom tool.
 * A reply naming a tool that was not offered is answered 400, as the API answers unknown tools.
 */

export type Dialect = 'code_mode' | 'classic';

export type ResponsesReply =
  | { kind: 'message'; text: string }
  /** Run a shell command through the dialect's exec tool. */
  | { kind: 'exec'; cmd: string }
  /** Apply a patch (`*** Begin Patch` ...) through the dialect's apply_patch tool. */
  | { kind: 'patch'; patch: string }
  | { kind: 'error'; status: number; message: string }
  /** Accept the request and never answer. */
  | { kind: 'hang' };

export interface ResponsesRequest {
  path: string;
  authorization: string | undefined;
  body: Record<string, unknown>;
  dialect: Dialect;
}

export interface FakeResponses {
  /** The base_url for config.toml (ends in /v1). */
  baseURL: string;
  requests: ResponsesRequest[];
  /** Queue replies, one per request in order; when the queue is empty the answer is `fallback`. */
  reply: (...r: ResponsesReply[]) => void;
  fallback: ResponsesReply;
  usage: { input_tokens: number; cached_tokens: number; output_tokens: number; reasoning_tokens: number };
  close: () => Promise<void>;
}

/** Tool names the request offers, top-level and inside `additional_tools` namespaces. */
export function offeredTools(body: Record<string, unknown>): { top: Set<string>; nested: Set<string> } {
  const top = new Set<string>();
  const nested = new Set<string>();
  for (const t of (body.tools as Array<{ name?: string }> | undefined) ?? []) if (t.name) top.add(t.name);
  for (const item of (body.input as Array<Record<string, unknown>> | undefined) ?? []) {
    if (item.type !== 'additional_tools') continue;
    for (const ns of (item.tools as Array<{ name?: string; tools?: Array<{ name?: string }> }> | undefined) ?? []) {
      for (const t of ns.tools ?? []) if (t.name) (ns.name === 'functions' ? top : nested).add(t.name);
    }
  }
  return { top, nested };
}

function dialectOf(body: Record<string, unknown>): Dialect {
  return offeredTools(body).top.has('exec_command') ? 'classic' : 'code_mode';
}

let seq = 0;

export async function startFakeResponses(opts: { apiKey: string }): Promise<FakeResponses> {
  const queue: ResponsesReply[] = [];
  const open = new Set<ServerResponse>();
  const state: FakeResponses = {
    baseURL: '',
    requests: [],
    reply: (...r) => queue.push(...r),
    fallback: { kind: 'message', text: 'Done.' },
    usage: { input_tokens: 1200, cached_tokens: 200, output_tokens: 80, reasoning_tokens: 16 },
    close: async () => {
      for (const res of open) res.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };

  const fail = (res: ServerResponse, status: number, message: string, type = 'invalid_request_error') => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: { message, type, param: null, code: null } }));
  };

  const handle = (req: IncomingMessage, res: ServerResponse, raw: string) => {
    if (req.method !== 'POST' || req.url !== '/v1/responses') return fail(res, 404, `Invalid URL (${req.method} ${req.url})`);
    if (req.headers.authorization !== `Bearer ${opts.apiKey}`) {
      return fail(res, 401, 'Incorrect API key provided', 'invalid_request_error');
    }
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(raw) as Record<string, unknown>;
    } catch {
      return fail(res, 400, 'We could not parse the JSON body of your request.');
    }
    if (typeof body.model !== 'string' || !Array.isArray(body.input)) return fail(res, 400, "Missing required parameter: 'model' or 'input'.");
    if (body.stream !== true) return fail(res, 400, 'codex always streams; this fake answers only stream: true');
    const dialect = dialectOf(body);
    state.requests.push({ path: req.url, authorization: req.headers.authorization, body, dialect });
    const r = queue.shift() ?? state.fallback;
    if (r.kind === 'error') return fail(res, r.status, r.message, r.status === 429 ? 'rate_limit_exceeded' : 'server_error');
    if (r.kind === 'hang') {
      open.add(res);
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      return;
    }
    const tools = offeredTools(body);
    const n = ++seq;
    let item: Record<string, unknown>;
    if (r.kind === 'message') {
      item = { type: 'message', id: `msg_${n}`, role: 'assistant', status: 'completed', content: [{ type: 'output_text', text: r.text, annotations: [] }] };
    } else if (dialect === 'classic') {
      const name = r.kind === 'exec' ? 'exec_command' : 'apply_patch';
      if (!tools.top.has(name)) return fail(res, 400, `Tool '${name}' was not offered in this request.`);
      item =
        r.kind === 'exec'
          ? { type: 'function_call', id: `fc_${n}`, call_id: `call_${n}`, name, arguments: JSON.stringify({ cmd: r.cmd }), status: 'completed' }
          : { type: 'custom_tool_call', id: `ctc_${n}`, call_id: `call_${n}`, name, input: r.patch, status: 'completed' };
    } else {
      if (!tools.top.has('exec')) return fail(res, 400, "Tool 'exec' was not offered in this request.");
      const js =
        r.kind === 'exec'
          ? `const r = await tools.exec_command({ cmd: ${JSON.stringify(r.cmd)} });\ntext(JSON.stringify(r));`
          : `const r = await tools.apply_patch(${JSON.stringify(r.patch)});\ntext(JSON.stringify(r));`;
      item = { type: 'custom_tool_call', id: `ctc_${n}`, call_id: `call_${n}`, name: 'exec', input: js, status: 'completed' };
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    const send = (ev: Record<string, unknown>) => res.write(`event: ${String(ev.type)}\ndata: ${JSON.stringify(ev)}\n\n`);
    const id = `resp_${n}`;
    const head = { id, object: 'response', created_at: Math.floor(Date.now() / 1000), model: body.model, output: [] as unknown[] };
    send({ type: 'response.created', sequence_number: 0, response: { ...head, status: 'in_progress' } });
    send({ type: 'response.output_item.added', sequence_number: 1, output_index: 0, item: { ...item, status: 'in_progress' } });
    if (r.kind === 'message') send({ type: 'response.output_text.delta', sequence_number: 2, item_id: item.id, output_index: 0, content_index: 0, delta: r.text });
    send({ type: 'response.output_item.done', sequence_number: 3, output_index: 0, item });
    const u = state.usage;
    send({
      type: 'response.completed',
      sequence_number: 4,
      response: {
        ...head,
        status: 'completed',
        output: [item],
        usage: {
          input_tokens: u.input_tokens,
          input_tokens_details: { cached_tokens: u.cached_tokens },
          output_tokens: u.output_tokens,
          output_tokens_details: { reasoning_tokens: u.reasoning_tokens },
          total_tokens: u.input_tokens + u.output_tokens,
        },
      },
    });
    res.end();
  };

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => handle(req, res, Buffer.concat(chunks).toString('utf8')));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  state.baseURL = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  return state;
}

/**
 * `CODEX_HOME/config.toml` pointing codex at the fake: a provider with base_url, the name of the
 * variable holding the key, and the Responses wire API. Retries are cut to one reconnect so that
 * failure scenarios take a second, not the default backoff of half a minute.
 */
export function writeCodexConfig(codexHome: string, opts: { baseURL: string; envKey: string; model?: string }): string {
  mkdirSync(codexHome, { recursive: true });
  const file = join(codexHome, 'config.toml');
  const lines = [
    ...(opts.model ? [`model = "${opts.model}"`] : []),
    'model_provider = "local"',
    '',
    '[model_providers.local]',
    'name = "local Responses API"',
    `base_url = "${opts.baseURL}"`,
    `env_key = "${opts.envKey}"`,
    'wire_api = "responses"',
    'request_max_retries = 0',
    'stream_max_retries = 1',
    '',
  ];
  writeFileSync(file, lines.join('\n'));
  return file;
}
