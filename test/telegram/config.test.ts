import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, test, vi } from 'vitest';
import { createApp } from '../../src/app.js';
import { runTelegramBot } from '../../src/commands/run-telegram-bot.js';
import { COMMANDS } from '../../src/commands/index.js';
import { chatTier, resolveTelegramConfig } from '../../src/telegram/config.js';
import { SlidingWindowLimiter } from '../../src/telegram/rate-limit.js';
import { tempDir } from '../helpers/app.js';
import { startFakeTelegram } from '../helpers/fake-telegram.js';

const TOKEN = { AGENTPR_TELEGRAM_BOT_TOKEN: '123:abc-token-value' };

describe('resolveTelegramConfig', () => {
  test('default-deny: no allowlist refuses to start unless --allow-any-chat', () => {
    expect(() => resolveTelegramConfig({}, TOKEN)).toThrow(/refusing to start: no chat is allowed \(default-deny\)\. Give --allow-chat-id <id>/);
    const any = resolveTelegramConfig({ allowAnyChat: true }, TOKEN);
    expect(chatTier(any.access, 42)).toBe('read');
  });

  test('write implies read, admin implies write; flags and env lists are merged', () => {
    const cfg = resolveTelegramConfig(
      { allowChatIds: ['1', '2,3'], allowAdminChatIds: ['9'] },
      { ...TOKEN, AGENTPR_TELEGRAM_ALLOW_WRITE_CHAT_IDS: '5, -1001234567890', AGENTPR_TELEGRAM_ALLOW_CHAT_IDS: '4' },
    );
    expect([1, 2, 3, 4].map((id) => chatTier(cfg.access, id))).toEqual(['read', 'read', 'read', 'read']);
    expect(chatTier(cfg.access, 5)).toBe('write');
    expect(chatTier(cfg.access, -1001234567890)).toBe('write');
    expect(chatTier(cfg.access, 9)).toBe('admin');
    expect(chatTier(cfg.access, 10)).toBeNull();
    expect(cfg.access.read.has(9) && cfg.access.write.has(9)).toBe(true);
  });

  test('bad values are named with their source', () => {
    expect(() => resolveTelegramConfig({ allowChatIds: ['@me'] }, TOKEN)).toThrow("--allow-chat-id: '@me' is not a Telegram chat id");
    expect(() => resolveTelegramConfig({ allowChatIds: ['1'] }, { ...TOKEN, AGENTPR_TELEGRAM_ALLOW_ADMIN_CHAT_IDS: 'x' })).toThrow(
      "AGENTPR_TELEGRAM_ALLOW_ADMIN_CHAT_IDS: 'x' is not a Telegram chat id",
    );
    expect(() => resolveTelegramConfig({ allowChatIds: ['1'] }, {})).toThrow('AGENTPR_TELEGRAM_BOT_TOKEN is not set');
    expect(() => resolveTelegramConfig({ allowChatIds: ['1'], nlMode: 'smart' }, TOKEN)).toThrow("--nl-mode: 'smart' is not a natural-language mode; use one of rules, llm, hybrid");
    expect(() => resolveTelegramConfig({ allowChatIds: ['1'] }, { ...TOKEN, AGENTPR_TELEGRAM_NL_MODE: 'llm' })).toThrow(
      "natural-language mode 'llm' needs an OpenAI-compatible endpoint: set AGENTPR_TELEGRAM_LLM_API_KEY or AGENTPR_MANAGER_API_KEY",
    );
    expect(() => resolveTelegramConfig({ allowChatIds: ['1'], apiRoot: 'ftp://x' }, TOKEN)).toThrow("Telegram API root 'ftp://x' is not an http(s) URL");
  });

  test('NL mode defaults to hybrid with an LLM key (the manager key is reused), else rules', () => {
    expect(resolveTelegramConfig({ allowChatIds: ['1'] }, TOKEN).nlMode).toBe('rules');
    const hybrid = resolveTelegramConfig(
      { allowChatIds: ['1'] },
      { ...TOKEN, AGENTPR_MANAGER_API_KEY: 'sk-manager', AGENTPR_MANAGER_BASE_URL: 'http://127.0.0.1:9/v1', AGENTPR_TELEGRAM_LLM_MODEL: 'tg-model' },
    );
    expect(hybrid.nlMode).toBe('hybrid');
    expect(hybrid.llm).toMatchObject({ apiKey: 'sk-manager', baseURL: 'http://127.0.0.1:9/v1', model: 'tg-model', keySource: 'AGENTPR_MANAGER_API_KEY' });
    const own = resolveTelegramConfig({ allowChatIds: ['1'], nlMode: 'rules' }, { ...TOKEN, AGENTPR_TELEGRAM_LLM_API_KEY: 'sk-tg', AGENTPR_MANAGER_API_KEY: 'sk-m' });
    expect(own.nlMode).toBe('rules');
    expect(own.llm).toBeUndefined();
  });
});

describe('SlidingWindowLimiter', () => {
  test('global first, then per chat; the window slides', () => {
    let now = 1_000_000;
    const lim = new SlidingWindowLimiter({ windowMs: 60_000, global: 3, perChat: 2 }, () => now);
    expect(lim.admit(1)).toEqual({ ok: true });
    expect(lim.admit(1)).toEqual({ ok: true });
    expect(lim.admit(1)).toEqual({ ok: false, scope: 'chat', retryAfterSec: 60 });
    expect(lim.admit(2)).toEqual({ ok: true });
    expect(lim.admit(3)).toEqual({ ok: false, scope: 'global', retryAfterSec: 60 });
    now += 30_000;
    expect(lim.admit(3)).toMatchObject({ ok: false, scope: 'global', retryAfterSec: 30 });
    now += 30_001;
    expect(lim.admit(1)).toEqual({ ok: true });
    expect(lim.admit(3)).toEqual({ ok: true });
  });
});

describe('agentpr run-telegram-bot', () => {
  const saved = { ...process.env };
  let stderr: string[] = [];
  beforeEach(() => {
    stderr = [];
    vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      stderr.push(String(chunk));
      return true;
    });
  });
  afterEach(() => {
    vi.restoreAllMocks();
    process.env = { ...saved };
  });

  test('is registered and refuses to start without an allowlist (exit 2, nothing opened)', async () => {
    expect(COMMANDS).toContain(runTelegramBot);
    process.env.AGENTPR_TELEGRAM_BOT_TOKEN = '123:abc-token-value';
    delete process.env.AGENTPR_TELEGRAM_ALLOW_CHAT_IDS;
    delete process.env.AGENTPR_TELEGRAM_ALLOW_WRITE_CHAT_IDS;
    delete process.env.AGENTPR_TELEGRAM_ALLOW_ADMIN_CHAT_IDS;
    let opened = false;
    const code = await runTelegramBot.run([], {
      globals: {},
      openApp: () => {
        opened = true;
        throw new Error('must not open');
      },
    });
    expect(code).toBe(2);
    expect(opened).toBe(false);
    expect(stderr.join('')).toContain('agentpr run-telegram-bot: refusing to start: no chat is allowed (default-deny)');
    expect(await runTelegramBot.run(['--allow-chat-id'], { globals: {}, openApp: () => { throw new Error('no'); } })).toBe(2);
    expect(await runTelegramBot.run(['--bogus'], { globals: {}, openApp: () => { throw new Error('no'); } })).toBe(2);
    expect(stderr.join('')).toContain('agentpr run-telegram-bot: --allow-chat-id needs a value');
    expect(stderr.join('')).toContain('agentpr run-telegram-bot: unknown option --bogus');
  });

  test('--once polls the Bot API at AGENTPR_TELEGRAM_API_ROOT, answers, audits and exits 0', async () => {
    const tg = await startFakeTelegram();
    const home = tempDir('agentpr-tg-cli-');
    try {
      Object.assign(process.env, { AGENTPR_TELEGRAM_BOT_TOKEN: tg.token, AGENTPR_TELEGRAM_API_ROOT: tg.apiRoot, AGENTPR_TELEGRAM_NL_MODE: 'rules' });
      tg.pushText({ chatId: -1001234567890, userId: 77, text: '/help' });
      tg.pushText({ chatId: 555, text: '/list' });
      const app = createApp({ home, logger: pino({ level: 'silent' }), env: { ...process.env, AGENTPR_POLICY_FILE: '' }, doctorGate: false });
      const code = await runTelegramBot.run(['--allow-chat-id=-1001234567890', '--once'], { globals: {}, openApp: () => app });
      await app.close();
      expect(code).toBe(0);
      expect(stderr.join('')).toContain('agentpr: Telegram bot @agentpr_test_bot polling (nl mode rules; chats: 1 read, 0 write, 0 admin;');
      expect(tg.messagesTo(-1001234567890)[0]).toContain('This chat has read access.');
      expect(tg.messagesTo(555)[0]).toContain('is not allowed to use this bot');
      const audit = readFileSync(join(home, 'reports', 'telegram_audit.jsonl'), 'utf8').trim().split('\n');
      expect(audit.map((l) => (JSON.parse(l) as { outcome: string }).outcome)).toEqual(['ok', 'unauthorized']);
      expect(tg.confirmedOffset).toBeGreaterThan(0);
    } finally {
      await tg.close();
      rmSync(home, { recursive: true, force: true });
    }
  });
});
