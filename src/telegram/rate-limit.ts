/**
 * Sliding-window limits: an update is admitted when fewer than `global` updates were
 * admitted from all chats, and fewer than `perChat` from its chat, in the last `windowMs`. The
 * global window is checked first. Refused updates do not count.
 */
export type RateDecision = { ok: true } | { ok: false; scope: 'global' | 'chat'; retryAfterSec: number };

export class SlidingWindowLimiter {
  private readonly global: number[] = [];
  private readonly chats = new Map<number, number[]>();

  constructor(
    private readonly opts: { windowMs: number; global: number; perChat: number },
    private readonly now: () => number = Date.now,
  ) {}

  admit(chatId: number): RateDecision {
    const t = this.now();
    const since = t - this.opts.windowMs;
    prune(this.global, since);
    if (this.global.length >= this.opts.global) return { ok: false, scope: 'global', retryAfterSec: this.retryAfter(this.global, t) };
    const chat = this.chats.get(chatId) ?? [];
    prune(chat, since);
    if (chat.length >= this.opts.perChat) {
      this.chats.set(chatId, chat);
      return { ok: false, scope: 'chat', retryAfterSec: this.retryAfter(chat, t) };
    }
    chat.push(t);
    this.chats.set(chatId, chat);
    this.global.push(t);
    if (this.chats.size > 10_000) this.dropIdle(since);
    return { ok: true };
  }

  private retryAfter(stamps: number[], t: number): number {
    const oldest = stamps[0] ?? t;
    return Math.max(1, Math.ceil((oldest + this.opts.windowMs - t) / 1000));
  }

  private dropIdle(since: number): void {
    for (const [id, stamps] of this.chats) {
      prune(stamps, since);
      if (!stamps.length) this.chats.delete(id);
    }
  }
}

function prune(stamps: number[], since: number): void {
  let i = 0;
  while (i < stamps.length && stamps[i]! <= since) i++;
  if (i) stamps.splice(0, i);
}
