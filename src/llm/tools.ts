import type OpenAI from 'openai';
import type {
  ChatCompletionFunctionTool,
  ChatCompletionMessageParam,
  ChatCompletionMessageToolCall,
} from 'openai/resources/chat/completions';
import { inputJsonSchema, type AnyTool } from '../registry.js';
import { errorMessage } from '../core/errors.js';

/**
 * Registry tools as OpenAI function definitions, and the model's tool calls back as
 * `{name, args}` for `Registry.call` (which validates them with the same zod schemas as every
 * other entry). Shared by the Telegram NL router and the manager LLM.
 */

export interface ToOpenAiToolsOptions {
  /** Input fields the model must not see (e.g. skip_doctor, idempotency_key). */
  omitFields?: readonly string[];
}

/** One function definition per tool; the parameters are the tool's input JSON Schema (zod 4). */
export function toOpenAiTools(tools: readonly AnyTool[], opts: ToOpenAiToolsOptions = {}): ChatCompletionFunctionTool[] {
  const omit = new Set(opts.omitFields ?? []);
  return tools.map((tool) => {
    const { $schema: _ignored, ...schema } = inputJsonSchema(tool);
    const properties = schema.properties && typeof schema.properties === 'object' ? { ...(schema.properties as Record<string, unknown>) } : undefined;
    if (properties) {
      for (const field of omit) delete properties[field];
      schema.properties = properties;
    }
    if (Array.isArray(schema.required)) schema.required = (schema.required as string[]).filter((f) => !omit.has(f));
    return {
      type: 'function',
      function: { name: tool.name, description: `${tool.title}: ${tool.description}`, parameters: schema },
    };
  });
}

export type ParsedToolCall =
  | { ok: true; id: string; name: string; args: Record<string, unknown> }
  | { ok: false; id?: string; name?: string; error: string };

export interface ParseToolCallOptions {
  /** Fields the caller refuses even if the tool accepts them (they were not offered). */
  forbiddenFields?: readonly string[];
}

/**
 * Checks a model's tool call against the tools that were offered: a function call, one of the
 * offered names, arguments a JSON object. Schema validation is left to `Registry.call`.
 */
export function parseToolCall(
  call: ChatCompletionMessageToolCall,
  offered: readonly AnyTool[] | ReadonlySet<string>,
  opts: ParseToolCallOptions = {},
): ParsedToolCall {
  if (call.type !== 'function') return { ok: false, id: call.id, error: `the model made a '${call.type}' tool call; only function calls are accepted` };
  const name = call.function.name;
  const names = offered instanceof Set ? offered : new Set((offered as readonly AnyTool[]).map((t) => t.name));
  if (!names.has(name)) {
    return { ok: false, id: call.id, name, error: `the model chose '${name}', which was not offered; offered: ${[...names].join(', ') || 'none'}` };
  }
  let args: unknown;
  try {
    args = call.function.arguments.trim() === '' ? {} : JSON.parse(call.function.arguments);
  } catch (err) {
    return { ok: false, id: call.id, name, error: `the model's arguments for ${name} are not valid JSON (${errorMessage(err)})` };
  }
  if (!args || typeof args !== 'object' || Array.isArray(args)) {
    return { ok: false, id: call.id, name, error: `the model's arguments for ${name} must be a JSON object` };
  }
  const record = args as Record<string, unknown>;
  const forbidden = (opts.forbiddenFields ?? []).filter((f) => f in record);
  if (forbidden.length) {
    return { ok: false, id: call.id, name, error: `the model set ${forbidden.map((f) => `'${f}'`).join(', ')} for ${name}, which this caller does not allow` };
  }
  return { ok: true, id: call.id, name, args: record };
}

export type ToolChoice =
  | { kind: 'call'; call: ParsedToolCall; extraCalls: number; content: string | null }
  | { kind: 'none'; content: string | null };

export interface ChooseToolOptions {
  client: OpenAI;
  model: string;
  messages: ChatCompletionMessageParam[];
  tools: readonly AnyTool[];
  omitFields?: readonly string[];
  signal?: AbortSignal;
  /** Per-request timeout in milliseconds (the SDK's own option). */
  timeoutMs?: number;
  temperature?: number;
}

/**
 * One chat-completions request offering `tools`; returns the model's first tool call (parsed,
 * not yet validated) or its plain answer. API errors and timeouts are thrown (callers fall back).
 */
export async function chooseTool(opts: ChooseToolOptions): Promise<ToolChoice> {
  const offered = opts.tools;
  const completion = await opts.client.chat.completions.create(
    {
      model: opts.model,
      messages: opts.messages,
      tools: toOpenAiTools(offered, { omitFields: opts.omitFields }),
      tool_choice: offered.length ? 'auto' : 'none',
      ...(opts.temperature !== undefined ? { temperature: opts.temperature } : {}),
    },
    { signal: opts.signal, ...(opts.timeoutMs !== undefined ? { timeout: opts.timeoutMs } : {}) },
  );
  const message = completion.choices[0]?.message;
  if (!message) throw new Error('the model returned no choices');
  const calls = message.tool_calls ?? [];
  const content = typeof message.content === 'string' && message.content.trim() ? message.content.trim() : null;
  const first = calls[0];
  if (!first) return { kind: 'none', content };
  return { kind: 'call', call: parseToolCall(first, offered, { forbiddenFields: opts.omitFields }), extraCalls: calls.length - 1, content };
}
