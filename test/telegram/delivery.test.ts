import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { ADMIN_CHAT, READ_CHAT, STRANGER, WRITE_CHAT, startHarness, type Harness } from './harness.js';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

describe('rate limits', () => {
  test('per chat: the update over the limit is answered once, audited, and runs nothing', async () => {
    h = await startHarness({ policy: { rate_limit_per_chat: 2, rate_limit_global: 100, rate_limit_window_sec: 3600 } });
    const run = h.run();
    await h.say(WRITE_CHAT, '/list');
    await h.say(WRITE_CHAT, '/list');
    const limited = await h.say(WRITE_CHAT, `/pause ${run.run_id}`);
    expect(limited.replies).toHaveLength(1);
    expect(limited.replies[0]).toMatch(/^Too many requests from this chat; nothing was done\. Try again in \d+s\.$/);
    expect(h.app.service.getRun(run.run_id).state).toBe('QUEUED');
    // another chat has its own window
    expect((await h.say(READ_CHAT, '/list')).replies[0]).toContain(run.run_id);
    const line = h.audit().find((e) => e.update_id === limited.update_id)!;
    expect(line).toMatchObject({ outcome: 'rate_limited', chat_id: WRITE_CHAT, command: '/pause', tool: null, note: 'chat limit (2 per 3600s)' });
  });

  test('global first: when the bot is over its global limit every chat is turned away', async () => {
    h = await startHarness({ policy: { rate_limit_per_chat: 10, rate_limit_global: 3, rate_limit_window_sec: 3600 } });
    await h.say(READ_CHAT, '/help');
    await h.say(WRITE_CHAT, '/help');
    await h.say(ADMIN_CHAT, '/help');
    const limited = await h.say(READ_CHAT, '/help');
    expect(limited.replies[0]).toMatch(/^Too many requests to this bot; nothing was done/);
    const other = await h.say(WRITE_CHAT, 'list runs');
    expect(other.replies[0]).toMatch(/^Too many requests to this bot/);
    expect(h.audit().filter((e) => e.outcome === 'rate_limited').map((e) => e.note)).toEqual(['global limit (3 per 3600s)', 'global limit (3 per 3600s)']);
  });
});

describe('at-least-once delivery', () => {
  test('a redelivered update_id is applied once, answered once, and audited as a duplicate', async () => {
    h = await startHarness();
    const run = h.run();
    const update = h.tg.pushText({ chatId: WRITE_CHAT, text: `/pause ${run.run_id}` });
    await h.tg.settled();
    h.app.service.applyEvent({ run_id: run.run_id, event_type: 'command.resume', payload: { target_state: 'DISCOVERY' } });
    h.tg.redeliver(update);
    await h.tg.settled();
    expect(h.tg.messagesTo(WRITE_CHAT)).toEqual([`${run.run_id}: QUEUED -> PAUSED (command.pause)`]);
    expect(h.app.service.getRun(run.run_id).state).toBe('DISCOVERY');
    expect(h.app.service.listEvents(run.run_id).filter((e) => e.event_type === 'command.pause')).toHaveLength(1);
    const lines = h.audit().filter((e) => e.update_id === update.update_id);
    expect(lines.map((l) => [l.outcome, l.duplicate])).toEqual([
      ['ok', false],
      ['ok', true],
    ]);
    expect(lines[1]!.note).toContain('already handled (ok)');
  });

  test('after a restart, a redelivered update is still recognised (the ledger is in SQLite)', async () => {
    h = await startHarness();
    const run = h.run();
    const update = h.tg.pushText({ chatId: WRITE_CHAT, text: `/pause ${run.run_id}` });
    await h.tg.settled();
    await h.bot.stop();
    h.app.service.applyEvent({ run_id: run.run_id, event_type: 'command.resume', payload: { target_state: 'DISCOVERY' } });
    h.bot = h.newBot();
    void h.bot.start();
    h.tg.redeliver(update);
    await h.tg.settled();
    expect(h.app.service.getRun(run.run_id).state).toBe('DISCOVERY');
    expect(h.tg.messagesTo(WRITE_CHAT)).toHaveLength(1);
  });

  test('an update left half-done by a crashed process: an idempotent write is not applied twice', async () => {
    h = await startHarness({ manual: true });
    const run = h.run();
    const me = await h.bot.init();
    const updateId = 555_001;
    // The crashed process claimed the update and applied the pause, then died before replying.
    h.app.service.claimTelegramUpdate({ bot_id: me.id, update_id: updateId, chat_id: WRITE_CHAT, user_id: WRITE_CHAT, claimer: 'old-host:1:dead' });
    h.app.service.applyEvent({ run_id: run.run_id, event_type: 'command.pause', idempotency_key: `telegram:${me.id}:${updateId}` });
    h.app.service.applyEvent({ run_id: run.run_id, event_type: 'command.resume', payload: { target_state: 'DISCOVERY' } });
    void h.bot.start();
    h.tg.pushText({ chatId: WRITE_CHAT, text: `/pause ${run.run_id}`, updateId });
    await h.tg.settled();
    expect(h.app.service.getRun(run.run_id).state).toBe('DISCOVERY');
    expect(h.app.service.listEvents(run.run_id).filter((e) => e.event_type === 'command.pause')).toHaveLength(1);
    expect(h.tg.messagesTo(WRITE_CHAT)[0]).toContain('duplicate command.pause');
  });

  test('an update left half-done: a write without an idempotency key is not repeated', async () => {
    h = await startHarness({ manual: true });
    const me = await h.bot.init();
    const updateId = 555_002;
    h.app.service.claimTelegramUpdate({ bot_id: me.id, update_id: updateId, chat_id: WRITE_CHAT, claimer: 'old-host:1:dead' });
    void h.bot.start();
    h.tg.pushText({ chatId: WRITE_CHAT, text: '/tick', updateId });
    await h.tg.settled();
    expect(h.tg.messagesTo(WRITE_CHAT)).toEqual([
      'This message was being handled when the bot stopped. manager-tick was not run again, so it cannot apply twice; send it again if it is still needed.',
    ]);
    const line = h.audit().at(-1)!;
    expect(line).toMatchObject({ outcome: 'error', tool: 'manager-tick', note: 'reclaimed after a restart; write not repeated' });
  });

  test('the offset is confirmed on stop, so Telegram forgets handled updates', async () => {
    h = await startHarness();
    const update = h.tg.pushText({ chatId: READ_CHAT, text: '/help' });
    await h.tg.settled();
    await h.bot.stop();
    expect(h.tg.confirmedOffset).toBe(update.update_id + 1);
  });
});

describe('Telegram API failures', () => {
  test('a 429 on sendMessage is retried after retry_after (auto-retry) and the reply arrives', async () => {
    h = await startHarness();
    h.tg.failNext('sendMessage', { error_code: 429, description: 'Too Many Requests: retry after 1', retry_after: 1 });
    const reply = await h.say(READ_CHAT, '/help');
    expect(reply.replies).toHaveLength(1);
    expect(h.tg.calls.filter((c) => c.method === 'sendMessage')).toHaveLength(2);
    expect(h.audit().at(-1)).toMatchObject({ outcome: 'ok', note: null });
  });

  test('a failed getUpdates (5xx) is audited as poll_error and polling goes on', async () => {
    h = await startHarness({ manual: true });
    h.tg.failNext('getUpdates', { error_code: 502, description: 'Bad Gateway' });
    void h.bot.start();
    const reply = await h.say(READ_CHAT, '/help');
    expect(reply.replies).toHaveLength(1);
    const polls = h.audit().filter((e) => e.outcome === 'poll_error');
    expect(polls).toHaveLength(1);
    expect(polls[0]).toMatchObject({ kind: 'poll', update_id: null, chat_id: null, error: 'getUpdates 502 Bad Gateway' });
  });

  test('a revoked token stops the bot with a configuration error', async () => {
    h = await startHarness({ manual: true });
    await h.bot.init();
    h.tg.failNext('getUpdates', { error_code: 401, description: 'Unauthorized' });
    await expect(h.bot.start()).rejects.toThrow('Telegram rejected the bot token while polling (401 Unauthorized); check AGENTPR_TELEGRAM_BOT_TOKEN');
  });
});

describe('audit log', () => {
  test('one JSONL line per update with the documented fields, at the policy path under the reports dir, without secrets', async () => {
    h = await startHarness({ policy: { audit_log_file: 'tg/audit.jsonl' } });
    const run = h.run();
    expect(h.bot.auditPath).toBe(join(h.home, 'reports', 'tg', 'audit.jsonl'));
    const ok = await h.say(WRITE_CHAT, `/pause ${run.run_id}`);
    const err = await h.say(WRITE_CHAT, `/pause ${run.run_id}x`);
    const unauthorized = await h.say(STRANGER, '/list');
    const text = await h.say(WRITE_CHAT, `resume ${run.run_id} discovery`);
    const confirmed = await h.say(WRITE_CHAT, 'yes');
    h.tg.pushUpdate({ update_id: 990_000, edited_message: { message_id: 1, chat: { id: WRITE_CHAT, type: 'private' }, date: 0, text: 'x' } });
    await h.tg.settled();
    const raw = readFileSync(h.bot.auditPath, 'utf8');
    expect(raw).not.toContain(h.tg.token);
    const lines = raw.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toHaveLength(6);
    const keys = ['ts', 'update_id', 'chat_id', 'user_id', 'chat_tier', 'kind', 'command', 'text', 'route', 'tool', 'tier', 'args', 'outcome', 'code', 'error', 'duplicate', 'note'];
    for (const l of lines) expect(Object.keys(l).sort()).toEqual([...keys].sort());
    const byUpdate = (id: number) => lines.find((l) => l.update_id === id)!;
    expect(byUpdate(ok.update_id)).toMatchObject({
      chat_id: WRITE_CHAT,
      user_id: WRITE_CHAT,
      chat_tier: 'write',
      kind: 'command',
      command: '/pause',
      route: 'command',
      tool: 'pause',
      tier: 'write',
      outcome: 'ok',
    });
    expect(byUpdate(ok.update_id).args).toMatchObject({ run_id: run.run_id, idempotency_key: expect.stringMatching(/^telegram:\d+:\d+$/) });
    expect(byUpdate(err.update_id)).toMatchObject({ outcome: 'error', code: 'invalid_input', tool: 'pause' });
    expect(byUpdate(unauthorized.update_id)).toMatchObject({ outcome: 'unauthorized', chat_tier: null, command: '/list', tool: null });
    expect(byUpdate(text.update_id)).toMatchObject({ kind: 'text', route: 'rules', tool: null, text: `resume ${run.run_id} discovery`, outcome: 'ok' });
    expect(byUpdate(confirmed.update_id)).toMatchObject({ kind: 'text', route: 'rules', tool: 'resume', text: 'yes', outcome: 'ok' });
    expect(byUpdate(990_000)).toMatchObject({ kind: 'other', outcome: 'ok', note: 'ignored: edited_message update' });
    expect(Date.parse(String(byUpdate(ok.update_id).ts))).not.toBeNaN();
  });
});
