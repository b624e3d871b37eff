import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { Api, GrammyError, HttpError, type Transformer } from 'grammy';
import type { Update } from 'grammy/types';
import { autoRetry } from '@grammyjs/auto-retry';
import type OpenAI from 'openai';
import type { App } from '../app.js';
import { ConfigurationError, errorMessage } from '../core/errors.js';
import { createLlmClient } from '../llm/client.js';
import { Registry, TIER_RANK, type AnyTool, type CallOutcome, type Tier } from '../registry.js';
import { TOOLS } from '../../tools/index.js';
import { AuditLog, resolveAuditPath, type AuditEntry } from './audit.js';
import { RUN_COMMANDS, parseCommand, planCommand, type ListPage, type Plan, type View } from './commands.js';
import { defaultTarget } from '../manager/default-target.js';
import { chatTier, groupUserTier, minTier, telegramPolicyOf, type TelegramBotConfig, type TelegramPolicy } from './config.js';
import { MAX_REPLY, clip, formatFailure, formatList, formatStatus, helpText, splitReply } from './format.js';
import { ChatQueue } from './chat-queue.js';
import { nlTools, routeWithLlm } from './llm-router.js';
import { matchRules } from './rules.js';
import { PendingWrites, TEXT_TOOLS, describeWrite, isConfirmation, rulesRetryTarget, textArgs, CONFIRM_WINDOW_MS } from './text-intent.js';
import { SlidingWindowLimiter } from './rate-limit.js';
import { pidAlive } from '../store/holder.js';

export interface TelegramBotOptions {
  app: App;
  config: TelegramBotConfig;
  /** Default: the one list, TOOLS. */
  tools?: readonly AnyTool[];
  /** Default: the App's effective policy (`telegram_bot`). */
  policy?: TelegramPolicy;
  /** Clock for the rate limiter (ms). */
  now?: () => number;
  /** Default: an openai client from config.llm. */
  llmClient?: OpenAI;
  /** Waits out a 429's retry_after (tests pass one that records the delay instead of sleeping). */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  /** Chats handled at once (each chat's own updates stay in order). Default 8. */
  maxConcurrentChats?: number;
}

/** A conflict on getUpdates: another process polls this bot, or a webhook is set. */
export class PollConflictError extends ConfigurationError {}

/** Per-update facts the steps below share. */
interface Turn {
  update_id: number;
  chatId: number;
  userId: number | null;
  tier: Tier;
  /** The highest tier this turn may call (NL is capped at write). */
  maxTier: Tier;
  entry: AuditEntry;
  fromModel: boolean;
  /** The update was claimed by a process that stopped before finishing it. */
  reclaimed: boolean;
  /** Shown before the reply when plain text was mapped by the rules. */
  prefix?: string;
  /** Plain text (not a command): only TEXT_TOOLS are reachable. */
  textRouted?: boolean;
}

type GrammySignal = Parameters<Api['getUpdates']>[1];

const NOT_UNDERSTOOD = 'I did not understand that. Try "list runs", "status run_0123456789ab", "暂停 run_0123456789ab", or /help.';

/**
 * The Telegram control plane. One long-poll loop through grammY's Api; each update is
 * claimed in the database (dedup by update_id), checked against the allowlists and the rate
 * limits, mapped to a registry tool (command, rules or LLM), executed through `Registry.call`
 * with the chat's tier as the ceiling, answered, and audited as one JSONL line.
 */
export class TelegramBot {
  readonly api: Api;
  readonly registry: Registry;
  readonly audit: AuditLog;
  readonly policy: TelegramPolicy;
  private readonly app: App;
  private readonly config: TelegramBotConfig;
  private readonly limiter: SlidingWindowLimiter;
  private readonly llm?: OpenAI | Promise<OpenAI>;
  private readonly claimer = `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
  /** Chats already told they are not allowed (they get one refusal, then silence). */
  private readonly refused = new Set<number>();
  private readonly log: App['logger'];
  /** Writes from plain text waiting for the same person's "yes". */
  private readonly pendingWrites = new PendingWrites();
  private readonly now: () => number;
  private me?: { id: number; username: string };
  private offset?: number;
  private stopping = false;
  private abort = new AbortController();
  private loop?: Promise<void>;
  private readonly queue: ChatQueue;
  private readonly sleep: (ms: number, signal: AbortSignal) => Promise<void>;
  /** Per chat: until when a rate-limit notice already covers it (one notice per window). */
  private readonly limitNoticeUntil = new Map<number, number>();
  /** Per chat: the last run a command named (what `/status` with no run id means). Per process. */
  private readonly lastRun = new Map<number, string>();

  constructor(opts: TelegramBotOptions) {
    this.app = opts.app;
    this.config = opts.config;
    this.registry = new Registry(opts.tools ?? TOOLS);
    this.policy = opts.policy ?? telegramPolicyOf(opts.app);
    this.log = opts.app.logger.child({ component: 'telegram' });
    this.now = opts.now ?? Date.now;
    this.limiter = new SlidingWindowLimiter(
      { windowMs: this.policy.rate_limit_window_sec * 1000, global: this.policy.rate_limit_global, perChat: this.policy.rate_limit_per_chat },
      opts.now,
    );
    this.audit = new AuditLog(resolveAuditPath(this.policy.audit_log_file, opts.app.config.reportsDir), [opts.config.token, opts.config.llm?.apiKey]);
    this.api = new Api(opts.config.token, opts.config.apiRoot ? { apiRoot: opts.config.apiRoot } : undefined);
    this.sleep = opts.sleep ?? ((ms, signal) => sleep(ms, undefined, { signal }));
    this.queue = new ChatQueue(opts.maxConcurrentChats ?? 8);
    // Outgoing calls retry 5xx via the plugin and wait out every 429's retry_after here, however
    // long (a reply after a minute beats no reply; its chat's queue waits, other chats do not).
    // getUpdates is left to the poll loop, which audits each failure and backs off itself.
    const retry = autoRetry({ maxRetryAttempts: 3, maxDelaySeconds: 0, rethrowHttpErrors: true });
    const transformer: Transformer = async (prev, method, payload, signal) => {
      if (method === 'getUpdates') return prev(method, payload, signal);
      for (;;) {
        const res = await retry(prev, method, payload, signal);
        const wait = res.ok ? undefined : res.parameters?.retry_after;
        if (res.ok || res.error_code !== 429 || typeof wait !== 'number' || this.stopping) return res;
        this.log.info({ method, retry_after: wait }, 'telegram rate limit; waiting before the retry');
        try {
          await this.sleep(wait * 1000, this.abort.signal);
        } catch {
          return res; // stopping
        }
      }
    };
    this.api.config.use(transformer);
    if (opts.config.nlMode !== 'rules') {
      if (opts.llmClient) this.llm = opts.llmClient;
      else if (opts.config.llm) {
        const client = createLlmClient(opts.config.llm);
        client.catch(() => undefined); // surfaced where it is awaited
        this.llm = client;
      }
    }
  }

  get auditPath(): string {
    return this.audit.path;
  }

  /** Checks the token with getMe; a refusal is a ConfigurationError that says what to fix. */
  async init(): Promise<{ id: number; username: string }> {
    if (this.me) return this.me;
    try {
      const me = await this.api.getMe();
      this.me = { id: me.id, username: me.username };
      this.log.info({ bot: me.username, nl_mode: this.config.nlMode, audit: this.audit.path }, 'telegram bot ready');
      return this.me;
    } catch (err) {
      if (err instanceof GrammyError && (err.error_code === 401 || err.error_code === 404)) {
        throw new ConfigurationError(`Telegram rejected the bot token (${err.error_code} ${err.description}); check AGENTPR_TELEGRAM_BOT_TOKEN`);
      }
      throw new ConfigurationError(
        `cannot reach the Telegram Bot API at ${this.config.apiRoot ?? 'https://api.telegram.org'} (${this.audit.scrub(errorMessage(err))}); check the network or AGENTPR_TELEGRAM_API_ROOT`,
      );
    }
  }

  /** Starts long polling; resolves when stopped. `once`: one non-blocking poll, then return. */
  start(opts: { once?: boolean } = {}): Promise<void> {
    if (!this.loop) {
      this.stopping = false;
      this.abort = new AbortController();
      this.loop = this.pollLoop(opts.once ?? false).finally(() => {
        this.loop = undefined;
      });
    }
    return this.loop;
  }

  /** Stops after the update in hand; confirms the offset of everything handled. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.abort.abort();
    await this.loop?.catch(() => undefined);
  }

  private async pollLoop(once: boolean): Promise<void> {
    await this.init();
    let failures = 0;
    while (!this.stopping) {
      let updates: Update[];
      try {
        updates = await this.api.getUpdates(
          { offset: this.offset, timeout: once ? 0 : this.policy.poll_timeout_sec, allowed_updates: ['message'] },
          // grammY types its signal with the abort-controller shim; a native one works the same.
          this.abort.signal as unknown as GrammySignal,
        );
        failures = 0;
      } catch (err) {
        if (this.stopping) break;
        failures += 1;
        const waitSec = this.pollBackoff(err, failures);
        this.auditPollError(err, waitSec);
        if (err instanceof GrammyError && err.error_code === 409) {
          this.stopping = true;
          await this.queue.idle();
          await this.confirmOffset();
          throw new PollConflictError(
            `Telegram answered getUpdates with 409 (${err.description}): another agentpr run-telegram-bot (or another program) is polling this bot, or a webhook is set. ` +
              `This instance stops so an update is never answered twice; stop the other one (or remove the webhook with deleteWebhook) and start again.`,
          );
        }
        if (err instanceof GrammyError && err.error_code === 401) {
          throw new ConfigurationError(`Telegram rejected the bot token while polling (401 ${err.description}); check AGENTPR_TELEGRAM_BOT_TOKEN`);
        }
        if (once) break;
        await sleep(waitSec * 1000, undefined, { signal: this.abort.signal }).catch(() => undefined);
        continue;
      }
      // Each chat's updates run in order; different chats run side by side, so a slow /tick or a
      // rate-limited reply in one chat does not hold up another. The next getUpdates confirms
      // what was fetched (an update whose process dies mid-way stays claimed in the ledger).
      for (const update of updates) {
        this.offset = update.update_id + 1;
        void this.queue.push(chatKey(update), () => this.handleUpdate(update));
      }
      if (once) break;
      await this.queue.belowLimit(200);
      if (!updates.length && this.policy.poll_timeout_sec === 0) {
        await sleep(this.policy.idle_sleep_sec * 1000, undefined, { signal: this.abort.signal }).catch(() => undefined);
      }
    }
    await this.queue.idle();
    await this.confirmOffset();
  }

  /** Resolves when no update is being handled (tests; shutdown). */
  whenIdle(): Promise<void> {
    return this.queue.idle();
  }

  /** Updates being handled or waiting for their chat. */
  get busy(): number {
    return this.queue.size;
  }

  /** Tells Telegram everything handled can be forgotten, so a restart does not refetch it. */
  private async confirmOffset(): Promise<void> {
    if (this.offset === undefined) return;
    try {
      await this.api.getUpdates({ offset: this.offset, timeout: 0, limit: 1, allowed_updates: ['message'] });
    } catch (err) {
      this.log.debug({ err: errorMessage(err) }, 'could not confirm the final offset; the next start dedupes');
    }
  }

  private pollBackoff(err: unknown, failures: number): number {
    if (err instanceof GrammyError && typeof err.parameters.retry_after === 'number') return err.parameters.retry_after;
    const base = this.policy.idle_sleep_sec > 0 ? this.policy.idle_sleep_sec : 0.05;
    return Math.min(60, base * 2 ** (failures - 1));
  }

  private auditPollError(err: unknown, waitSec: number): void {
    let error: string;
    if (err instanceof GrammyError) {
      error =
        err.error_code === 409
          ? `getUpdates 409 ${err.description}: another instance is polling this bot, or a webhook is set (remove it with deleteWebhook)`
          : `getUpdates ${err.error_code} ${err.description}`;
    } else if (err instanceof HttpError) {
      error = `getUpdates network failure: ${errorMessage(err.error)}`;
    } else {
      error = `getUpdates failed: ${errorMessage(err)}`;
    }
    this.log.warn({ error, retry_in_sec: waitSec }, 'telegram poll failed');
    this.audit.write({
      ...emptyEntry(null, null, null),
      kind: 'poll',
      outcome: 'poll_error',
      error,
      note: `retrying in ${waitSec}s`,
    });
  }

  // ---- one update -----------------------------------------------------------------------------

  /** Handles one update end to end; never throws. Returns the audit line written. */
  async handleUpdate(update: Update): Promise<AuditEntry> {
    const me = await this.init();
    const msg = update.message;
    const chatId = msg?.chat.id ?? null;
    const userId = msg?.from?.id ?? null;
    const entry = emptyEntry(update.update_id, chatId, userId);
    const claim = this.app.service.claimTelegramUpdate({
      bot_id: me.id,
      update_id: update.update_id,
      ...(chatId !== null ? { chat_id: chatId } : {}),
      ...(userId !== null ? { user_id: userId } : {}),
      claimer: this.claimer,
    });
    if (claim.status === 'duplicate') {
      entry.duplicate = true;
      entry.chat_tier = chatId === null ? null : chatTier(this.config.access, chatId);
      entry.kind = msg?.text ? (msg.text.startsWith('/') ? 'command' : 'text') : 'other';
      entry.note = `duplicate update_id ${update.update_id}: already handled${claim.outcome ? ` (${claim.outcome})` : ''}; nothing done`;
      this.audit.write(entry);
      return entry;
    }
    if (claim.status === 'reclaimed' && claimerAlive(claim.previous_claimer)) {
      // Another bot instance on this host is still handling it: answering here would repeat it.
      entry.duplicate = true;
      entry.chat_tier = chatId === null ? null : chatTier(this.config.access, chatId);
      entry.kind = msg?.text ? (msg.text.startsWith('/') ? 'command' : 'text') : 'other';
      entry.note = `update_id ${update.update_id} is being handled by another instance (${claim.previous_claimer}); nothing done here`;
      this.audit.write(entry);
      return entry;
    }
    try {
      await this.process(update, entry, claim.status === 'reclaimed');
    } catch (err) {
      this.log.error({ err, update_id: update.update_id }, 'telegram update failed');
      entry.outcome = 'error';
      entry.error = `internal error: ${errorMessage(err)}`;
    }
    this.audit.write(entry);
    this.app.service.finishTelegramUpdate(me.id, update.update_id, entry.outcome);
    return entry;
  }

  private async process(update: Update, entry: AuditEntry, reclaimed: boolean): Promise<void> {
    const msg = update.message;
    if (!msg) {
      entry.note = `ignored: ${Object.keys(update).filter((k) => k !== 'update_id').join(',') || 'empty'} update`;
      return;
    }
    const chatId = msg.chat.id;
    const text = msg.text?.trim() ?? '';
    entry.kind = text ? (text.startsWith('/') ? 'command' : 'text') : 'other';
    const chatLevel = chatTier(this.config.access, chatId);
    entry.chat_tier = chatLevel;
    // In a group, write and admin also need the sender on a list: the chat's tier is a ceiling.
    const tier = chatLevel && msg.chat.type !== 'private' ? groupUserTier(this.config.access, chatLevel, msg.from?.id ?? null) : chatLevel;
    if (tier && chatLevel && tier !== chatLevel) {
      entry.note = `sender ${msg.from?.id ?? 'unknown'} is not on the ${chatLevel} list; ${tier} access in this group`;
    }
    entry.text = text ? auditText(text) : null;
    entry.command = entry.kind === 'command' ? `/${parseCommand(text)?.name ?? '?'}` : null;

    if (tier === null) {
      entry.outcome = 'unauthorized';
      if (this.refused.has(chatId)) {
        entry.note = 'not allowlisted; refused earlier, no reply';
        return;
      }
      this.refused.add(chatId);
      entry.note = 'not allowlisted; refused';
      await this.reply(chatId, `This chat (id ${chatId}) is not allowed to use this bot. Its operator can allow it with --allow-chat-id ${chatId}.`, entry);
      return;
    }
    if (!text) {
      entry.note = 'ignored: no text';
      return;
    }
    const decision = this.limiter.admit(chatId);
    if (!decision.ok) {
      entry.outcome = 'rate_limited';
      entry.note = `${decision.scope} limit (${decision.scope === 'global' ? this.policy.rate_limit_global : this.policy.rate_limit_per_chat} per ${this.policy.rate_limit_window_sec}s)`;
      // One notice per chat per window: answering every message of a flood would itself flood
      // Telegram (and its 429s would stall the bot).
      const t = this.now();
      if ((this.limitNoticeUntil.get(chatId) ?? 0) > t) {
        entry.note += '; notice already sent, no reply';
        return;
      }
      this.limitNoticeUntil.set(chatId, t + decision.retryAfterSec * 1000);
      if (this.limitNoticeUntil.size > 10_000) for (const [id, until] of this.limitNoticeUntil) if (until <= t) this.limitNoticeUntil.delete(id);
      await this.reply(
        chatId,
        `Too many requests ${decision.scope === 'global' ? 'to this bot' : 'from this chat'}; nothing was done. Try again in ${decision.retryAfterSec}s.`,
        entry,
      );
      return;
    }

    const turn: Turn = {
      update_id: update.update_id,
      chatId,
      userId: msg.from?.id ?? null,
      tier,
      maxTier: tier,
      entry,
      fromModel: false,
      reclaimed,
    };
    if (entry.kind === 'command') {
      const cmd = parseCommand(text);
      if (!cmd) {
        await this.finish(turn, { kind: 'reply', text: `That is not a command I know. /help lists them.`, outcome: 'error' });
        return;
      }
      entry.route = 'command';
      if (cmd.mention && cmd.mention.toLowerCase() !== this.me!.username.toLowerCase()) {
        entry.note = `addressed to @${cmd.mention}; ignored`;
        return;
      }
      const last = this.lastRun.get(chatId);
      if (RUN_COMMANDS.has(cmd.name) && cmd.args.length === 0 && last) {
        cmd.args = [last];
        turn.prefix = `(${last}, the last run in this chat)`;
      }
      await this.finish(turn, planCommand(cmd, { listLimit: this.policy.list_limit }));
      return;
    }

    if (TIER_RANK[tier] < TIER_RANK.write) {
      entry.outcome = 'unauthorized';
      await this.reply(chatId, `Plain-text requests need write access; this chat has ${tier} access. /help lists the commands you can use.`, entry);
      return;
    }
    turn.maxTier = minTier(tier, 'write');
    turn.textRouted = true;
    const offered = this.pendingWrites.take(chatId, turn.userId, this.now());
    if (offered && isConfirmation(text)) {
      entry.route = 'rules';
      if (offered === 'expired') {
        await this.finish(turn, { kind: 'reply', outcome: 'error', text: `That confirmation came after ${CONFIRM_WINDOW_MS / 1000}s; nothing was done. Ask again.`, note: 'confirmation expired' });
        return;
      }
      entry.note = `confirmed: ${describeWrite(offered)}`;
      await this.finish(turn, offered);
      return;
    }
    await this.finish(turn, this.confirmFirst(turn, await this.routeText(text, turn)));
  }

  /**
   * A plan from plain text: only the curated tools with agentpr's arguments, and a write waits for
   * the same person's "yes" (text-intent.ts).
   */
  private confirmFirst(turn: Turn, plan: Plan): Plan {
    let call: Extract<Plan, { kind: 'call' }>;
    if (plan.kind === 'ask_state' && plan.command === 'retry') {
      call = { kind: 'call', command: 'retry', tool: 'retry', args: { run_id: plan.run_id }, view: 'text' };
    } else if (plan.kind === 'call') {
      call = { ...plan, args: textArgs(plan.tool, plan.args) };
    } else {
      return plan;
    }
    if (!TEXT_TOOLS.includes(call.tool)) {
      return { kind: 'reply', outcome: 'unauthorized', text: `${call.tool} is not available from plain text; nothing was done. /help lists the commands.`, note: `${call.tool} refused from text` };
    }
    if (call.tool === 'retry') {
      const target = rulesRetryTarget(this.app, String(call.args.run_id));
      if (!target.ok) return { kind: 'reply', outcome: 'error', text: `${target.reason}; nothing was done. /retry <run_id> <STATE> retries to a state you choose.` };
      call.args.target_state = target.target;
    }
    const tool = this.registry.get(call.tool);
    if (!tool || tool.tier === 'read' || call.tool === 'manager-tick') return call;
    if (turn.userId === null) {
      return { kind: 'reply', outcome: 'unauthorized', text: 'A change from plain text needs a confirmation from a person; use the command instead. /help lists them.' };
    }
    this.pendingWrites.offer(turn.chatId, turn.userId, call, this.now());
    turn.entry.note = joinNote(turn.entry.note, `awaiting confirmation: ${describeWrite(call)}`);
    return {
      kind: 'reply',
      outcome: 'ok',
      text: `Reply "yes" (or 确认) within ${CONFIRM_WINDOW_MS / 1000}s to ${describeWrite(call)}. Anything else cancels it; nothing has changed yet.`,
    };
  }

  /** Natural language → a plan, by the configured mode. */
  private async routeText(text: string, turn: Turn): Promise<Plan> {
    const { entry } = turn;
    const rule = matchRules(text);
    if (rule?.kind === 'approval') {
      entry.route = 'rules';
      return {
        kind: 'reply',
        outcome: 'unauthorized',
        text: 'PR approval is never done from plain text. An admin chat approves with /approve_pr <run_id> <token> (see /pending_pr).',
        note: 'approval requested in plain text',
      };
    }
    const mode = this.config.nlMode;
    let llmAnswer: string | null = null;
    if (mode !== 'rules' && this.llm) {
      const notes: string[] = [];
      try {
        const offered = nlTools(this.registry.visible(turn.maxTier)).filter((t) => TEXT_TOOLS.includes(t.name));
        const routed = await routeWithLlm(text, offered, {
          client: await this.llm,
          model: this.config.llm?.model ?? 'gpt-4o-mini',
          timeoutMs: this.config.llm?.timeoutMs ?? 20_000,
        }, this.abort.signal);
        if (routed.kind === 'call') {
          entry.route = 'llm';
          turn.fromModel = true;
          return { kind: 'call', command: 'text', tool: routed.call.name, args: routed.call.args, view: 'text' };
        }
        if (routed.kind === 'refused') {
          if (mode === 'llm') {
            entry.route = 'llm';
            entry.code = 'refused';
            entry.error = `model's choice refused: ${routed.error}`;
            return { kind: 'reply', outcome: 'error', text: `The model's choice was refused, nothing was done: ${routed.error}`, note: 'model choice refused; nothing run' };
          }
          notes.push(`llm choice refused: ${routed.error}`);
        } else {
          llmAnswer = routed.content;
          if (mode === 'llm') {
            entry.route = 'llm';
            return { kind: 'reply', outcome: 'ok', text: llmAnswer ?? NOT_UNDERSTOOD, note: 'model chose no tool' };
          }
          notes.push('llm chose no tool');
        }
      } catch (err) {
        const why = this.audit.scrub(errorMessage(err));
        this.log.warn({ error: why }, 'telegram LLM routing failed');
        if (mode === 'llm') {
          entry.route = 'llm';
          entry.code = 'model_unavailable';
          entry.error = `model request failed: ${why}`;
          return { kind: 'reply', outcome: 'error', text: `The language model is unavailable (${why}); nothing was done. Commands still work: /help.`, note: 'model unavailable; nothing run' };
        }
        notes.push(`llm failed: ${why}`);
      }
      entry.note = `${notes.join('; ')}; fell back to rules`;
    }
    entry.route = 'rules';
    if (!rule) {
      if (llmAnswer) {
        entry.route = 'llm';
        return { kind: 'reply', outcome: 'ok', text: llmAnswer };
      }
      return { kind: 'reply', outcome: 'ok', text: NOT_UNDERSTOOD, note: joinNote(entry.note, 'no rule matched') };
    }
    const { name, args } = rule.command;
    turn.prefix = `(as /${[name, ...args].join(' ')})`;
    return planCommand(rule.command, { listLimit: this.policy.list_limit });
  }

  /** Executes a plan and sends the answer. */
  private async finish(turn: Turn, plan: Plan): Promise<void> {
    const { entry } = turn;
    switch (plan.kind) {
      case 'help':
        await this.send(turn, helpText(this.registry, turn.tier, this.config.nlMode, plan.start));
        return;
      case 'reply':
        entry.outcome = plan.outcome;
        if (plan.note) entry.note = joinNote(entry.note, plan.note);
        await this.send(turn, plan.text);
        return;
      case 'call': {
        const outcome = await this.callTool(turn, plan.command, plan.tool, plan.args);
        if (!outcome) return;
        await this.send(turn, outcome.ok ? this.view(plan.view, outcome, plan.page) : formatFailure(outcome, { command: plan.command, tool: plan.tool, chatTier: turn.tier }));
        return;
      }
      case 'approve': {
        const tool = this.registry.get('approve-open-pr');
        const shape = tool?.input.shape ?? {};
        const tokenField = 'confirm_token' in shape ? 'confirm_token' : 'token';
        const outcome = await this.callTool(turn, 'approve_pr', 'approve-open-pr', { run_id: plan.run_id, [tokenField]: plan.token, confirm: true });
        if (!outcome) return;
        await this.send(turn, outcome.ok ? clip(outcome.text) : formatFailure(outcome, { command: 'approve_pr', tool: 'approve-open-pr', chatTier: turn.tier }));
        return;
      }
      case 'ask_state': {
        const target = defaultTarget(this.app, plan.run_id, plan.command);
        if (target) {
          const note = `(default target ${target.state}: ${target.why})`;
          turn.prefix = turn.prefix ? `${turn.prefix}\n${note}` : note;
          entry.note = joinNote(entry.note, `no state given; default ${target.state}`);
          await this.finish(turn, { kind: 'call', command: plan.command, tool: plan.command, args: { run_id: plan.run_id, target_state: target.state }, view: 'text' });
          return;
        }
        const outcome = await this.callTool(turn, plan.command, 'show-run', { run_id: plan.run_id, events_limit: 1 });
        if (!outcome) return;
        if (!outcome.ok) {
          await this.send(turn, formatFailure(outcome, { command: plan.command, tool: 'show-run', chatTier: turn.tier }));
          return;
        }
        const run = outcome.data.run as { state: string };
        const allowed = (outcome.data.allowed_next_states as string[]).filter((s) => s !== 'PAUSED');
        entry.note = joinNote(entry.note, 'no state given; asked which');
        await this.send(
          turn,
          `Which state? ${plan.run_id} is ${run.state}; it can go to ${allowed.length ? allowed.join(', ') : 'nothing (terminal)'}.\nUsage: /${plan.command} ${plan.run_id} <STATE>`,
        );
        return;
      }
      case 'pending':
        await this.pending(turn);
        return;
      default: {
        const never: never = plan;
        throw new Error(`unhandled plan ${JSON.stringify(never)}`);
      }
    }
  }

  /**
   * The one way a tool runs from Telegram: Registry.call with the chat's tier as the ceiling.
   * Write tools that take an idempotency key get one derived from the update, so a redelivered
   * update is a duplicate; a write without one is not repeated after a restart.
   */
  private async callTool(turn: Turn, command: string, toolName: string, args: Record<string, unknown>): Promise<CallOutcome | undefined> {
    const { entry } = turn;
    const tool = this.registry.get(toolName);
    const callArgs: Record<string, unknown> = { ...args };
    entry.tool = toolName;
    entry.tier = tool?.tier ?? null;
    entry.args = callArgs;
    if (tool && tool.tier !== 'read' && TIER_RANK[tool.tier] <= TIER_RANK[turn.maxTier]) {
      if ('idempotency_key' in tool.input.shape) {
        callArgs.idempotency_key = `telegram:${this.me!.id}:${turn.update_id}`;
      } else if (turn.reclaimed) {
        entry.outcome = 'error';
        entry.note = joinNote(entry.note, 'reclaimed after a restart; write not repeated');
        await this.send(
          turn,
          `This message was being handled when the bot stopped. ${toolName} was not run again, so it cannot apply twice; send it again if it is still needed.`,
        );
        return undefined;
      }
      if (turn.fromModel) {
        await this.reply(turn.chatId, clip(`→ ${toolName} ${JSON.stringify(args)}\n(chosen by the model from your message; running it now)`), entry);
      }
    }
    const outcome = await this.registry.call(
      toolName,
      callArgs,
      // The stop signal lets a long tool (manager-tick) end after its current action on SIGTERM.
      { app: this.app, entry: 'telegram', actor: `telegram:${turn.userId ?? turn.chatId}`, signal: this.abort.signal },
      { maxTier: turn.maxTier, ...(turn.textRouted ? { only: TEXT_TOOLS } : {}) },
    );
    if (!outcome.ok) {
      entry.outcome = outcome.code === 'forbidden' ? 'unauthorized' : 'error';
      entry.code = outcome.code;
      entry.error = outcome.error;
    } else if (typeof callArgs.run_id === 'string') {
      this.lastRun.set(turn.chatId, callArgs.run_id);
      if (this.lastRun.size > 10_000) this.lastRun.delete(this.lastRun.keys().next().value!);
    }
    return outcome;
  }

  private view(view: View, outcome: Extract<CallOutcome, { ok: true }>, page?: ListPage): string {
    switch (view) {
      case 'list':
        return formatList(outcome.data, page ?? { page: 1 }, this.policy.list_limit);
      case 'status':
        return formatStatus(outcome.data);
      case 'show':
        return clip(outcome.text, undefined, 'the CLI show-run prints everything');
      default:
        return outcome.text; // long answers are split into several messages by reply()
    }
  }

  /** PUSHED runs and their latest open-PR request, through the read tools. */
  private async pending(turn: Turn): Promise<void> {
    const listed = await this.callTool(turn, 'pending_pr', 'list-runs', { state: 'PUSHED', limit: this.policy.list_limit });
    if (!listed) return;
    if (!listed.ok) {
      await this.send(turn, formatFailure(listed, { command: 'pending_pr', tool: 'list-runs', chatTier: turn.tier }));
      return;
    }
    const runs = listed.data.runs as Array<{ run_id: string; owner: string; repo: string }>;
    const total = Number(listed.data.total ?? runs.length);
    if (!runs.length) {
      await this.send(turn, 'No runs are waiting for a PR (none in PUSHED).');
      return;
    }
    // An approval token is a credential: shown only to an admin in a private chat, never to a group.
    const isAdmin = turn.tier === 'admin' && turn.chatId > 0;
    const now = Date.now();
    const lines: string[] = [];
    for (const run of runs) {
      const shown = await this.registry.call('show-run', { run_id: run.run_id, events_limit: 1 }, { app: this.app, entry: 'telegram', actor: `telegram:${turn.userId ?? turn.chatId}` }, { maxTier: 'read' });
      const artifacts = shown.ok ? (shown.data.artifacts as Array<{ artifact_type: string; metadata: Record<string, unknown> }>) : [];
      const request = artifacts.filter((a) => a.artifact_type === 'pr_open_request').at(-1)?.metadata;
      let line = `${run.run_id} ${run.owner}/${run.repo}`;
      if (!request) {
        line += ': no PR request yet';
      } else {
        const title = typeof request.title === 'string' ? request.title : undefined;
        const expires = typeof request.expires_at === 'string' ? request.expires_at : undefined;
        const expired = expires !== undefined && Date.parse(expires) < now;
        const token = typeof request.confirm_token === 'string' ? request.confirm_token : typeof request.token === 'string' ? request.token : undefined;
        const gate = request.gate && typeof request.gate === 'object' ? (request.gate as { ok?: unknown; failed_checks?: Array<{ code?: unknown }> }) : undefined;
        const blocked = gate?.ok === false ? `; gate blocks: ${(gate.failed_checks ?? []).map((c) => String(c.code)).join(', ') || 'see show-run'}` : '';
        line += `: PR request${title ? ` "${title}"` : ''}${expires ? (expired ? ` (expired ${expires})` : `, expires ${expires}`) : ''}${blocked}`;
        if (isAdmin && token && !expired) line += `\n  approve: /approve_pr ${run.run_id} ${token}`;
        else if (turn.tier === 'admin' && token && !expired) line += '\n  approve: ask /pending_pr in a private chat with the bot for the token';
      }
      lines.push(line);
    }
    const more = total > runs.length ? `\n(${runs.length} of ${total} shown)` : '';
    await this.send(turn, clip(`Waiting for a PR (PUSHED):\n${lines.join('\n')}${more}`));
  }

  private async send(turn: Turn, text: string): Promise<void> {
    await this.reply(turn.chatId, turn.prefix ? `${turn.prefix}\n${text}` : text, turn.entry);
  }

  /**
   * Sends plain text (no parse mode, so run output needs no escaping), split into messages that
   * Telegram accepts. A refusal is an error in the audit with Telegram's description, and the
   * chat gets a short fallback so it never goes silent.
   */
  private async reply(chatId: number, text: string, entry: AuditEntry): Promise<void> {
    for (const part of splitReply(text, MAX_REPLY)) {
      try {
        await this.api.sendMessage(chatId, part, { link_preview_options: { is_disabled: true } });
      } catch (err) {
        const why = this.audit.scrub(err instanceof GrammyError ? `${err.error_code} ${err.description}` : errorMessage(err));
        this.log.warn({ chat_id: chatId, error: why }, 'telegram reply failed');
        entry.outcome = entry.outcome === 'ok' ? 'error' : entry.outcome;
        entry.error = joinNote(entry.error, `reply not delivered: sendMessage ${why}`);
        if (err instanceof GrammyError && err.error_code === 400) await this.fallback(chatId, why, entry);
        return;
      }
    }
  }

  private async fallback(chatId: number, why: string, entry: AuditEntry): Promise<void> {
    const text = clip(`The answer could not be delivered: Telegram refused it (${why}). What was asked is done or refused as the audit log says; the CLI shows the full answer.`, 1000);
    try {
      await this.api.sendMessage(chatId, text, { link_preview_options: { is_disabled: true } });
      entry.note = joinNote(entry.note, 'sent a short fallback instead');
    } catch (err) {
      entry.note = joinNote(entry.note, `fallback not delivered either: ${this.audit.scrub(errorMessage(err))}`);
    }
  }
}

/** The text as audited: an approval token (typed in a command or in plain text) never reaches the file. */
function auditText(text: string): string {
  const cmd = parseCommand(text);
  if (cmd?.name === 'approve_pr') return ['/approve_pr', ...cmd.args.slice(0, 1), '[token redacted]'].join(' ');
  if (!cmd && matchRules(text)?.kind === 'approval') return '[approval request in plain text; redacted]';
  return text;
}

/** Updates of one chat share a key (in order); updates without a chat each get their own. */
function chatKey(update: Update): string {
  const chat = update.message?.chat.id;
  return chat === undefined ? `update:${update.update_id}` : `chat:${chat}`;
}

/** A claimer is `<host>:<pid>:<nonce>`; on this host, a live pid means it is still at work. */
function claimerAlive(claimer: string | undefined): boolean {
  if (!claimer) return false;
  const [host, pid] = claimer.split(':');
  if (host !== hostname() || !pid || !/^\d+$/.test(pid)) return false;
  return pidAlive(Number(pid));
}

function joinNote(a: string | null, b: string): string {
  return a ? `${a}; ${b}` : b;
}

function emptyEntry(updateId: number | null, chatId: number | null, userId: number | null): AuditEntry {
  return {
    ts: new Date().toISOString(),
    update_id: updateId,
    chat_id: chatId,
    user_id: userId,
    chat_tier: null,
    kind: 'other',
    command: null,
    text: null,
    route: null,
    tool: null,
    tier: null,
    args: null,
    outcome: 'ok',
    code: null,
    error: null,
    duplicate: false,
    note: null,
  };
}
