import type OpenAI from 'openai';

/** Where an OpenAI-compatible endpoint is and how to call it. */
export interface LlmConfig {
  /** undefined = the OpenAI API. */
  baseURL?: string;
  apiKey: string;
  model: string;
  timeoutMs: number;
  /** Which environment variable the key came from (for messages; never the key itself). */
  keySource: string;
}

export interface LlmEnvNames {
  /** Checked in order; the first set one wins. */
  apiKey: readonly string[];
  baseUrl: readonly string[];
  model: readonly string[];
}

export const DEFAULT_LLM_MODEL = 'gpt-4o-mini';
export const DEFAULT_LLM_TIMEOUT_MS = 20_000;

function firstSet(env: NodeJS.ProcessEnv, names: readonly string[]): { name: string; value: string } | undefined {
  for (const name of names) {
    const value = env[name]?.trim();
    if (value) return { name, value };
  }
  return undefined;
}

/** The LLM settings from the environment, or undefined when no API key is configured. */
export function resolveLlmConfig(env: NodeJS.ProcessEnv, names: LlmEnvNames, opts: { timeoutMs?: number } = {}): LlmConfig | undefined {
  const key = firstSet(env, names.apiKey);
  if (!key) return undefined;
  return {
    baseURL: firstSet(env, names.baseUrl)?.value,
    apiKey: key.value,
    model: firstSet(env, names.model)?.value ?? DEFAULT_LLM_MODEL,
    timeoutMs: opts.timeoutMs ?? DEFAULT_LLM_TIMEOUT_MS,
    keySource: key.name,
  };
}

/**
 * An openai SDK client for the endpoint. No SDK retries: callers have their own fallback (rules)
 * and a chat user should not wait through several backoffs.
 */
export async function createLlmClient(cfg: LlmConfig): Promise<OpenAI> {
  // Loaded on first use: the SDK is a tenth of a second of start-up every server would pay otherwise.
  const { default: OpenAI } = await import('openai');
  return new OpenAI({ apiKey: cfg.apiKey, baseURL: cfg.baseURL ?? null, timeout: cfg.timeoutMs, maxRetries: 0 });
}
