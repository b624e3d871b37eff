import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { dbFingerprint } from '../helpers/db.js';
import { connectInMemory, resourceText, textOf, useInMemoryClient, type ToolCallResult } from '../helpers/mcp.js';

const ctx = useInMemoryClient({ per: 'each' });

/** A contract file below the data home (path inputs from MCP must lie below the allowed roots). */
function contractFile(): string {
  mkdirSync(join(ctx.app.config.home, 'contracts'), { recursive: true });
  const path = join(ctx.app.config.home, 'contracts', 'c.md');
  writeFileSync(path, '# contract\n');
  return path;
}

const call = async (name: string, args: Record<string, unknown>) =>
  (await ctx.client.callTool({ name, arguments: args })) as ToolCallResult;

describe('MCP over the in-memory transport', () => {
  test('drives a run through the command tools with structured results', async () => {
    const created = await call('create-run', { owner: 'octo', repo: 'hello' });
    expect(created.isError).toBeFalsy();
    const runId = (created.structuredContent!.run as { run_id: string }).run_id;
    expect(textOf(created)).toContain(`created ${runId} for octo/hello in QUEUED`);
    const workspace = (created.structuredContent!.run as { workspace_dir: string }).workspace_dir;
    mkdirSync(join(workspace, 'contracts'), { recursive: true });
    writeFileSync(join(workspace, 'contracts', 'c.md'), '# contract\n');

    const steps: Array<[string, Record<string, unknown>, string]> = [
      ['start-discovery', {}, 'DISCOVERY'],
      ['mark-plan-ready', { contract_path: contractFile() }, 'PLAN_READY'],
      ['start-implementation', {}, 'IMPLEMENTING'],
      ['mark-local-validated', {}, 'LOCAL_VALIDATING'],
      ['apply-event', { event_type: 'worker.push.completed', payload: { branch: 'feature/x' } }, 'PUSHED'],
      ['link-pr', { pr_number: 42 }, 'CI_WAIT'],
      ['record-check', { conclusion: 'failure', pr_number: 42 }, 'ITERATING'],
      ['start-implementation', {}, 'IMPLEMENTING'],
      ['pause', {}, 'PAUSED'],
      ['resume', { target_state: 'CI_WAIT' }, 'CI_WAIT'],
      ['record-check', { conclusion: 'success', pr_number: 42 }, 'REVIEW_WAIT'],
      ['record-review', { state: 'changes_requested' }, 'ITERATING'],
      ['retry', { target_state: 'LOCAL_VALIDATING' }, 'FAILED_RETRYABLE'],
    ];
    for (const [tool, args, expected] of steps) {
      const r = await call(tool, { run_id: runId, ...args });
      if (tool === 'retry') {
        // ITERATING -> LOCAL_VALIDATING is allowed, so the run moves there; show the real state instead.
        expect(r.isError).toBeFalsy();
        expect(r.structuredContent!.state).toBe('LOCAL_VALIDATING');
        continue;
      }
      expect(r.isError, `${tool}: ${textOf(r)}`).toBeFalsy();
      expect(r.structuredContent!.state).toBe(expected);
    }
    const shown = await call('show-run', { run_id: runId });
    const data = shown.structuredContent as { run: { state: string; pr_number: number }; artifacts: Array<{ artifact_type: string }> };
    expect(data.run).toMatchObject({ state: 'LOCAL_VALIDATING', pr_number: 42 });
    expect(data.artifacts.map((a) => a.artifact_type)).toEqual(['contract', 'branch']);
  });

  test('a blind resend is a duplicate, the same command later applies again', async () => {
    const runId = ((await call('create-run', { owner: 'octo', repo: 'hello' })).structuredContent!.run as { run_id: string }).run_id;
    const a = await call('apply-event', { run_id: runId, event_type: 'command.start.discovery' });
    const b = await call('apply-event', { run_id: runId, event_type: 'command.start.discovery' });
    expect(a.structuredContent).toMatchObject({ duplicate: false, state: 'DISCOVERY' });
    expect(b.structuredContent).toMatchObject({ duplicate: true, state: 'DISCOVERY' });
    expect(textOf(b)).toContain('duplicate');
    // pause, resume, pause: the second pause is a new command, not a duplicate of the first.
    await call('pause', { run_id: runId });
    await call('resume', { run_id: runId, target_state: 'DISCOVERY' });
    const again = await call('pause', { run_id: runId });
    expect(again.structuredContent).toMatchObject({ duplicate: false, state: 'PAUSED' });
    const explicit1 = await call('pause', { run_id: runId, idempotency_key: 'ui-click-1' });
    const explicit2 = await call('pause', { run_id: runId, idempotency_key: 'ui-click-1' });
    expect(explicit1.structuredContent).toMatchObject({ duplicate: false });
    expect(explicit2.structuredContent).toMatchObject({ duplicate: true });
  });

  test.each([
    ['unknown run', 'pause', { run_id: 'run_000000000000' }, /unknown run 'run_000000000000'/],
    ['malformed run id', 'pause', { run_id: '../Nope' }, /run_id must be 'run_' followed by 12 hex digits .* or a name of lower-case letters/],
    ['unknown event type', 'apply-event', { run_id: 'RUN', event_type: 'bogus.event' }, /event_type: 'bogus.event' is not allowed; allowed: command.start.discovery/],
    ['illegal transition', 'mark-done', { run_id: 'RUN' }, /illegal transition QUEUED -> DONE/],
    ['wrong type', 'link-pr', { run_id: 'RUN', pr_number: 'forty-two' }, /pr_number/],
    ['missing field', 'resume', { run_id: 'RUN' }, /target_state/],
    ['oversized string', 'create-run', { owner: 'octo', repo: 'x'.repeat(5000) }, /repo/],
    ['unknown field', 'pause', { run_id: 'RUN', reason: 'lunch' }, /reason/],
    ['bad state name', 'list-runs', { state: 'SLEEPING' }, /state/],
  ])('bad input (%s) is an isError result and changes nothing', async (_label, tool, args, pattern) => {
    const runId = ((await call('create-run', { owner: 'octo', repo: 'hello' })).structuredContent!.run as { run_id: string }).run_id;
    const before = dbFingerprint(ctx.app.db);
    const resolved = Object.fromEntries(Object.entries(args).map(([k, v]) => [k, v === 'RUN' ? runId : v]));
    const r = await call(tool, resolved);
    expect(r.isError).toBe(true);
    expect(textOf(r)).toMatch(pattern);
    expect(dbFingerprint(ctx.app.db)).toBe(before);
  });

  test('list-runs filters by state and repo and paginates', async () => {
    for (let i = 0; i < 5; i++) await call('create-run', { owner: 'octo', repo: `r${i % 2}` });
    const page1 = await call('list-runs', { repo: 'r0', limit: 2 });
    expect(page1.structuredContent).toMatchObject({ total: 3, next_offset: 2 });
    const page2 = await call('list-runs', { repo: 'r0', limit: 2, offset: 2 });
    expect(page2.structuredContent).toMatchObject({ total: 3, next_offset: null });
    expect((page2.structuredContent!.runs as unknown[]).length).toBe(1);
    const paused = await call('list-runs', { state: ['PAUSED'] });
    expect(paused.structuredContent).toMatchObject({ total: 0 });
  });

  test('resources: runs, a run, its events; templates are listable', async () => {
    const runId = ((await call('create-run', { owner: 'octo', repo: 'hello' })).structuredContent!.run as { run_id: string }).run_id;
    await call('start-discovery', { run_id: runId });
    const templates = await ctx.client.listResourceTemplates();
    expect(templates.resourceTemplates.map((t) => t.uriTemplate)).toEqual(expect.arrayContaining(['agentpr://runs/{run_id}', 'agentpr://runs/{run_id}/events']));
    const listed = await ctx.client.listResources();
    expect(listed.resources.map((r) => r.uri)).toEqual(expect.arrayContaining(['agentpr://runs', `agentpr://runs/${runId}`, `agentpr://runs/${runId}/events`]));
    const events = JSON.parse(resourceText(await ctx.client.readResource({ uri: `agentpr://runs/${runId}/events` }))) as { events: Array<{ event_type: string }> };
    expect(events.events.map((e) => e.event_type)).toEqual(['command.run.create', 'command.start.discovery']);
    const one = JSON.parse(resourceText(await ctx.client.readResource({ uri: `agentpr://runs/${runId}` }))) as { run: { state: string } };
    expect(one.run.state).toBe('DISCOVERY');
    await expect(ctx.client.readResource({ uri: 'agentpr://runs/run_000000000000' })).rejects.toThrow(/unknown run/);
  });

  test('read-only mode lists no write or admin tool', async () => {
    const ro = await connectInMemory(ctx.app, { readOnly: true });
    const names = (await ro.client.listTools()).tools.map((t) => t.name);
    await ro.close();
    const { TOOLS } = await import('../../tools/index.js');
    const readNames = TOOLS.filter((t) => t.tier === 'read').map((t) => t.name).sort();
    expect(names.sort()).toEqual(readNames);
    expect(names).not.toContain('create-run');
    expect(names).toContain('list-runs');
  });
});
