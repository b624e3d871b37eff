import { afterEach, describe, expect, test } from 'vitest';
import { matchRules } from '../../src/telegram/rules.js';
import { errorReply, startFakeOpenAI, textReply, toolCall, type FakeOpenAI } from '../helpers/fake-openai.js';
import { ADMIN_CHAT, READ_CHAT, WRITE_CHAT, failRun, startHarness, type Harness } from './harness.js';

const RUN = 'run_0123456789ab';

describe('rules: keywords in English and Chinese', () => {
  const cases: Array<[string, string | null, string[]?]> = [
    ['help', 'help'],
    ['what can you do?', 'help'],
    ['帮助', 'help'],
    ['你能做什么', 'help'],
    ['list runs', 'list', []],
    ['show all runs page 2', 'list', ['p2']],
    ['list paused runs', 'list', ['PAUSED']],
    ['列出所有任务', 'list', []],
    ['列出暂停的任务', 'list', ['PAUSED']],
    [`status ${RUN}`, 'status', [RUN]],
    [`how is ${RUN.toUpperCase().replace('RUN_', 'run_')} doing`, 'status', [RUN]],
    [`${RUN} 状态`, 'status', [RUN]],
    [`查看 ${RUN} 详情`, 'show', [RUN]],
    [`show ${RUN}`, 'show', [RUN]],
    [`pause ${RUN}`, 'pause', [RUN]],
    [`暂停 ${RUN}`, 'pause', [RUN]],
    [`resume ${RUN} implementing`, 'resume', [RUN, 'IMPLEMENTING']],
    [`resume the paused run ${RUN} into discovery`, 'resume', [RUN, 'DISCOVERY']],
    [`继续 ${RUN} 实现`, 'resume', [RUN, 'IMPLEMENTING']],
    [`恢复 ${RUN}`, 'resume', [RUN]],
    [`retry ${RUN} from DISCOVERY`, 'retry', [RUN, 'DISCOVERY']],
    [`重试失败的 ${RUN}，从发现阶段开始`, 'retry', [RUN, 'DISCOVERY']],
    ['run the manager tick', 'tick', []],
    ['推进一下所有任务', 'tick', []],
    [`执行一轮 ${RUN}`, 'tick', [RUN]],
    ['pending PRs?', 'pending_pr', []],
    ['pause it', 'pause', []],
    ['the weather is nice', null],
    ['今天天气不错', null],
  ];
  test.each(cases)('%s', (text, name, args) => {
    const m = matchRules(text);
    if (name === null) {
      expect(m).toBeNull();
      return;
    }
    expect(m).toEqual({ kind: 'command', command: { name, args: args ?? [] } });
  });

  test.each([`approve ${RUN} ABC123`, `批准 ${RUN}`, 'open the PR for run_0123456789ab', `给 ${RUN} 开PR`])('approval is recognised only to be refused: %s', (text) => {
    expect(matchRules(text)).toEqual({ kind: 'approval' });
  });
});

let h: Harness | undefined;
let llm: FakeOpenAI | undefined;
afterEach(async () => {
  await h?.close();
  await llm?.close();
  h = undefined;
  llm = undefined;
});

describe('rules mode over the wire', () => {
  test('English and Chinese text run the same tools as the commands', async () => {
    h = await startHarness({ nlMode: 'rules' });
    const run = h.run();
    // A write from text waits for the same person's "yes".
    const offer = await h.say(WRITE_CHAT, `please pause ${run.run_id}`);
    expect(offer.replies).toEqual([`(as /pause ${run.run_id})\nReply "yes" (or 确认) within 120s to pause ${run.run_id}. Anything else cancels it; nothing has changed yet.`]);
    const paused = await h.say(WRITE_CHAT, 'yes');
    expect(paused.replies).toEqual([`${run.run_id}: QUEUED -> PAUSED (command.pause)`]);
    await h.say(WRITE_CHAT, `继续 ${run.run_id} 发现`);
    const resumed = await h.say(WRITE_CHAT, '确认');
    expect(resumed.replies[0]).toBe(`${run.run_id}: PAUSED -> DISCOVERY (command.resume)`);
    const status = await h.say(WRITE_CHAT, `${run.run_id} 状态怎么样`);
    expect(status.replies[0]).toContain(`${run.run_id} octo/demo: DISCOVERY`);
    const list = await h.say(WRITE_CHAT, '列出所有任务');
    expect(list.replies[0]).toContain('Runs 1-1 of 1');
    const help = await h.say(WRITE_CHAT, '帮助');
    expect(help.replies[0]).toContain('This chat has write access.');
    const unknown = await h.say(WRITE_CHAT, 'the weather is nice');
    expect(unknown.replies[0]).toMatch(/^I did not understand that/);
    const lines = h.audit();
    expect(lines.filter((l) => l.kind === 'text').map((l) => [l.route, l.tool])).toEqual([
      ['rules', null],
      ['rules', 'pause'],
      ['rules', null],
      ['rules', 'resume'],
      ['rules', 'show-run'],
      ['rules', 'list-runs'],
      ['rules', null],
      ['rules', null],
    ]);
  });

  test('plain text from a read-only chat is refused; approval from text is refused even for admins', async () => {
    h = await startHarness({ nlMode: 'rules' });
    const run = h.run();
    const read = await h.say(READ_CHAT, `pause ${run.run_id}`);
    expect(read.replies[0]).toMatch(/^Plain-text requests need write access/);
    const approve = await h.say(ADMIN_CHAT, `approve ${run.run_id} TOKEN99`);
    expect(approve.replies).toEqual(['PR approval is never done from plain text. An admin chat approves with /approve_pr <run_id> <token> (see /pending_pr).']);
    expect(h.approveCalls).toHaveLength(0);
    expect(h.audit().at(-1)).toMatchObject({ outcome: 'unauthorized', tool: null, note: 'approval requested in plain text', text: '[approval request in plain text; redacted]' });
    expect(JSON.stringify(h.audit())).not.toContain('TOKEN99');
    expect(h.app.service.getRun(run.run_id).state).toBe('QUEUED');
  });
});

describe('llm mode', () => {
  test('the model chooses a tool from the chat tier, never admin or approval; a write is echoed before it runs', async () => {
    llm = await startFakeOpenAI();
    h = await startHarness({ nlMode: 'llm', llm });
    const run = h.run();
    llm.reply(toolCall('pause', { run_id: run.run_id }));
    const offer = await h.say(ADMIN_CHAT, 'please put the demo run on hold');
    expect(offer.replies).toEqual([`Reply "yes" (or 确认) within 120s to pause ${run.run_id}. Anything else cancels it; nothing has changed yet.`]);
    const reply = await h.say(ADMIN_CHAT, 'yes');
    expect(reply.replies).toEqual([`${run.run_id}: QUEUED -> PAUSED (command.pause)`]);
    const sent = llm.requests[0]!.body;
    expect(sent.model).toBe('fake-model-1');
    expect(sent.messages.at(-1)).toEqual({ role: 'user', content: 'please put the demo run on hold' });
    const names = sent.tools!.map((t) => t.function.name);
    expect(names).toContain('pause');
    expect(names).toContain('list-runs');
    expect(names).not.toContain('approve-open-pr');
    const pause = sent.tools!.find((t) => t.function.name === 'pause')!;
    expect(Object.keys(pause.function.parameters!.properties as object)).toEqual(['run_id']);
    expect(names.sort()).toEqual(['inspect-run', 'list-runs', 'manager-tick', 'pause', 'resume', 'retry', 'show-run']);
    expect(h.audit().at(-1)).toMatchObject({ tool: 'pause', tier: 'write', outcome: 'ok', chat_tier: 'admin' });
  });

  test('a read chosen by the model runs without an echo', async () => {
    llm = await startFakeOpenAI();
    h = await startHarness({ nlMode: 'llm', llm });
    const run = h.run();
    llm.reply(toolCall('show-run', { run_id: run.run_id }));
    const reply = await h.say(WRITE_CHAT, 'what is going on with the demo run');
    expect(reply.replies).toHaveLength(1);
    expect(reply.replies[0]).toContain(`${run.run_id} octo/demo: QUEUED`);
  });

  test('approval chosen by the model is refused and nothing runs', async () => {
    llm = await startFakeOpenAI();
    h = await startHarness({ nlMode: 'llm', llm });
    const run = h.run();
    llm.reply(toolCall('approve-open-pr', { run_id: run.run_id, confirm_token: 'X', confirm: true }));
    const reply = await h.say(ADMIN_CHAT, 'ship it for the demo run please');
    expect(reply.replies[0]).toMatch(/^The model's choice was refused, nothing was done: the model chose 'approve-open-pr', which was not offered/);
    expect(h.approveCalls).toHaveLength(0);
    expect(h.audit().at(-1)).toMatchObject({ route: 'llm', tool: null, outcome: 'error' });
  });

  test('invalid model arguments are refused by the registry validation; skip_doctor is never accepted from the model', async () => {
    llm = await startFakeOpenAI();
    h = await startHarness({ nlMode: 'llm', llm });
    const run = h.run();
    llm.reply(toolCall('retry', { run_id: run.run_id, target_state: 'LATER' }));
    const bad = await h.say(WRITE_CHAT, 'retry the demo run later');
    // From text, retry goes to the rules' target whatever the model said; a QUEUED run is not retried.
    expect(bad.replies.at(-1)).toMatch(/^the rules would not retry run_\w+ now \(QUEUED: .*\); nothing was done/);
    llm.reply(toolCall('pause', { run_id: run.run_id, skip_doctor: true }));
    const skip = await h.say(WRITE_CHAT, 'pause the demo run, skip checks');
    expect(skip.replies).toEqual([`The model's choice was refused, nothing was done: the model set 'skip_doctor' for pause, which this caller does not allow`]);
    llm.reply(toolCall('pause', '{"run_id": '));
    const broken = await h.say(WRITE_CHAT, 'pause the demo run');
    expect(broken.replies[0]).toContain('are not valid JSON');
    expect(h.app.service.getRun(run.run_id).state).toBe('QUEUED');
  });

  test('the model answering without a tool, and the model failing, are both reported', async () => {
    llm = await startFakeOpenAI();
    h = await startHarness({ nlMode: 'llm', llm });
    llm.reply(textReply('Hello! Ask me about your runs.'));
    expect((await h.say(WRITE_CHAT, 'hi there')).replies).toEqual(['Hello! Ask me about your runs.']);
    llm.reply(errorReply(500, 'the model is overloaded'));
    const failed = await h.say(WRITE_CHAT, 'list runs');
    expect(failed.replies[0]).toMatch(/^The language model is unavailable \(.*overloaded.*\); nothing was done\. Commands still work: \/help\.$/);
    expect(h.audit().at(-1)).toMatchObject({ route: 'llm', outcome: 'error', tool: null });
  });
});

describe('hybrid mode', () => {
  test('uses the model first and falls back to the rules when it errors or picks nothing', async () => {
    llm = await startFakeOpenAI();
    h = await startHarness({ nlMode: 'hybrid', llm });
    const run = h.run();

    llm.reply(errorReply(503, 'service unavailable'));
    const fallback = await h.say(WRITE_CHAT, `pause ${run.run_id}`);
    expect(fallback.replies[0]).toContain(`Reply "yes" (or 确认) within 120s to pause ${run.run_id}.`);
    expect(h.audit().at(-1)!.note).toMatch(/^llm failed: .*; fell back to rules; awaiting confirmation: pause run_\w+$/);
    expect((await h.say(WRITE_CHAT, 'yes')).replies).toEqual([`${run.run_id}: QUEUED -> PAUSED (command.pause)`]);
    expect(h.audit().at(-1)).toMatchObject({ route: 'rules', tool: 'pause', outcome: 'ok' });

    llm.reply(textReply('不太确定你的意思'));
    await h.say(WRITE_CHAT, `继续 ${run.run_id} 发现`);
    expect(h.audit().at(-1)!.note).toBe('llm chose no tool; fell back to rules; awaiting confirmation: resume run_' + run.run_id.slice(4) + ' to DISCOVERY');
    const none = await h.say(WRITE_CHAT, '确认');
    expect(none.replies[0]).toContain(`${run.run_id}: PAUSED -> DISCOVERY`);

    llm.reply(toolCall('list-runs', { state: 'DISCOVERY' }));
    const byModel = await h.say(WRITE_CHAT, 'which runs are exploring right now?');
    expect(byModel.replies[0]).toContain(run.run_id);
    expect(h.audit().at(-1)).toMatchObject({ route: 'llm', tool: 'list-runs' });

    llm.reply(toolCall('approve-open-pr', { run_id: run.run_id, confirm_token: 'X', confirm: true }));
    const ship = await h.say(ADMIN_CHAT, 'ship the demo run');
    expect(ship.replies[0]).toMatch(/^I did not understand that/);
    expect(h.approveCalls).toHaveLength(0);
    expect(h.audit().at(-1)!.note).toContain("llm choice refused: the model chose 'approve-open-pr', which was not offered");
    expect(llm.requests).toHaveLength(4);
  });

  test('a model that does not answer in time falls back to the rules', async () => {
    llm = await startFakeOpenAI();
    h = await startHarness({ nlMode: 'hybrid', llm, llmTimeoutSec: 1 });
    const run = h.run();
    llm.reply({ kind: 'hang' });
    const reply = await h.say(WRITE_CHAT, `status ${run.run_id}`);
    expect(reply.replies[0]).toContain(`${run.run_id} octo/demo: QUEUED`);
    expect(h.audit().at(-1)!.note).toMatch(/^llm failed: .*timed out.*; fell back to rules$/i);
  });

  test('text that asks for approval never reaches the model', async () => {
    llm = await startFakeOpenAI();
    h = await startHarness({ nlMode: 'hybrid', llm });
    const run = h.run();
    failRun(h.app, run.run_id);
    const reply = await h.say(ADMIN_CHAT, `approve ${run.run_id} K7Q2ZX`);
    expect(reply.replies[0]).toMatch(/^PR approval is never done from plain text/);
    expect(llm.requests).toHaveLength(0);
  });
});
