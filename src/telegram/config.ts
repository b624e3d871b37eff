import { ConfigurationError } from '../core/errors.js';
import { resolveLlmConfig, type LlmConfig } from '../llm/client.js';
import { TIER_RANK, type Tier } from '../registry.js';
import type { App } from '../app.js';
import type { TelegramPolicySchema } from '../policy.js';
import type { z } from 'zod';

export type TelegramPolicy = z.infer<typeof TelegramPolicySchema>;

export const NL_MODES = ['rules', 'llm', 'hybrid'] as const;
export type NlMode = (typeof NL_MODES)[number];

/** Default-deny allowlists. Write implies read, admin implies write. */
export interface AccessLists {
  read: ReadonlySet<number>;
  write: ReadonlySet<number>;
  admin: ReadonlySet<number>;
  /** --allow-any-chat: every chat gets read access (write and admin still need their lists). */
  allowAnyChat: boolean;
}

export interface TelegramBotConfig {
  token: string;
  /** Bot API server root (AGENTPR_TELEGRAM_API_ROOT); undefined = https://api.telegram.org. */
  apiRoot?: string;
  access: AccessLists;
  nlMode: NlMode;
  /** Present when nlMode is llm or hybrid. */
  llm?: LlmConfig;
}

/** What the command line gave (src/commands/run-telegram-bot.ts); everything optional. */
export interface TelegramFlags {
  allowChatIds?: readonly string[];
  allowWriteChatIds?: readonly string[];
  allowAdminChatIds?: readonly string[];
  allowAnyChat?: boolean;
  nlMode?: string;
  apiRoot?: string;
  llmTimeoutSec?: number;
}

export const TELEGRAM_ENV = {
  token: 'AGENTPR_TELEGRAM_BOT_TOKEN',
  apiRoot: 'AGENTPR_TELEGRAM_API_ROOT',
  allowRead: 'AGENTPR_TELEGRAM_ALLOW_CHAT_IDS',
  allowWrite: 'AGENTPR_TELEGRAM_ALLOW_WRITE_CHAT_IDS',
  allowAdmin: 'AGENTPR_TELEGRAM_ALLOW_ADMIN_CHAT_IDS',
  nlMode: 'AGENTPR_TELEGRAM_NL_MODE',
  llmTimeout: 'AGENTPR_TELEGRAM_LLM_TIMEOUT_SEC',
} as const;

/** Telegram's LLM settings fall back to the manager's (one key can serve both). */
export const TELEGRAM_LLM_ENV = {
  apiKey: ['AGENTPR_TELEGRAM_LLM_API_KEY', 'AGENTPR_MANAGER_API_KEY'],
  baseUrl: ['AGENTPR_TELEGRAM_LLM_BASE_URL', 'AGENTPR_MANAGER_BASE_URL'],
  model: ['AGENTPR_TELEGRAM_LLM_MODEL', 'AGENTPR_MANAGER_MODEL'],
} as const;

function parseChatIds(values: readonly string[], source: string): number[] {
  const out: number[] = [];
  for (const value of values) {
    for (const part of value.split(',')) {
      const id = part.trim();
      if (!id) continue;
      if (!/^-?\d{1,16}$/.test(id)) {
        throw new ConfigurationError(`${source}: '${id}' is not a Telegram chat id (an integer, negative for groups, e.g. 123456789 or -1001234567890)`);
      }
      out.push(Number(id));
    }
  }
  return out;
}

/** Resolves and checks the bot's settings; every refusal names what to set. */
export function resolveTelegramConfig(flags: TelegramFlags, env: NodeJS.ProcessEnv = process.env): TelegramBotConfig {
  const token = env[TELEGRAM_ENV.token]?.trim();
  if (!token) {
    throw new ConfigurationError(`${TELEGRAM_ENV.token} is not set; create a bot with @BotFather and export its token in ${TELEGRAM_ENV.token}`);
  }
  const admin = new Set([
    ...parseChatIds(flags.allowAdminChatIds ?? [], '--allow-admin-chat-id'),
    ...parseChatIds(env[TELEGRAM_ENV.allowAdmin] ? [env[TELEGRAM_ENV.allowAdmin]!] : [], TELEGRAM_ENV.allowAdmin),
  ]);
  const write = new Set([
    ...parseChatIds(flags.allowWriteChatIds ?? [], '--allow-write-chat-id'),
    ...parseChatIds(env[TELEGRAM_ENV.allowWrite] ? [env[TELEGRAM_ENV.allowWrite]!] : [], TELEGRAM_ENV.allowWrite),
    ...admin,
  ]);
  const read = new Set([
    ...parseChatIds(flags.allowChatIds ?? [], '--allow-chat-id'),
    ...parseChatIds(env[TELEGRAM_ENV.allowRead] ? [env[TELEGRAM_ENV.allowRead]!] : [], TELEGRAM_ENV.allowRead),
    ...write,
  ]);
  const allowAnyChat = Boolean(flags.allowAnyChat);
  if (read.size === 0 && !allowAnyChat) {
    throw new ConfigurationError(
      `refusing to start: no chat is allowed (default-deny). Give --allow-chat-id <id> (repeatable) or ${TELEGRAM_ENV.allowRead}=<id,id>, ` +
        `plus --allow-write-chat-id / --allow-admin-chat-id for write and admin chats; or --allow-any-chat to let every chat use read commands`,
    );
  }

  const envTimeout = env[TELEGRAM_ENV.llmTimeout]?.trim();
  const timeoutSec = flags.llmTimeoutSec ?? (envTimeout ? Number(envTimeout) : undefined);
  const timeoutMs = timeoutSec !== undefined ? Math.round(timeoutSec * 1000) : undefined;
  if (timeoutMs !== undefined && (!Number.isFinite(timeoutMs) || timeoutMs < 1000 || timeoutMs > 300_000)) {
    const source = flags.llmTimeoutSec !== undefined ? '--llm-timeout-sec' : TELEGRAM_ENV.llmTimeout;
    throw new ConfigurationError(`${source} must be between 1 and 300 seconds (got ${flags.llmTimeoutSec ?? envTimeout})`);
  }
  const llm = resolveLlmConfig(env, TELEGRAM_LLM_ENV, { timeoutMs });
  const requested = flags.nlMode ?? env[TELEGRAM_ENV.nlMode]?.trim();
  if (requested !== undefined && requested !== '' && !(NL_MODES as readonly string[]).includes(requested)) {
    const source = flags.nlMode !== undefined ? '--nl-mode' : TELEGRAM_ENV.nlMode;
    throw new ConfigurationError(`${source}: '${requested}' is not a natural-language mode; use one of ${NL_MODES.join(', ')}`);
  }
  const nlMode: NlMode = requested ? (requested as NlMode) : llm ? 'hybrid' : 'rules';
  if (nlMode !== 'rules' && !llm) {
    throw new ConfigurationError(
      `natural-language mode '${nlMode}' needs an OpenAI-compatible endpoint: set ${TELEGRAM_LLM_ENV.apiKey.join(' or ')} ` +
        `(and ${TELEGRAM_LLM_ENV.baseUrl.join(' or ')} for a non-OpenAI server), or use --nl-mode rules`,
    );
  }
  const apiRoot = (flags.apiRoot ?? env[TELEGRAM_ENV.apiRoot])?.trim().replace(/\/+$/, '') || undefined;
  if (apiRoot !== undefined && !/^https?:\/\/[^\s/]+/.test(apiRoot)) {
    throw new ConfigurationError(`Telegram API root '${apiRoot}' is not an http(s) URL (e.g. http://127.0.0.1:8081 for a self-hosted Bot API server)`);
  }
  return { token, apiRoot, access: { read, write, admin, allowAnyChat }, nlMode, llm: nlMode === 'rules' ? undefined : llm };
}

/** The highest tier a chat has, or null when it is on no list (default-deny). */
export function chatTier(access: AccessLists, chatId: number): Tier | null {
  if (access.admin.has(chatId)) return 'admin';
  if (access.write.has(chatId)) return 'write';
  if (access.read.has(chatId) || access.allowAnyChat) return 'read';
  return null;
}

/**
 * A group's tier for one sender: write and admin need the sender's own id on that list too
 * (anyone can join a group); everyone in an allowed group keeps read.
 */
export function groupUserTier(access: AccessLists, chatLevel: Tier, userId: number | null): Tier {
  if (chatLevel === 'read') return 'read';
  const user: Tier = userId === null ? 'read' : access.admin.has(userId) ? 'admin' : access.write.has(userId) ? 'write' : 'read';
  return minTier(chatLevel, user);
}

export function minTier(a: Tier, b: Tier): Tier {
  return TIER_RANK[a] <= TIER_RANK[b] ? a : b;
}

/** The bot's policy: the App's effective policy (built-ins + policies/manager_policy.json). */
export function telegramPolicyOf(app: App): TelegramPolicy {
  return app.policy.telegram_bot;
}
