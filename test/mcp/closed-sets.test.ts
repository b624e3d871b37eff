import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { dbFingerprint } from '../helpers/db.js';
import { textOf, useInMemoryClient, type ToolCallResult } from '../helpers/mcp.js';
import { main } from '../../src/cli-main.js';
import { CHECK_CONCLUSIONS, REVIEW_STATES } from '../../src/core/events.js';

const ctx = useInMemoryClient({ per: 'each' });

const call = async (name: string, args: Record<string, unknown>) =>
  (await ctx.client.callTool({ name, arguments: args })) as ToolCallResult;

/** The CLI in-process against the same database: exit code and what it printed. */
async function cli(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await main(['--db', ctx.app.config.dbPath, '--home', ctx.app.config.home, '--skip-doctor', ...argv], {
    stdout: (t) => (stdout += t),
    stderr: (t) => (stderr += t),
  });
  return { code, stdout, stderr };
}

async function runIn(state: 'CI_WAIT' | 'DISCOVERY'): Promise<string> {
  const runId = ((await call('create-run', { owner: 'octo', repo: 'closed' })).structuredContent!.run as { run_id: string }).run_id;
  await call('start-discovery', { run_id: runId });
  if (state === 'DISCOVERY') return runId;
  const path = join(ctx.app.config.home, 'contract.md');
  writeFileSync(path, '# contract\n');
  for (const [tool, args] of [
    ['mark-plan-ready', { contract_path: path }],
    ['start-implementation', {}],
    ['mark-local-validated', {}],
    ['apply-event', { event_type: 'worker.push.completed', payload: { branch: 'b' } }],
    ['link-pr', { pr_number: 7 }],
  ] as const) {
    const r = await call(tool, { run_id: runId, ...args });
    expect(r.isError, textOf(r)).toBeFalsy();
  }
  return runId;
}

describe('closed sets are enums, and a wrong value is named with the allowed ones', () => {
  test('record-check --conclusion sucess is refused over MCP and the CLI with the same message; the run stays in CI_WAIT', async () => {
    const runId = await runIn('CI_WAIT');
    const before = dbFingerprint(ctx.app.db);
    const viaMcp = await call('record-check', { run_id: runId, conclusion: 'sucess' });
    expect(viaMcp.isError).toBe(true);
    const message = textOf(viaMcp);
    expect(message).toBe(`invalid input for record-check: conclusion: 'sucess' is not allowed; allowed: ${CHECK_CONCLUSIONS.join(', ')}`);
    const viaCli = await cli(['record-check', '--run-id', runId, '--conclusion', 'sucess']);
    expect(viaCli.code).toBe(1);
    expect(viaCli.stderr).toBe(`agentpr record-check: ${message}\n`);
    expect(dbFingerprint(ctx.app.db)).toBe(before);
    expect((await call('show-run', { run_id: runId })).structuredContent).toMatchObject({ run: { state: 'CI_WAIT' } });
  });

  test('the schemas MCP clients see list the allowed values', async () => {
    const { tools } = await ctx.client.listTools();
    const prop = (tool: string, field: string) =>
      (tools.find((t) => t.name === tool)!.inputSchema.properties as Record<string, { enum?: string[] }>)[field]!;
    expect(prop('record-check', 'conclusion').enum).toEqual([...CHECK_CONCLUSIONS]);
    expect(prop('record-review', 'state').enum).toEqual([...REVIEW_STATES]);
    expect(prop('apply-event', 'event_type').enum).toContain('command.pause');
    expect(prop('apply-event', 'event_type').enum).not.toContain('command.run.create');
  });

  test('record-review --state bogus and a free-text apply-event type are refused and change nothing', async () => {
    const runId = await runIn('CI_WAIT');
    const before = dbFingerprint(ctx.app.db);
    const review = await call('record-review', { run_id: runId, state: 'bogus' });
    expect(review.isError).toBe(true);
    expect(textOf(review)).toBe(`invalid input for record-review: state: 'bogus' is not allowed; allowed: ${REVIEW_STATES.join(', ')}`);
    const event = await call('apply-event', { run_id: runId, event_type: 'github.check.done' });
    expect(event.isError).toBe(true);
    expect(textOf(event)).toMatch(/^invalid input for apply-event: event_type: 'github.check.done' is not allowed; allowed: command.start.discovery, .*command.pause/);
    // The payload of a known type is checked the same way.
    const payload = await call('apply-event', { run_id: runId, event_type: 'github.check.completed', payload: { conclusion: 'sucess' } });
    expect(textOf(payload)).toContain("invalid payload for github.check.completed: conclusion: 'sucess' is not allowed; allowed: success");
    expect(dbFingerprint(ctx.app.db)).toBe(before);
  });

  test('list-runs --state NOPE names the value and the allowed states, over MCP and the CLI alike', async () => {
    const viaMcp = await call('list-runs', { state: 'NOPE' });
    expect(viaMcp.isError).toBe(true);
    expect(textOf(viaMcp)).toMatch(/^invalid input for list-runs: state: 'NOPE' is not allowed; allowed: QUEUED, DISCOVERY, .*DONE/);
    const viaCli = await cli(['list-runs', '--state', 'NOPE']);
    expect(viaCli.code).toBe(1);
    expect(viaCli.stderr).toBe(`agentpr list-runs: ${textOf(viaMcp)}\n`);
  });

  test('other invalid values are named too (range, type, unknown field)', async () => {
    const r = await call('list-runs', { limit: 0, colour: 'red' });
    expect(textOf(r)).toContain('invalid input for list-runs: ');
    expect(textOf(r)).toContain("unknown field 'colour'");
    expect(textOf(r)).toMatch(/limit: .*got 0/);
    expect(textOf(r)).not.toContain('Input validation error');
  });

  test('mark-plan-ready refuses a contract file that does not exist, and stores a relative one absolute', async () => {
    const runId = await runIn('DISCOVERY');
    const before = dbFingerprint(ctx.app.db);
    const absent = join(ctx.app.config.home, 'nonexistent', 'contract.md');
    const missing = await call('mark-plan-ready', { run_id: runId, contract_path: absent });
    expect(missing.isError).toBe(true);
    expect(textOf(missing)).toMatch(/contract_path: .*nonexistent\/contract\.md (is not a file|does not exist)/);
    expect(dbFingerprint(ctx.app.db)).toBe(before);
    const workspace = ((await call('show-run', { run_id: runId })).structuredContent!.run as { workspace_dir: string }).workspace_dir;
    mkdirSync(join(workspace, 'docs'), { recursive: true });
    writeFileSync(join(workspace, 'docs', 'plan.md'), '# plan\n');
    const ok = await call('mark-plan-ready', { run_id: runId, contract_path: 'docs/plan.md' });
    expect(ok.isError, textOf(ok)).toBeFalsy();
    const shown = (await call('show-run', { run_id: runId })).structuredContent as { artifacts: Array<{ artifact_type: string; uri: string }> };
    expect(shown.artifacts.find((a) => a.artifact_type === 'contract')!.uri).toBe(join(workspace, 'docs', 'plan.md'));
  });

  test('a blind resend of a named command is a duplicate and adds no event; after the run moved on it applies again', async () => {
    const runId = await runIn('DISCOVERY');
    const first = await call('pause', { run_id: runId });
    expect(first.structuredContent).toMatchObject({ duplicate: false, state: 'PAUSED' });
    const events = ctx.app.service.lastEventId(runId);
    const resend = await call('pause', { run_id: runId });
    expect(resend.structuredContent).toMatchObject({ duplicate: true, state: 'PAUSED' });
    expect(ctx.app.service.lastEventId(runId)).toBe(events);
    expect((await call('resume', { run_id: runId, target_state: 'DISCOVERY' })).structuredContent).toMatchObject({ state: 'DISCOVERY' });
    const again = await call('pause', { run_id: runId });
    expect(again.structuredContent).toMatchObject({ duplicate: false, state: 'PAUSED' });
  });
});
