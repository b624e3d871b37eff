import { afterEach, describe, expect, test } from 'vitest';
import { isConfirmation, isNegation, isQuestion } from '../../src/telegram/text-intent.js';
import { startFakeOpenAI, toolCall, type FakeOpenAI } from '../helpers/fake-openai.js';
import { ADMIN_CHAT, WRITE_CHAT, failRun, startHarness, type Harness } from '../telegram/harness.js';

let h: Harness | undefined;
let llm: FakeOpenAI | undefined;
afterEach(async () => {
  await h?.close();
  await llm?.close();
  h = undefined;
  llm = undefined;
});

const decisions = (runId: string) => h!.app.service.listDecisions(runId).length;

describe('chat questions and negations never write (rules mode)', () => {
  test.each([
    ['a question about progress, in Chinese', (id: string) => `${id} 推进得怎么样了？`],
    ['a question in English', (id: string) => `should I pause ${id}?`],
    ['a negation in English', (id: string) => `do not pause ${id}`],
    ['a negation in Chinese', (id: string) => `不要暂停 ${id}`],
    ['a Chinese question with 吗', (id: string) => `要暂停 ${id} 吗`],
  ])('%s', async (_what, text) => {
    h = await startHarness({ nlMode: 'rules' });
    const run = h.run();
    const reply = await h.say(WRITE_CHAT, text(run.run_id));
    expect(reply.replies[0]).toMatch(new RegExp(`^\\(as /(status|show) ${run.run_id}\\)`));
    expect(h.app.service.getRun(run.run_id).state).toBe('QUEUED');
    expect(decisions(run.run_id)).toBe(0);
    expect(h.audit().at(-1)).toMatchObject({ tool: 'show-run', tier: 'read' });
  });

  test('"what does tick do?" answers with help and runs no tick', async () => {
    h = await startHarness({ nlMode: 'rules' });
    const run = h.run();
    const reply = await h.say(WRITE_CHAT, 'what does tick do?');
    expect(reply.replies[0]).toContain('/tick');
    expect(decisions(run.run_id)).toBe(0);
  });

  test('classifiers', () => {
    for (const q of ['run_0123456789ab 推进得怎么样了？', 'what does tick do?', 'is it done', '可以暂停吗', 'why did it fail']) expect(isQuestion(q)).toBe(true);
    for (const n of ['do not pause it', "don't retry", 'never resume run_x', '别暂停', '不要重试']) expect(isNegation(n)).toBe(true);
    for (const w of ['pause run_0123456789ab', '暂停 run_0123456789ab', 'retry run_0123456789ab']) expect(isQuestion(w) || isNegation(w)).toBe(false);
    for (const y of ['yes', 'Yes!', 'confirm', '确认', '是']) expect(isConfirmation(y)).toBe(true);
    for (const n of ['yes, and also retry', 'no', 'yesterday']) expect(isConfirmation(n)).toBe(false);
  });
});

describe('a write from text needs the same person to confirm in time', () => {
  test('another person, another message, or a late yes confirms nothing', async () => {
    let now = 1_000_000;
    h = await startHarness({ nlMode: 'rules', now: () => now });
    const run = h.run();
    const offer = await h.say(WRITE_CHAT, `pause ${run.run_id}`);
    expect(offer.replies[0]).toContain(`Reply "yes" (or 确认) within 120s to pause ${run.run_id}`);
    expect(h.app.service.getRun(run.run_id).state).toBe('QUEUED');

    // Someone else in the same chat says yes: not their offer.
    h.tg.pushText({ chatId: WRITE_CHAT, userId: 77, text: 'yes' });
    await h.tg.settled();
    expect(h.app.service.getRun(run.run_id).state).toBe('QUEUED');
    // The offer is still the original person's; anything else cancels it.
    await h.say(WRITE_CHAT, 'list runs');
    await h.say(WRITE_CHAT, 'yes');
    expect(h.app.service.getRun(run.run_id).state).toBe('QUEUED');

    await h.say(WRITE_CHAT, `pause ${run.run_id}`);
    now += 121_000;
    const late = await h.say(WRITE_CHAT, 'yes');
    expect(late.replies[0]).toMatch(/^That confirmation came after 120s; nothing was done/);
    expect(h.app.service.getRun(run.run_id).state).toBe('QUEUED');

    await h.say(WRITE_CHAT, `暂停 ${run.run_id}`);
    const done = await h.say(WRITE_CHAT, '确认');
    expect(done.replies[0]).toBe(`${run.run_id}: QUEUED -> PAUSED (command.pause)`);
  });

  test('retry from text goes to the rules\' target, not the one in the text', async () => {
    h = await startHarness({ nlMode: 'rules' });
    const run = h.run();
    failRun(h.app, run.run_id);
    const offer = await h.say(WRITE_CHAT, `retry ${run.run_id} from LOCAL_VALIDATING`);
    expect(offer.replies[0]).toMatch(new RegExp(`to retry ${run.run_id} to (DISCOVERY|IMPLEMENTING)\\.`));
    await h.say(WRITE_CHAT, 'yes');
    expect(['DISCOVERY', 'IMPLEMENTING']).toContain(h.app.service.getRun(run.run_id).state);
  });

  test('a tick from text is a dry run', async () => {
    h = await startHarness({ nlMode: 'rules' });
    const run = h.run();
    await h.say(WRITE_CHAT, 'run the manager tick');
    expect(h.app.service.getRun(run.run_id).state).toBe('QUEUED');
    const ds = h.app.service.listDecisions(run.run_id);
    expect(ds.length).toBeGreaterThan(0);
    expect(ds.every((d) => d.dry_run)).toBe(true);
  });
});

describe('llm mode: a small curated tool set', () => {
  test('"close it out" cannot reach mark-done, apply-event cannot be chosen, seven tools are offered', async () => {
    llm = await startFakeOpenAI();
    h = await startHarness({ nlMode: 'llm', llm });
    const run = h.run();
    llm.reply(toolCall('mark-done', { run_id: run.run_id }));
    const done = await h.say(ADMIN_CHAT, 'close it out');
    expect(done.replies[0]).toMatch(/^The model's choice was refused, nothing was done: the model chose 'mark-done', which was not offered/);
    llm.reply(toolCall('apply-event', { run_id: run.run_id, event_type: 'command.mark.done' }));
    await h.say(ADMIN_CHAT, 'finish the demo run');
    llm.reply(toolCall('request-open-pr', { run_id: run.run_id, title: 'x', body_file: '/proc/self/environ' }));
    await h.say(ADMIN_CHAT, 'open a pull request with my environment as the body');
    expect(h.app.service.getRun(run.run_id).state).toBe('QUEUED');
    const offered = llm.requests[0]!.body.tools!.map((t) => t.function.name).sort();
    expect(offered).toEqual(['inspect-run', 'list-runs', 'manager-tick', 'pause', 'resume', 'retry', 'show-run']);
    const bytes = JSON.stringify(llm.requests[0]!.body.tools).length;
    expect(bytes).toBeLessThan(8000);
  });

  test('a model-chosen tick is dry and its path inputs are dropped', async () => {
    llm = await startFakeOpenAI();
    h = await startHarness({ nlMode: 'llm', llm });
    const run = h.run();
    llm.reply(toolCall('manager-tick', { run_id: run.run_id, prompt_file: '/etc/shadow' }));
    await h.say(WRITE_CHAT, 'tick the demo run');
    expect(h.audit().at(-1)!.args).toEqual({ run_id: run.run_id, dry_run: true });
    expect(h.app.service.getRun(run.run_id).state).toBe('QUEUED');
  });
});
