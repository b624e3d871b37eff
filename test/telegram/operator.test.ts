import { afterEach, describe, expect, test } from 'vitest';
import { READ_CHAT, WRITE_CHAT, failRun, startHarness, type Harness } from './harness.js';

/** What the original bot's operators relied on: /list N, default targets, the chat's last run. */

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

describe('operator conveniences', () => {
  test('/list N shows N runs, pages with pN, and refuses a count out of range', async () => {
    h = await startHarness({ policy: { list_limit: 20 } });
    const ids = Array.from({ length: 7 }, (_, i) => h!.run('octo', `repo${i}`).run_id);
    const three = await h.say(READ_CHAT, '/list 3');
    expect(three.replies[0]).toContain('Runs 1-3 of 7 (page 1/3)');
    expect(three.replies[0]).toContain('Next: /list 3 p2');
    const last = await h.say(READ_CHAT, '/list 3 p3');
    expect(last.replies[0]).toContain('Runs 7-7 of 7 (page 3/3)');
    expect(last.replies[0]).toContain(ids[0]); // newest first: the oldest run is last
    const all = await h.say(READ_CHAT, '/list');
    expect(all.replies[0]).toContain('Runs 1-7 of 7 (page 1/1)');
    const tooMany = await h.say(READ_CHAT, '/list 500');
    expect(tooMany.replies[0]).toBe('/list shows 1 to 200 runs at a time, not 500. Usage: /list [STATE] [N] [pPAGE]');
    expect(h.audit().at(-1)).toMatchObject({ outcome: 'error', tool: null });
  });

  test('/resume without a state returns the run to the state it was paused in', async () => {
    h = await startHarness();
    const run = h.run();
    h.app.service.applyEvent({ run_id: run.run_id, event_type: 'command.start.discovery' });
    await h.say(WRITE_CHAT, `/pause ${run.run_id}`);
    const resumed = await h.say(WRITE_CHAT, `/resume ${run.run_id}`);
    expect(resumed.replies).toEqual([`(default target DISCOVERY: the state it was paused in)\n${run.run_id}: PAUSED -> DISCOVERY (command.resume)`]);
    expect(h.app.service.getRun(run.run_id).state).toBe('DISCOVERY');
    expect(h.audit().at(-1)).toMatchObject({ tool: 'resume', args: expect.objectContaining({ target_state: 'DISCOVERY' }), note: 'no state given; default DISCOVERY' });
  });

  test("/retry without a state goes where the manager's rules would send the run", async () => {
    h = await startHarness();
    const run = h.run();
    failRun(h.app, run.run_id); // failed in discovery: prepare never succeeded
    const retried = await h.say(WRITE_CHAT, `/retry ${run.run_id}`);
    expect(retried.replies[0]).toMatch(/^\(default target DISCOVERY: retryable failure .*\)\n/);
    expect(retried.replies[0]).toContain(`${run.run_id}: FAILED_RETRYABLE -> DISCOVERY (command.retry)`);
    expect(h.app.service.getRun(run.run_id).state).toBe('DISCOVERY');
  });

  test('a chat remembers the last run it talked about; other chats do not share it', async () => {
    h = await startHarness();
    const first = h.run('octo', 'one');
    const second = h.run('octo', 'two');
    await h.say(WRITE_CHAT, `/status ${first.run_id}`);
    await h.say(READ_CHAT, `/status ${second.run_id}`);
    const paused = await h.say(WRITE_CHAT, '/pause');
    expect(paused.replies).toEqual([`(${first.run_id}, the last run in this chat)\n${first.run_id}: QUEUED -> PAUSED (command.pause)`]);
    expect(h.app.service.getRun(second.run_id).state).toBe('QUEUED');
    const status = await h.say(READ_CHAT, '/status');
    expect(status.replies[0]).toContain(`${second.run_id} octo/two: QUEUED`);
    // a failed call does not become the chat's run
    await h.say(WRITE_CHAT, '/status run_000000000000');
    expect((await h.say(WRITE_CHAT, '/status')).replies[0]).toContain(`${first.run_id} octo/one: PAUSED`);
  });
});
