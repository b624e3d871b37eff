import type OpenAI from 'openai';
import { chooseTool, type ParsedToolCall } from '../llm/tools.js';
import { RUN_STATES } from '../core/states.js';
import type { AnyTool } from '../registry.js';

/** Fields a model may never set from chat: the doctor stays on, idempotency keys are the bot's. */
export const MODEL_FORBIDDEN_FIELDS = ['skip_doctor', 'idempotency_key'] as const;

/**
 * Tools the model may choose from: the chat's visible tools, never admin tools and never an
 * approval (approval is never done from natural language).
 */
export function nlTools(visible: readonly AnyTool[]): AnyTool[] {
  return visible.filter((t) => t.tier !== 'admin' && !/approve/i.test(t.name));
}

const SYSTEM_PROMPT = [
  'You route one chat message from an operator of agentpr (an orchestrator of AI coding runs on GitHub repositories) to at most one tool call.',
  'Call exactly one tool when the message clearly asks for something a tool does; otherwise answer in one short sentence without a tool.',
  'Never invent run ids: use only ids that appear in the message (run_ followed by 12 hex digits).',
  `Run states: ${RUN_STATES.join(', ')}.`,
  'Answer in the language of the message.',
].join('\n');

export type LlmRoute =
  | { kind: 'call'; call: Extract<ParsedToolCall, { ok: true }> }
  | { kind: 'refused'; error: string }
  | { kind: 'none'; content: string | null };

export interface LlmRouterOptions {
  client: OpenAI;
  model: string;
  timeoutMs: number;
}

/** Asks the model; API errors and timeouts are thrown (the caller falls back or reports). */
export async function routeWithLlm(text: string, tools: readonly AnyTool[], opts: LlmRouterOptions, signal?: AbortSignal): Promise<LlmRoute> {
  const choice = await chooseTool({
    client: opts.client,
    model: opts.model,
    messages: [
      { role: 'system', content: SYSTEM_PROMPT },
      { role: 'user', content: text },
    ],
    tools,
    omitFields: MODEL_FORBIDDEN_FIELDS,
    timeoutMs: opts.timeoutMs,
    temperature: 0,
    signal,
  });
  if (choice.kind === 'none') return { kind: 'none', content: choice.content };
  if (!choice.call.ok) return { kind: 'refused', error: choice.call.error };
  return { kind: 'call', call: choice.call };
}
