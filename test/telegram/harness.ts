import { existsSync, readFileSync, rmSync } from 'node:fs';
import pino from 'pino';
import { z } from 'zod';
import { createApp, type App } from '../../src/app.js';
import { defineTool, type AnyTool } from '../../src/registry.js';
import { TelegramBot } from '../../src/telegram/bot.js';
import { resolveTelegramConfig, type NlMode, type TelegramPolicy } from '../../src/telegram/config.js';
import type { AuditEntry } from '../../src/telegram/audit.js';
import type { RunView } from '../../src/core/models.js';
import { TOOLS } from '../../tools/index.js';
import { startFakeTelegram, type FakeTelegram } from '../helpers/fake-telegram.js';
import type { FakeOpenAI } from '../helpers/fake-openai.js';
import { tempDir } from '../helpers/app.js';

export const READ_CHAT = 1001;
export const WRITE_CHAT = 2002;
export const ADMIN_CHAT = 3003;
export const STRANGER = 4004;

/** Calls received by the stand-in approval tool (the real one lands with the GitHub issue). */
export interface ApproveCall {
  args: Record<string, unknown>;
  actor?: string;
  entry: string;
}

/**
 * An admin-tier `approve-open-pr` that records its calls, replacing the real tool when present so
 * the bot's mapping (/approve_pr → run_id, confirm_token, confirm: true) is observable.
 */
export function standInApprove(calls: ApproveCall[]): AnyTool {
  return defineTool({
    name: 'approve-open-pr',
    title: 'Approve open PR (test stand-in)',
    description: 'Approve a pending open-PR request with its confirm token.',
    tier: 'admin',
    annotations: { destructiveHint: true },
    input: z.object({ run_id: z.string(), confirm_token: z.string(), confirm: z.literal(true) }),
    output: z.object({ approved: z.boolean() }),
    handler: (args, ctx) => {
      calls.push({ args: { ...args }, actor: ctx.actor, entry: ctx.entry });
      return { data: { approved: true }, text: `approved ${args.run_id}` };
    },
  });
}

export interface HarnessOptions {
  nlMode?: NlMode;
  llm?: FakeOpenAI;
  llmTimeoutSec?: number;
  /** The bot's clock (rate limits, confirmation windows). */
  now?: () => number;
  policy?: Partial<TelegramPolicy>;
  access?: { read?: number[]; write?: number[]; admin?: number[]; any?: boolean };
  /** Replace tools by name (stand-ins) or add new ones. */
  extraTools?: AnyTool[];
  /** Keep the real approve-open-pr instead of the recording stand-in. */
  realApprove?: boolean;
  /** Leave these tools out (e.g. to see how a missing tool is answered). */
  omitTools?: string[];
  /** Do not start the poll loop (tests that drive start/stop themselves). */
  manual?: boolean;
  /** How the bot waits out a 429's retry_after (default: really sleeps). */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
}

export interface Harness {
  app: App;
  tg: FakeTelegram;
  bot: TelegramBot;
  home: string;
  approveCalls: ApproveCall[];
  /** Sends a text message from a chat (user id = chat id) and waits until the bot handled it. */
  say(chatId: number, text: string): Promise<{ update_id: number; replies: string[] }>;
  audit(): AuditEntry[];
  run(owner?: string, repo?: string): RunView;
  newBot(): TelegramBot;
  close(): Promise<void>;
}

export async function startHarness(opts: HarnessOptions = {}): Promise<Harness> {
  const home = tempDir('agentpr-tg-');
  const app = createApp({
    home,
    logger: pino({ level: process.env.AGENTPR_TEST_LOGS ? 'debug' : 'silent' }),
    env: { ...process.env, AGENTPR_POLICY_FILE: '' },
    doctorGate: false,
    reconcile: false,
  });
  const tg = await startFakeTelegram();
  const access = opts.access ?? { read: [READ_CHAT], write: [WRITE_CHAT], admin: [ADMIN_CHAT] };
  const env: NodeJS.ProcessEnv = { AGENTPR_TELEGRAM_BOT_TOKEN: tg.token };
  if (opts.llm) {
    env.AGENTPR_TELEGRAM_LLM_API_KEY = opts.llm.apiKey;
    env.AGENTPR_TELEGRAM_LLM_BASE_URL = opts.llm.baseURL;
    env.AGENTPR_TELEGRAM_LLM_MODEL = 'fake-model-1';
  }
  const config = resolveTelegramConfig(
    {
      allowChatIds: (access.read ?? []).map(String),
      allowWriteChatIds: (access.write ?? []).map(String),
      allowAdminChatIds: (access.admin ?? []).map(String),
      allowAnyChat: access.any,
      nlMode: opts.nlMode ?? 'rules',
      apiRoot: tg.apiRoot,
      llmTimeoutSec: opts.llmTimeoutSec,
    },
    env,
  );
  const approveCalls: ApproveCall[] = [];
  const replaced = [...(opts.realApprove ? [] : [standInApprove(approveCalls)]), ...(opts.extraTools ?? [])];
  const tools = [...TOOLS.filter((t) => !replaced.some((r) => r.name === t.name)), ...replaced].filter((t) => !opts.omitTools?.includes(t.name));
  const policy: TelegramPolicy = { ...app.policy.telegram_bot, poll_timeout_sec: 5, idle_sleep_sec: 0, ...opts.policy };
  const newBot = () => new TelegramBot({ app, config, tools, policy, ...(opts.now ? { now: opts.now } : {}), ...(opts.sleep ? { sleep: opts.sleep } : {}) });
  let bot = newBot();
  if (!opts.manual) void bot.start();
  // The bot handles chats side by side and polls again while it works: "settled" also waits
  // until every fetched update has been handled.
  const polled = tg.settled.bind(tg);
  tg.settled = async () => {
    for (;;) {
      await polled();
      if (bot.busy === 0) return;
      await bot.whenIdle();
    }
  };

  const harness: Harness = {
    app,
    tg,
    get bot() {
      return bot;
    },
    set bot(b: TelegramBot) {
      bot = b;
    },
    home,
    approveCalls,
    async say(chatId, text) {
      const before = tg.messagesTo(chatId).length;
      const update = tg.pushText({ chatId, text });
      await tg.settled();
      return { update_id: update.update_id, replies: tg.messagesTo(chatId).slice(before) };
    },
    audit() {
      const path = bot.auditPath;
      if (!existsSync(path)) return [];
      return readFileSync(path, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as AuditEntry);
    },
    run(owner = 'octo', repo = 'demo') {
      return app.service.createRun({ owner, repo });
    },
    newBot,
    async close() {
      await bot.stop();
      await tg.close();
      await app.close();
      rmSync(home, { recursive: true, force: true });
    },
  };
  return harness;
}

/** Moves a fresh run to PUSHED through real events. */
export function pushRun(app: App, runId: string): void {
  app.service.applyEvent({ run_id: runId, event_type: 'command.start.discovery' });
  app.service.applyEvent({ run_id: runId, event_type: 'worker.discovery.completed', payload: { contract_path: '/tmp/contract.md' } });
  app.service.applyEvent({ run_id: runId, event_type: 'command.start.implementation' });
  app.service.applyEvent({ run_id: runId, event_type: 'command.local.validation.passed' });
  app.service.applyEvent({ run_id: runId, event_type: 'worker.push.completed', payload: { branch: 'feature/forge-1' } });
}

/** Moves a fresh run to FAILED_RETRYABLE. */
export function failRun(app: App, runId: string, message = 'connection reset by peer'): void {
  app.service.applyEvent({ run_id: runId, event_type: 'command.start.discovery' });
  app.service.applyEvent({
    run_id: runId,
    event_type: 'worker.step.failed',
    payload: { step: 'agent', reason_code: 'runtime_transient_failure', error_message: message },
  });
}
