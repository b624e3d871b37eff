import { afterEach, describe, expect, test } from 'vitest';
import { ADMIN_CHAT, READ_CHAT, STRANGER, WRITE_CHAT, failRun, pushRun, startHarness, type Harness } from './harness.js';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

function eventsOf(harness: Harness, runId: string, type: string) {
  return harness.app.service.listEvents(runId).filter((e) => e.event_type === type);
}

describe('read tier', () => {
  test('/start and /help describe the chat tier and list only usable commands', async () => {
    h = await startHarness();
    const start = await h.say(READ_CHAT, '/start');
    expect(start.replies).toHaveLength(1);
    expect(start.replies[0]).toContain('This chat has read access.');
    expect(start.replies[0]).toContain('/list [STATE] [N] [pPAGE]');
    expect(start.replies[0]).not.toContain('/pause <run_id> -');
    expect(start.replies[0]).toMatch(/Needs more access: .*\/pause \(write\).*\/approve_pr \(admin\)/);

    const help = await h.say(ADMIN_CHAT, '/help');
    expect(help.replies[0]).toContain('This chat has admin access.');
    expect(help.replies[0]).toContain('/approve_pr <run_id> <token>');
    expect(help.replies[0]).toContain('/tick [run_id] [dry]');
    expect(help.replies[0]).toContain('PR approval is never done from plain text');
  });

  test('/list pages through runs with the policy page size', async () => {
    h = await startHarness({ policy: { list_limit: 5 } });
    const ids = Array.from({ length: 12 }, (_, i) => h!.run('octo', `repo${i}`).run_id);
    const first = await h.say(READ_CHAT, '/list');
    expect(first.replies[0]).toContain('Runs 1-5 of 12 (page 1/3)');
    expect(first.replies[0]).toContain('Next: /list p2');
    const last = await h.say(READ_CHAT, '/list p3');
    expect(last.replies[0]).toContain('Runs 11-12 of 12 (page 3/3)');
    expect(last.replies[0]).not.toContain('Next:');
    // every run appears on exactly one page
    const pages = [first.replies[0]!, (await h.say(READ_CHAT, '/list p2')).replies[0]!, last.replies[0]!].join('\n');
    for (const id of ids) expect(pages.split(id).length - 1).toBe(1);

    failRun(h.app, ids[0]!);
    const filtered = await h.say(READ_CHAT, '/list failed_retryable');
    expect(filtered.replies[0]).toContain(`Runs in FAILED_RETRYABLE 1-1 of 1`);
    expect(filtered.replies[0]).toContain(ids[0]);
    const bad = await h.say(READ_CHAT, '/list NOT_A_STATE');
    expect(bad.replies[0]).toMatch(/^Invalid input: .*state/);
  });

  test('/show and /status answer from show-run; a long error is cut under the 4096 limit', async () => {
    h = await startHarness();
    const run = h.run();
    failRun(h.app, run.run_id, `boom ${'x'.repeat(7000)}`);
    const status = await h.say(READ_CHAT, `/status ${run.run_id}`);
    expect(status.replies[0]).toMatch(new RegExp(`^${run.run_id} octo/demo: FAILED_RETRYABLE`));
    expect(status.replies[0]).toContain('next: DISCOVERY, IMPLEMENTING');
    expect(status.replies[0]).toContain(`… (/show ${run.run_id})`);
    expect(status.replies[0]!.length).toBeLessThan(600);

    const show = await h.say(READ_CHAT, `/show ${run.run_id}`);
    expect(show.replies[0]).toContain(`${run.run_id} octo/demo: FAILED_RETRYABLE`);
    expect(show.replies[0]!.length).toBeLessThanOrEqual(4096);
    expect(show.replies[0]).toContain('cut at 4000 characters; the CLI show-run prints everything');

    // a chat that has not talked about a run yet is asked which one
    const missing = await h.say(ADMIN_CHAT, '/show');
    expect(missing.replies[0]).toBe('Which run? Usage: /show [run_id]');
    const unknown = await h.say(READ_CHAT, '/status run_000000000000');
    expect(unknown.replies[0]).toContain("unknown run 'run_000000000000'");
    const malformed = await h.say(READ_CHAT, '/status Run#42');
    expect(malformed.replies[0]).toContain("run_id must be 'run_' followed by 12 hex digits");
  });

  test('/pending_pr lists PUSHED runs with their latest PR request; the token only for admins', async () => {
    h = await startHarness();
    const waiting = h.run('octo', 'waiting');
    pushRun(h.app, waiting.run_id);
    const requested = h.run('octo', 'requested');
    pushRun(h.app, requested.run_id);
    h.app.service.addArtifact(requested.run_id, {
      type: 'pr_open_request',
      uri: 'agentpr://pr-request/1',
      metadata: {
        title: 'Fix the parser',
        token: 'K7Q2ZX',
        expires_at: new Date(Date.now() + 3_600_000).toISOString(),
        gate: { ok: false, failed_checks: [{ code: 'missing_digest', message: 'no run_digest' }] },
      },
    });
    h.run('octo', 'queued');

    const read = await h.say(READ_CHAT, '/pending_pr');
    expect(read.replies[0]).toContain(`${waiting.run_id} octo/waiting: no PR request yet`);
    expect(read.replies[0]).toContain(`${requested.run_id} octo/requested: PR request "Fix the parser", expires`);
    expect(read.replies[0]).toContain('; gate blocks: missing_digest');
    expect(read.replies[0]).not.toContain('queued');
    expect(read.replies[0]).not.toContain('K7Q2ZX');

    const admin = await h.say(ADMIN_CHAT, '/pending_pr');
    expect(admin.replies[0]).toContain(`approve: /approve_pr ${requested.run_id} K7Q2ZX`);
  });
});

describe('write tier', () => {
  test('/pause, /resume and /retry change state through the tools; a read chat is refused and nothing changes', async () => {
    h = await startHarness();
    const run = h.run();

    const refused = await h.say(READ_CHAT, `/pause ${run.run_id}`);
    expect(refused.replies).toEqual(['Not allowed: pause is a write-tier tool and this chat has read access.']);
    expect(h.app.service.getRun(run.run_id).state).toBe('QUEUED');
    expect(eventsOf(h, run.run_id, 'command.pause')).toHaveLength(0);

    const paused = await h.say(WRITE_CHAT, `/pause ${run.run_id}`);
    expect(paused.replies[0]).toBe(`${run.run_id}: QUEUED -> PAUSED (command.pause)`);
    expect(h.app.service.getRun(run.run_id).state).toBe('PAUSED');

    const ask = await h.say(WRITE_CHAT, `/resume ${run.run_id}`);
    expect(ask.replies[0]).toContain(`Which state? ${run.run_id} is PAUSED; it can go to DISCOVERY`);
    expect(h.app.service.getRun(run.run_id).state).toBe('PAUSED');

    const resumed = await h.say(WRITE_CHAT, `/resume ${run.run_id} discovery`);
    expect(resumed.replies[0]).toBe(`${run.run_id}: PAUSED -> DISCOVERY (command.resume)`);

    const illegal = await h.say(WRITE_CHAT, `/retry ${run.run_id} DONE`);
    expect(illegal.replies[0]).toMatch(/^Refused: illegal transition DISCOVERY -> DONE/);

    h.app.service.applyEvent({
      run_id: run.run_id,
      event_type: 'worker.step.failed',
      payload: { step: 'prepare', reason_code: 'script_failed', error_message: 'clone failed' },
    });
    const retried = await h.say(ADMIN_CHAT, `/retry ${run.run_id} IMPLEMENTING`);
    expect(retried.replies[0]).toBe(`${run.run_id}: FAILED_RETRYABLE -> IMPLEMENTING (command.retry)`);

    const readRetry = await h.say(READ_CHAT, `/retry ${run.run_id} DISCOVERY`);
    expect(readRetry.replies[0]).toMatch(/^Not allowed: retry is a write-tier tool/);
  });

  test('/tick runs manager-tick (write) and is refused to a read chat', async () => {
    h = await startHarness();
    const run = h.run();
    h.app.service.applyEvent({ run_id: run.run_id, event_type: 'command.pause' });
    const refused = await h.say(READ_CHAT, '/tick');
    expect(refused.replies[0]).toBe('Not allowed: manager-tick is a write-tier tool and this chat has read access.');
    const tick = await h.say(WRITE_CHAT, `/tick ${run.run_id} dry`);
    expect(tick.replies).toHaveLength(1);
    expect(tick.replies[0]).toContain(run.run_id);
    const line = h.audit().find((e) => e.update_id === tick.update_id)!;
    expect(line).toMatchObject({ tool: 'manager-tick', tier: 'write', outcome: 'ok', args: { run_id: run.run_id, dry_run: true } });
  });
});

describe('admin tier', () => {
  test('/approve_pr goes to approve-open-pr with confirm:true only from an admin chat; the token stays out of the audit', async () => {
    h = await startHarness();
    const run = h.run();
    const fromWrite = await h.say(WRITE_CHAT, `/approve_pr ${run.run_id} SECRET42`);
    expect(fromWrite.replies[0]).toBe('Not allowed: approve-open-pr is an admin-tier tool and this chat has write access.');
    expect(h.approveCalls).toHaveLength(0);

    const approved = await h.say(ADMIN_CHAT, `/approve_pr ${run.run_id} SECRET42`);
    expect(approved.replies[0]).toBe(`approved ${run.run_id}`);
    expect(h.approveCalls).toEqual([{ args: { run_id: run.run_id, confirm_token: 'SECRET42', confirm: true }, actor: `telegram:${ADMIN_CHAT}`, entry: 'telegram' }]);

    const usage = await h.say(ADMIN_CHAT, `/approve_pr ${run.run_id}`);
    expect(usage.replies[0]).toMatch(/^Usage: \/approve_pr <run_id> <token>/);
    expect(h.approveCalls).toHaveLength(1);

    const lines = h.audit().filter((e) => e.command === '/approve_pr');
    expect(lines.map((l) => l.outcome)).toEqual(['unauthorized', 'ok', 'error']);
    expect(lines[1]).toMatchObject({ tool: 'approve-open-pr', tier: 'admin', args: { confirm_token: '[REDACTED]', confirm: true } });
    expect(JSON.stringify(h.audit())).not.toContain('SECRET42');
  });

  test('/approve_pr reaches the real approve-open-pr with its token field and confirm:true', async () => {
    h = await startHarness({ realApprove: true });
    const run = h.run();
    pushRun(h.app, run.run_id);
    const reply = await h.say(ADMIN_CHAT, `/approve_pr ${run.run_id} ab12cd`);
    // Input validation passed (token, confirm); the tool itself refuses: there is no request yet.
    expect(reply.replies).toEqual([
      `Invalid input: ${run.run_id} has no PR open request; create one with request-open-pr first\nUsage: /approve_pr <run_id> <token>`,
    ]);
    expect(h.audit().at(-1)).toMatchObject({ tool: 'approve-open-pr', tier: 'admin', args: { run_id: run.run_id, token: '[REDACTED]', confirm: true } });
    expect(h.app.service.getRun(run.run_id).state).toBe('PUSHED');
  });

  test('without the approve tool installed the reply says so cleanly', async () => {
    h = await startHarness({ omitTools: ['approve-open-pr'] });
    const reply = await h.say(ADMIN_CHAT, '/approve_pr run_0123456789ab ABC123');
    expect(reply.replies).toEqual(["/approve_pr is not available: the tool 'approve-open-pr' is not installed in this agentpr."]);
    expect(h.audit().at(-1)).toMatchObject({ outcome: 'error', code: 'unknown_tool', tool: 'approve-open-pr', tier: null });
    const help = await h.say(ADMIN_CHAT, '/help');
    expect(help.replies[0]).toContain('Not installed here: /approve_pr');
  });
});

describe('default deny', () => {
  test('a chat on no list gets one refusal, no tool runs, and later messages get no reply', async () => {
    h = await startHarness();
    const run = h.run();
    const first = await h.say(STRANGER, `/pause ${run.run_id}`);
    expect(first.replies).toEqual([`This chat (id ${STRANGER}) is not allowed to use this bot. Its operator can allow it with --allow-chat-id ${STRANGER}.`]);
    const second = await h.say(STRANGER, '/list');
    expect(second.replies).toEqual([]);
    await h.say(STRANGER, `pause ${run.run_id}`);
    expect(h.app.service.getRun(run.run_id).state).toBe('QUEUED');
    expect(h.app.service.listEvents(run.run_id)).toHaveLength(1);
    const lines = h.audit().filter((e) => e.chat_id === STRANGER);
    expect(lines).toHaveLength(3);
    for (const l of lines) expect(l).toMatchObject({ outcome: 'unauthorized', chat_tier: null, tool: null });
    expect(lines.map((l) => l.text)).toEqual([`/pause ${run.run_id}`, '/list', `pause ${run.run_id}`]);
  });

  test('--allow-any-chat gives read access only', async () => {
    h = await startHarness({ access: { any: true, write: [WRITE_CHAT] } });
    const run = h.run();
    const list = await h.say(STRANGER, '/list');
    expect(list.replies[0]).toContain(run.run_id);
    const pause = await h.say(STRANGER, `/pause ${run.run_id}`);
    expect(pause.replies[0]).toMatch(/^Not allowed/);
    const text = await h.say(STRANGER, `pause ${run.run_id}`);
    expect(text.replies[0]).toBe('Plain-text requests need write access; this chat has read access. /help lists the commands you can use.');
    expect(h.app.service.getRun(run.run_id).state).toBe('QUEUED');
  });

  test('unknown commands and commands for another bot', async () => {
    h = await startHarness();
    expect((await h.say(READ_CHAT, '/frobnicate')).replies).toEqual(['Unknown command /frobnicate. /help lists the commands.']);
    expect((await h.say(READ_CHAT, '/list@some_other_bot')).replies).toEqual([]);
    expect((await h.say(READ_CHAT, '/help@agentpr_test_bot')).replies[0]).toContain('read access');
  });

  test('a pre-call refusal (the doctor) is shown and changes nothing', async () => {
    h = await startHarness();
    const { RefusedError } = await import('../../src/registry.js');
    h.app.preCallHooks.push(() => {
      throw new RefusedError('pause refused by the startup doctor; nothing was changed. Failed checks:\n- codex: not found');
    });
    const run = h.run();
    const reply = await h.say(WRITE_CHAT, `/pause ${run.run_id}`);
    expect(reply.replies[0]).toContain('Refused before anything changed: pause refused by the startup doctor');
    expect(h.app.service.getRun(run.run_id).state).toBe('QUEUED');
    expect(h.audit().at(-1)).toMatchObject({ outcome: 'error', code: 'refused' });
  });
});
