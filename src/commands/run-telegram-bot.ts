import { reconcileAtStart } from '../worker/reconcile.js';
import { ConfigurationError, errorMessage } from '../core/errors.js';
import { TelegramBot } from '../telegram/bot.js';
import { NL_MODES, resolveTelegramConfig, type TelegramFlags } from '../telegram/config.js';
import type { CliCommand } from './types.js';

const USAGE = `usage: agentpr run-telegram-bot [--allow-chat-id ID]... [--allow-write-chat-id ID]... [--allow-admin-chat-id ID]...
                                [--allow-any-chat] [--nl-mode ${NL_MODES.join('|')}] [--api-root URL] [--llm-timeout-sec N] [--once]

Long-polls Telegram and answers commands from allowlisted chats through the same tools as MCP and
the CLI. Default-deny: a chat on no list gets one refusal and nothing else; with no list at all the
bot refuses to start unless --allow-any-chat (every chat may then use read commands).

  --allow-chat-id ID        read tier (/list /show /status /pending_pr); repeatable or comma-separated
  --allow-write-chat-id ID  write tier (/pause /resume /retry /tick, plain text); implies read
  --allow-admin-chat-id ID  admin tier (/approve_pr); implies write
                            (in a group, write and admin also need the sender's user id on that list)
  --allow-any-chat          let any chat use read commands (write and admin still need their lists)
  --nl-mode MODE            plain-text routing: rules | llm | hybrid (default: hybrid when an LLM key is set, else rules)
  --api-root URL            Bot API server (default AGENTPR_TELEGRAM_API_ROOT or https://api.telegram.org)
  --llm-timeout-sec N       per-request timeout for the model (default 20)
  --once                    poll once without waiting, handle what is there, exit
Group chat ids are negative: write them with '=' (--allow-chat-id=-1001234567890).

Environment:
  AGENTPR_TELEGRAM_BOT_TOKEN             the bot token from @BotFather (required)
  AGENTPR_TELEGRAM_ALLOW_CHAT_IDS, AGENTPR_TELEGRAM_ALLOW_WRITE_CHAT_IDS, AGENTPR_TELEGRAM_ALLOW_ADMIN_CHAT_IDS
                                         comma-separated chat ids, added to the flags
  AGENTPR_TELEGRAM_API_ROOT              self-hosted Bot API server
  AGENTPR_TELEGRAM_NL_MODE               rules | llm | hybrid
  AGENTPR_TELEGRAM_LLM_TIMEOUT_SEC       model timeout (--llm-timeout-sec wins)
  AGENTPR_TELEGRAM_LLM_API_KEY / AGENTPR_MANAGER_API_KEY, AGENTPR_TELEGRAM_LLM_BASE_URL / AGENTPR_MANAGER_BASE_URL,
  AGENTPR_TELEGRAM_LLM_MODEL / AGENTPR_MANAGER_MODEL     the OpenAI-compatible model for llm/hybrid
Policy: telegram_bot.* (poll timeout, list page size, rate limits, audit_log_file under the reports dir).
See docs/telegram.md.`;

class UsageProblem extends Error {}

function parseFlags(argv: string[]): TelegramFlags & { once: boolean } {
  const read: string[] = [];
  const write: string[] = [];
  const admin: string[] = [];
  const flags: TelegramFlags & { once: boolean } = { allowChatIds: read, allowWriteChatIds: write, allowAdminChatIds: admin, once: false };
  const lists: Record<string, string[]> = { '--allow-chat-id': read, '--allow-write-chat-id': write, '--allow-admin-chat-id': admin };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const eq = a.startsWith('--') ? a.indexOf('=') : -1;
    const [flag, inline] = eq > 0 ? [a.slice(0, eq), a.slice(eq + 1)] : [a, undefined];
    const value = (): string => {
      const v = inline ?? argv[++i];
      if (v === undefined || (inline === undefined && v.startsWith('--'))) throw new UsageProblem(`${flag} needs a value`);
      return v;
    };
    if (Object.hasOwn(lists, flag)) lists[flag]!.push(value());
    else if (flag === '--allow-any-chat') flags.allowAnyChat = true;
    else if (flag === '--nl-mode') flags.nlMode = value();
    else if (flag === '--api-root') flags.apiRoot = value();
    else if (flag === '--llm-timeout-sec') {
      const raw = value();
      const n = Number(raw);
      if (!Number.isFinite(n)) throw new UsageProblem(`--llm-timeout-sec expects a number of seconds, got '${raw}'`);
      flags.llmTimeoutSec = n;
    } else if (flag === '--once') flags.once = true;
    else throw new UsageProblem(`unknown option ${a}`);
  }
  return flags;
}

export const runTelegramBot: CliCommand = {
  name: 'run-telegram-bot',
  summary: 'Telegram control plane: allowlisted chats run read/write/admin commands and plain text over the same tools',
  usage: USAGE,
  async run(argv, { openApp }) {
    let flags: ReturnType<typeof parseFlags>;
    let config: ReturnType<typeof resolveTelegramConfig>;
    try {
      flags = parseFlags(argv);
      config = resolveTelegramConfig(flags);
    } catch (err) {
      process.stderr.write(`agentpr run-telegram-bot: ${errorMessage(err)}\n${err instanceof UsageProblem ? `${USAGE}\n` : ''}`);
      return 2;
    }
    const app = openApp();
    reconcileAtStart(app);
    const bot = new TelegramBot({ app, config });
    try {
      const me = await bot.init();
      const access = config.access;
      process.stderr.write(
        `agentpr: Telegram bot @${me.username} polling (nl mode ${config.nlMode}; chats: ${access.read.size} read, ${access.write.size} write, ${access.admin.size} admin` +
          `${access.allowAnyChat ? ', any chat may read' : ''}; audit: ${bot.auditPath})\n`,
      );
      const stop = () => void bot.stop();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      try {
        await bot.start({ once: flags.once });
      } finally {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
      }
      return 0;
    } catch (err) {
      process.stderr.write(`agentpr run-telegram-bot: ${errorMessage(err)}\n`);
      return err instanceof ConfigurationError ? 2 : 1; // a 409 (another instance) is a ConfigurationError
    }
  },
};
