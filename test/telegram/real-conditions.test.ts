import fc from 'fast-check';
import { z } from 'zod';
import { afterEach, describe, expect, test } from 'vitest';
import { defineTool } from '../../src/registry.js';
import { MAX_REPLY, clip, splitReply } from '../../src/telegram/format.js';
import { PollConflictError } from '../../src/telegram/bot.js';
import { startFakeOpenAI, toolCall, type FakeOpenAI } from '../helpers/fake-openai.js';
import { ADMIN_CHAT, READ_CHAT, WRITE_CHAT, failRun, startHarness, type Harness } from './harness.js';

let h: Harness | undefined;
let llm: FakeOpenAI | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
  await llm?.close();
  llm = undefined;
});

const LONE_SURROGATE = /\p{Cs}/u;

/** A write-tier manager-tick that holds until released: a tick running a slow worker. */
function slowTick(started: () => void, release: Promise<void>) {
  return defineTool({
    name: 'manager-tick',
    title: 'Manager tick (slow stand-in)',
    description: 'A tick that waits for the test to release it.',
    tier: 'write',
    annotations: { readOnlyHint: false },
    input: z.object({ run_id: z.string().optional(), dry_run: z.boolean().optional() }),
    output: z.object({ ticked: z.boolean() }),
    handler: async () => {
      started();
      await release;
      return { data: { ticked: true }, text: 'tick done' };
    },
  });
}

function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

describe('text Telegram accepts', () => {
  test('clip and split never cut an emoji in half, and stay within 4096 UTF-16 units', () => {
    const emojiText = fc.array(fc.constantFrom('a', 'é', '😀', '👩‍👩‍👧', '\n', '中', ' '), { minLength: 0, maxLength: 9000 }).map((a) => a.join(''));
    fc.assert(
      fc.property(emojiText, fc.integer({ min: 200, max: 4096 }), (text, max) => {
        const clipped = clip(text, max);
        expect(clipped.length).toBeLessThanOrEqual(max);
        expect(clipped).not.toMatch(LONE_SURROGATE);
        const parts = splitReply(text, max);
        expect(parts.length).toBeGreaterThanOrEqual(1);
        for (const p of parts) {
          expect(p.length).toBeLessThanOrEqual(max);
          expect(p).not.toMatch(LONE_SURROGATE);
        }
      }),
      { numRuns: 200 },
    );
    // the clip point falls exactly between the two halves of 😀
    const text = `${'x'.repeat(MAX_REPLY - 40)}😀${'y'.repeat(200)}`;
    expect(clip(text)).not.toMatch(LONE_SURROGATE);
  });

  test('a /status whose last error has an emoji across the clip point is delivered', async () => {
    h = await startHarness();
    const run = h.run();
    // last_error is 'agent:runtime_transient_failure:' (32 units) + the message; /status shows 300 units.
    failRun(h.app, run.run_id, `${'e'.repeat(267)}😀 and more after the cut`);
    const reply = await h.say(READ_CHAT, `/status ${run.run_id}`);
    expect(reply.replies).toHaveLength(1);
    expect(reply.replies[0]).toContain(`last error: agent:runtime_transient_failure:${'e'.repeat(267)}… (/show ${run.run_id})`);
    expect(h.audit().at(-1)).toMatchObject({ outcome: 'ok', error: null });
  });

  test('a send Telegram refuses is an error in the audit with its description, and the chat gets a short fallback', async () => {
    h = await startHarness();
    h.tg.failNext('sendMessage', { error_code: 400, description: "Bad Request: can't parse entities" });
    const reply = await h.say(READ_CHAT, '/help');
    expect(reply.replies).toHaveLength(1);
    expect(reply.replies[0]).toMatch(/^The answer could not be delivered: Telegram refused it \(400 Bad Request: can't parse entities\)/);
    expect(h.audit().at(-1)).toMatchObject({
      outcome: 'error',
      error: "reply not delivered: sendMessage 400 Bad Request: can't parse entities",
      note: 'sent a short fallback instead',
    });
  });

  test('a long answer is split into several messages Telegram accepts', async () => {
    const long = defineTool({
      name: 'manager-tick',
      title: 'Manager tick (long answer)',
      description: 'Answers with a long report.',
      tier: 'write',
      annotations: { readOnlyHint: false },
      input: z.object({}).passthrough(),
      output: z.object({}).passthrough(),
      handler: () => ({ data: {}, text: Array.from({ length: 300 }, (_, i) => `line ${i} 😀 ${'z'.repeat(20)}`).join('\n') }),
    });
    h = await startHarness({ extraTools: [long] });
    const reply = await h.say(WRITE_CHAT, '/tick');
    expect(reply.replies.length).toBe(3);
    expect(reply.replies[0]).toMatch(/^line 0 😀/);
    expect(reply.replies.join('\n')).toContain('line 299 😀');
    for (const r of reply.replies) expect(r).not.toMatch(LONE_SURROGATE);
  });
});

describe('chats do not wait for each other', () => {
  test('another chat is answered while a slow /tick runs; the ticking chat keeps its order', async () => {
    const started = gate();
    const release = gate();
    h = await startHarness({ extraTools: [slowTick(started.open, release.promise)] });
    h.tg.pushText({ chatId: WRITE_CHAT, text: '/tick' });
    h.tg.pushText({ chatId: WRITE_CHAT, text: '/help' });
    await started.promise;
    h.tg.pushText({ chatId: READ_CHAT, text: '/help' });
    // The read chat's answer arrives while the tick is still held.
    await h.tg.waitForMessages(READ_CHAT, 1);
    expect(h.tg.messagesTo(WRITE_CHAT)).toEqual([]);
    release.open();
    await h.tg.settled();
    const write = h.tg.messagesTo(WRITE_CHAT);
    expect(write[0]).toBe('tick done');
    expect(write[1]).toContain('This chat has write access.');
  });

  test('a flood from one chat gets one notice per window, and an admin is answered at once', async () => {
    h = await startHarness({ policy: { rate_limit_per_chat: 5, rate_limit_global: 1000, rate_limit_window_sec: 3600 } });
    for (let i = 0; i < 25; i++) h.tg.pushText({ chatId: READ_CHAT, text: '/help' });
    h.tg.pushText({ chatId: ADMIN_CHAT, text: '/help' });
    await h.tg.settled();
    const read = h.tg.messagesTo(READ_CHAT);
    expect(read).toHaveLength(6);
    expect(read.filter((m) => m.startsWith('Too many requests from this chat'))).toHaveLength(1);
    expect(h.tg.messagesTo(ADMIN_CHAT)).toHaveLength(1);
    const limited = h.audit().filter((e) => e.outcome === 'rate_limited');
    expect(limited).toHaveLength(20);
    expect(limited.filter((e) => e.note?.endsWith('notice already sent, no reply'))).toHaveLength(19);
  });

  test('a 429 with a retry_after over a minute is waited out and the reply still arrives', async () => {
    const waits: number[] = [];
    h = await startHarness({ sleep: async (ms) => void waits.push(ms) });
    h.tg.failNext('sendMessage', { error_code: 429, description: 'Too Many Requests: retry after 90', retry_after: 90 });
    const reply = await h.say(READ_CHAT, '/help');
    expect(waits).toEqual([90_000]);
    expect(reply.replies).toHaveLength(1);
    expect(reply.replies[0]).toContain('This chat has read access.');
    expect(h.audit().at(-1)).toMatchObject({ outcome: 'ok', error: null });
  });
});

describe('a second instance', () => {
  test('a 409 from getUpdates stops the instance with a clear message instead of answering', async () => {
    h = await startHarness({ manual: true });
    h.tg.conflictOnConcurrentPolls = true;
    const first = h.bot;
    const firstDone = first.start();
    await h.tg.waitFor(() => h!.tg.calls.filter((c) => c.method === 'getUpdates').length >= 1, 'the first poll');
    h.bot = h.newBot();
    void h.bot.start();
    await expect(firstDone).rejects.toThrow(PollConflictError);
    await expect(firstDone).rejects.toThrow(/another agentpr run-telegram-bot .* is polling this bot.*stop the other one/);
    const reply = await h.say(READ_CHAT, '/help');
    expect(reply.replies).toHaveLength(1);
    expect(h.audit().filter((e) => e.kind === 'poll' && e.error?.startsWith('getUpdates 409'))).toHaveLength(1);
  });

  test('an update another live instance is handling is not answered again, nor run twice', async () => {
    const started = gate();
    const release = gate();
    let ticks = 0;
    h = await startHarness({ extraTools: [slowTick(() => (ticks++, started.open()), release.promise)] });
    const update = h.tg.pushText({ chatId: WRITE_CHAT, text: '/tick' });
    await started.promise;
    const second = h.newBot();
    const entry = await second.handleUpdate(update as Parameters<typeof second.handleUpdate>[0]);
    expect(entry.note).toMatch(/is being handled by another instance/);
    release.open();
    await h.tg.settled();
    expect(ticks).toBe(1);
    expect(h.tg.messagesTo(WRITE_CHAT)).toEqual(['tick done']);
  });
});

describe('groups', () => {
  const GROUP = -1_001_234_567_890;
  test('in an admin-listed group, write and admin actions need the sender on a list too', async () => {
    h = await startHarness({ access: { read: [READ_CHAT], write: [WRITE_CHAT], admin: [ADMIN_CHAT, GROUP] } });
    const run = h.run();
    h.tg.pushText({ chatId: GROUP, userId: 777, text: `/pause ${run.run_id}` });
    await h.tg.settled();
    expect(h.tg.messagesTo(GROUP)).toEqual(['Not allowed: pause is a write-tier tool and this chat has read access.']);
    expect(h.app.service.getRun(run.run_id).state).toBe('QUEUED');
    expect(h.audit().at(-1)).toMatchObject({ outcome: 'unauthorized', chat_tier: 'admin', note: 'sender 777 is not on the admin list; read access in this group' });
    h.tg.pushText({ chatId: GROUP, userId: WRITE_CHAT, text: `/pause ${run.run_id}` });
    await h.tg.settled();
    expect(h.app.service.getRun(run.run_id).state).toBe('PAUSED');
    h.tg.pushText({ chatId: GROUP, userId: WRITE_CHAT, text: `/approve_pr ${run.run_id} tok_123` });
    await h.tg.settled();
    expect(h.approveCalls).toHaveLength(0);
    expect(h.tg.messagesTo(GROUP).at(-1)).toMatch(/^Not allowed: approve-open-pr is an admin-tier tool and this chat has write access/);
  });
});

describe('llm mode audit', () => {
  test("a refused model choice leaves the reason in the audit's error", async () => {
    llm = await startFakeOpenAI();
    h = await startHarness({ nlMode: 'llm', llm });
    llm.reply(toolCall('drop-database', { really: true }));
    await h.say(WRITE_CHAT, 'clean everything up');
    expect(h.audit().at(-1)).toMatchObject({
      route: 'llm',
      outcome: 'error',
      code: 'refused',
      error: expect.stringContaining("model's choice refused: the model chose 'drop-database', which was not offered"),
      note: 'model choice refused; nothing run',
    });
  });
});
