import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A local HTTP server speaking the Telegram Bot API (`POST /bot<token>/<method>`, JSON bodies,
 * `{ok, result}` / `{ok: false, error_code, description, parameters}` answers), for grammY with
 * `client.apiRoot` pointed at `server.apiRoot`. It queues real-shaped updates, long-polls
 * `getUpdates` with Telegram's offset semantics (an offset confirms every earlier update), records
 * `sendMessage`, enforces the 4096-character text limit and can inject failures (429 with
 * `retry_after`, 401, 409, 5xx).
 */

export interface TgUser {
  id: number;
  is_bot: boolean;
  first_name: string;
  username?: string;
  language_code?: string;
}

export interface TgChat {
  id: number;
  type: 'private' | 'group' | 'supergroup' | 'channel';
  title?: string;
  first_name?: string;
  username?: string;
}

export interface TgMessage {
  message_id: number;
  from?: TgUser;
  chat: TgChat;
  date: number;
  text?: string;
  entities?: Array<{ offset: number; length: number; type: string }>;
}

export interface TgUpdate {
  update_id: number;
  message?: TgMessage;
  edited_message?: TgMessage;
  [key: string]: unknown;
}

export interface SentMessage {
  chat_id: number;
  text: string;
  message_id: number;
  params: Record<string, unknown>;
}

export interface ApiCall {
  method: string;
  params: Record<string, unknown>;
}

export interface InjectedFailure {
  error_code: number;
  description: string;
  retry_after?: number;
}

interface Waiter {
  res: ServerResponse;
  offset: number;
  limit: number;
  timer: NodeJS.Timeout;
}

export class FakeTelegram {
  readonly token: string;
  readonly bot: TgUser = { id: 7_000_000_001, is_bot: true, first_name: 'AgentPR Test', username: 'agentpr_test_bot' };
  readonly calls: ApiCall[] = [];
  readonly sent: SentMessage[] = [];
  /** Updates not yet confirmed by a getUpdates offset. */
  private pending: TgUpdate[] = [];
  /** Redeliveries, returned whatever the offset. */
  private forced: TgUpdate[] = [];
  private nextUpdateId = 100_000;
  private nextMessageId = 1;
  private confirmed = 0;
  private readonly failures = new Map<string, InjectedFailure[]>();
  private readonly waiters = new Set<Waiter>();
  private readonly listeners = new Set<() => void>();
  private server?: Server;

  constructor(token = '123456789:TEST-fake-telegram-token') {
    this.token = token;
  }

  get apiRoot(): string {
    const addr = this.server?.address() as AddressInfo | null | undefined;
    if (!addr) throw new Error('FakeTelegram is not listening; call start() first');
    return `http://127.0.0.1:${addr.port}`;
  }

  /** The highest update_id + 1 the bot has confirmed through getUpdates' offset. */
  get confirmedOffset(): number {
    return this.confirmed;
  }

  async start(): Promise<this> {
    this.server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    return this;
  }

  async close(): Promise<void> {
    for (const w of this.waiters) {
      clearTimeout(w.timer);
      w.res.destroy();
    }
    this.waiters.clear();
    const server = this.server;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  // ---- feeding updates ----------------------------------------------------------------------

  /** Queues a text message the way Telegram delivers it (a private chat unless chat is given). */
  pushText(opts: { chatId: number; userId?: number; text: string; chatType?: TgChat['type']; updateId?: number }): TgUpdate {
    const userId = opts.userId ?? opts.chatId;
    const from: TgUser = { id: userId, is_bot: false, first_name: `User${userId}`, username: `user${userId}`, language_code: 'en' };
    const chatType = opts.chatType ?? (opts.chatId < 0 ? 'supergroup' : 'private');
    const chat: TgChat =
      chatType === 'private' ? { id: opts.chatId, type: 'private', first_name: from.first_name, username: from.username } : { id: opts.chatId, type: chatType, title: `Group ${opts.chatId}` };
    const message: TgMessage = { message_id: this.nextMessageId++, from, chat, date: Math.floor(Date.now() / 1000), text: opts.text };
    const command = /^\/[A-Za-z0-9_]+(?:@[A-Za-z0-9_]+)?/.exec(opts.text);
    if (command) message.entities = [{ offset: 0, length: command[0].length, type: 'bot_command' }];
    return this.pushUpdate({ update_id: opts.updateId ?? this.nextUpdateId++, message });
  }

  /** Queues any update (an exact copy of an earlier one simulates Telegram redelivering it). */
  pushUpdate(update: TgUpdate): TgUpdate {
    if (update.update_id >= this.nextUpdateId) this.nextUpdateId = update.update_id + 1;
    this.pending.push(update);
    this.pending.sort((a, b) => a.update_id - b.update_id);
    this.flushWaiters();
    return update;
  }

  /**
   * Delivers an update again even though its offset was confirmed: what Telegram does when the
   * bot's confirmation was lost (a crash between handling an update and the next getUpdates).
   */
  redeliver(update: TgUpdate): void {
    this.forced.push(update);
    this.flushWaiters();
  }

  /** The next `sendMessage`, `getUpdates`, ... call fails with this error (in order, per method). */
  failNext(method: string, failure: InjectedFailure): void {
    const list = this.failures.get(method) ?? [];
    list.push(failure);
    this.failures.set(method, list);
  }

  // ---- observing ----------------------------------------------------------------------------

  messagesTo(chatId: number): string[] {
    return this.sent.filter((m) => m.chat_id === chatId).map((m) => m.text);
  }

  /** Resolves once `predicate` holds (checked after every API call); rejects after a guard timeout. */
  async waitFor(predicate: () => boolean, what = 'condition', guardMs = 15_000): Promise<void> {
    if (predicate()) return;
    await new Promise<void>((resolve, reject) => {
      const check = () => {
        if (!predicate()) return;
        clearTimeout(timer);
        this.listeners.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        this.listeners.delete(check);
        reject(new Error(`FakeTelegram: timed out waiting for ${what}; sent so far: ${JSON.stringify(this.sent.map((m) => [m.chat_id, m.text.slice(0, 80)]))}`));
      }, guardMs);
      this.listeners.add(check);
    });
  }

  /** Waits until the chat has received at least `count` messages in total and returns them. */
  async waitForMessages(chatId: number, count: number): Promise<string[]> {
    await this.waitFor(() => this.messagesTo(chatId).length >= count, `${count} message(s) to chat ${chatId}`);
    return this.messagesTo(chatId);
  }

  /**
   * Waits until the bot is long-polling again with nothing left to fetch: every update fed so far
   * has been handled (the bot handles a batch before it asks for the next one).
   */
  async settled(): Promise<void> {
    await this.waitFor(
      () => this.waiters.size > 0 && this.forced.length === 0 && [...this.waiters].every((w) => !this.pending.some((u) => u.update_id >= w.offset)),
      'the bot to handle every update and poll again',
    );
  }

  /** Waits until the bot has confirmed every update up to and including `updateId`. */
  async waitForConfirmed(updateId: number): Promise<void> {
    await this.waitFor(() => this.confirmed > updateId, `offset past update ${updateId}`);
  }

  private notify(): void {
    for (const fn of [...this.listeners]) fn();
  }

  // ---- the wire protocol --------------------------------------------------------------------

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const match = /^\/bot([^/]+)\/([A-Za-z]+)$/.exec((req.url ?? '').split('?')[0] ?? '');
    if (!match) return this.fail(res, { error_code: 404, description: 'Not Found' });
    const [, token, method] = match as unknown as [string, string, string];
    let params: Record<string, unknown> = {};
    const raw = Buffer.concat(chunks).toString('utf8');
    if (raw) {
      try {
        params = JSON.parse(raw) as Record<string, unknown>;
      } catch {
        return this.fail(res, { error_code: 400, description: 'Bad Request: invalid JSON body' });
      }
    }
    if (token !== this.token) return this.fail(res, { error_code: 401, description: 'Unauthorized' });
    this.calls.push({ method, params });
    const injected = this.failures.get(method)?.shift();
    if (injected) {
      this.fail(res, injected);
      this.notify();
      return;
    }
    switch (method) {
      case 'getMe':
        this.ok(res, { ...this.bot, can_join_groups: true, can_read_all_group_messages: false, supports_inline_queries: false });
        break;
      case 'deleteWebhook':
      case 'setMyCommands':
        this.ok(res, true);
        break;
      case 'getUpdates':
        this.getUpdates(res, params);
        break;
      case 'sendMessage':
        this.sendMessage(res, params);
        break;
      default:
        this.fail(res, { error_code: 404, description: 'Not Found: method not found' });
    }
    this.notify();
  }

  /**
   * Like Telegram with two pollers: a getUpdates that arrives while another is still waiting
   * ends the waiting one with 409. Off by default (one bot per test needs no referee).
   */
  conflictOnConcurrentPolls = false;

  private getUpdates(res: ServerResponse, params: Record<string, unknown>): void {
    if (this.conflictOnConcurrentPolls) {
      for (const w of [...this.waiters]) {
        clearTimeout(w.timer);
        this.waiters.delete(w);
        this.fail(w.res, { error_code: 409, description: 'Conflict: terminated by other getUpdates request; make sure that only one bot instance is running' });
      }
    }
    const offset = typeof params.offset === 'number' ? params.offset : 0;
    const limit = typeof params.limit === 'number' ? Math.min(100, Math.max(1, params.limit)) : 100;
    const timeout = typeof params.timeout === 'number' ? params.timeout : 0;
    if (offset > 0) this.confirm(offset);
    const ready = this.ready(offset, limit);
    if (ready.length || timeout <= 0) return this.ok(res, ready);
    const waiter: Waiter = {
      res,
      offset,
      limit,
      timer: setTimeout(() => {
        this.waiters.delete(waiter);
        this.ok(res, []);
      }, timeout * 1000),
    };
    this.waiters.add(waiter);
    res.on('close', () => {
      clearTimeout(waiter.timer);
      this.waiters.delete(waiter);
    });
  }

  private ready(offset: number, limit: number): TgUpdate[] {
    if (this.forced.length) return this.forced.splice(0, limit);
    return this.pending.filter((u) => u.update_id >= offset).slice(0, limit);
  }

  private confirm(offset: number): void {
    if (offset > this.confirmed) this.confirmed = offset;
    this.pending = this.pending.filter((u) => u.update_id >= offset);
  }

  private flushWaiters(): void {
    for (const w of [...this.waiters]) {
      const ready = this.ready(w.offset, w.limit);
      if (!ready.length) continue;
      clearTimeout(w.timer);
      this.waiters.delete(w);
      this.ok(w.res, ready);
    }
  }

  private sendMessage(res: ServerResponse, params: Record<string, unknown>): void {
    const chatId = Number(params.chat_id);
    const text = typeof params.text === 'string' ? params.text : '';
    if (!Number.isFinite(chatId)) return this.fail(res, { error_code: 400, description: 'Bad Request: chat not found' });
    if (!text.trim()) return this.fail(res, { error_code: 400, description: 'Bad Request: message text is empty' });
    // Half a surrogate pair (an emoji cut in two) cannot be encoded as UTF-8: Telegram refuses it.
    if (/\p{Cs}/u.test(text)) return this.fail(res, { error_code: 400, description: 'Bad Request: text must be encoded in UTF-8' });
    // Telegram counts UTF-16 code units after entity parsing; plain text here.
    if (text.length > 4096) return this.fail(res, { error_code: 400, description: 'Bad Request: message is too long' });
    const messageId = this.nextMessageId++;
    this.sent.push({ chat_id: chatId, text, message_id: messageId, params });
    this.ok(res, {
      message_id: messageId,
      from: this.bot,
      chat: chatId < 0 ? { id: chatId, type: 'supergroup', title: `Group ${chatId}` } : { id: chatId, type: 'private', first_name: `User${chatId}` },
      date: Math.floor(Date.now() / 1000),
      text,
    });
  }

  private ok(res: ServerResponse, result: unknown): void {
    if (res.writableEnded || res.destroyed) return;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ ok: true, result }));
  }

  private fail(res: ServerResponse, f: InjectedFailure): void {
    if (res.writableEnded || res.destroyed) return;
    const body: Record<string, unknown> = { ok: false, error_code: f.error_code, description: f.description };
    if (f.retry_after !== undefined) body.parameters = { retry_after: f.retry_after };
    res.writeHead(f.error_code, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  }
}

export async function startFakeTelegram(token?: string): Promise<FakeTelegram> {
  return new FakeTelegram(token).start();
}
