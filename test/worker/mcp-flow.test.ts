import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import type { Client } from '@modelcontextprotocol/client';
import { connectInMemory, textOf, type ToolCallResult } from '../helpers/mcp.js';
import { git, logOf } from '../helpers/git.js';
import { makeHarness, scenario, type Harness } from './harness.js';

/** Text of the first content of a resource read. */
async function readText(client: Client, uri: string): Promise<{ text: string; mimeType?: string }> {
  const c = (await client.readResource({ uri })).contents[0]!;
  if (!('text' in c)) throw new Error(`${uri} returned a blob`);
  return { text: c.text, mimeType: c.mimeType };
}

let h: Harness | undefined;
let close: (() => Promise<void>) | undefined;
afterEach(async () => {
  await close?.();
  await h?.cleanup();
  h = undefined;
  close = undefined;
});

async function connect(harness: Harness): Promise<Client> {
  const c = await connectInMemory(harness.app);
  close = c.close;
  return c.client;
}

describe('the worker through the real MCP client', () => {
  test('QUEUED -> DISCOVERY -> PLAN_READY -> IMPLEMENTING -> agent PASS -> LOCAL_VALIDATING -> PUSHED with a commit in the fork', async () => {
    h = makeHarness();
    const client = await connect(h);
    const call = async (name: string, args: Record<string, unknown>) => {
      const r = (await client.callTool({ name, arguments: args })) as ToolCallResult;
      expect(r.isError, `${name}: ${textOf(r)}`).toBeFalsy();
      return r.structuredContent!;
    };
    let listChanged = 0;
    client.setNotificationHandler('notifications/resources/list_changed', () => {
      listChanged++;
    });

    const runId = ((await call('create-run', { owner: 'octo', repo: 'demo' })).run as { run_id: string }).run_id;
    const changedBeforeDigest = listChanged;
    const prepared = await call('run-prepare', { run_id: runId });
    expect(prepared.state).toBe('DISCOVERY');
    const workspace = h.app.service.getRun(runId).workspace_dir;

    h.setEnv({ FAKE_CODEX_SCENARIO: scenario('discovery-smoke') });
    const discovery = await call('run-agent-step', { run_id: runId, prompt: 'Survey the repository and write the contract.' });
    expect(discovery).toMatchObject({ grade: 'PASS', state_after: 'DISCOVERY' });
    // A new digest changes the resource list.
    expect(listChanged).toBeGreaterThan(changedBeforeDigest);

    const contract = join(h.home, 'contract.md');
    await import('node:fs').then((fs) => fs.writeFileSync(contract, '# Contract\nAppend a greeting.\n'));
    expect((await call('mark-plan-ready', { run_id: runId, contract_path: contract })).state).toBe('PLAN_READY');
    expect((await call('start-implementation', { run_id: runId })).state).toBe('IMPLEMENTING');

    h.setEnv({ FAKE_CODEX_SCENARIO: scenario('implement-pass') });
    const progress: Array<{ progress: number; message?: string }> = [];
    const step = (await client.callTool(
      { name: 'run-agent-step', arguments: { run_id: runId, prompt: 'Append a greeting to src/greeting.txt and run the tests.' } },
      { onprogress: (p) => void progress.push(p) },
    )) as ToolCallResult;
    expect(step.isError, textOf(step)).toBeFalsy();
    expect(step.structuredContent).toMatchObject({ grade: 'PASS', reason_code: 'runtime_success', state_before: 'IMPLEMENTING', state_after: 'LOCAL_VALIDATING', attempt_no: 2 });
    expect(textOf(step)).toContain('agent#2 PASS runtime_success');
    expect(progress.length).toBeGreaterThanOrEqual(2);
    expect(progress.some((p) => p.message?.includes('latest command: npm test'))).toBe(true);
    expect(readFileSync(join(workspace, 'src/greeting.txt'), 'utf8')).toBe('hello\nhello, agentpr\n');

    const finished = await call('run-finish', { run_id: runId, changes: 'Add the agentpr greeting' });
    expect(finished.state).toBe('PUSHED');
    const branch = git(workspace, ['rev-parse', '--abbrev-ref', 'HEAD']);
    const log = logOf(h.forge.forkDir, branch);
    expect(log[0]!.subject).toMatch(/agentpr greeting/i);
    expect(git(h.forge.forkDir, ['show', `${branch}:src/greeting.txt`])).toBe('hello\nhello, agentpr');
    // The runtime dir was never committed.
    expect(git(h.forge.forkDir, ['ls-tree', '-r', '--name-only', branch])).not.toContain('.agentpr_runtime');

    // Digest and insight resources: latest, and one attempt back.
    const listed = await client.listResources();
    expect(listed.resources.map((r) => r.uri)).toEqual(expect.arrayContaining([`agentpr://runs/${runId}/digest`, `agentpr://runs/${runId}/insight`]));
    const latest = JSON.parse((await readText(client, `agentpr://runs/${runId}/digest`)).text) as {
      attempt: { no: number };
      classification: { grade: string };
      state: { before: string; after: string };
    };
    expect(latest).toMatchObject({ attempt: { no: 2 }, classification: { grade: 'PASS' }, state: { before: 'IMPLEMENTING', after: 'LOCAL_VALIDATING' } });
    const first = JSON.parse((await readText(client, `agentpr://runs/${runId}/digest?attempt=1`)).text) as { attempt: { no: number }; state: { before: string } };
    expect(first).toMatchObject({ attempt: { no: 1 }, state: { before: 'DISCOVERY' } });
    const insight = await readText(client, `agentpr://runs/${runId}/insight`);
    expect(insight.mimeType).toBe('text/markdown');
    expect(insight.text).toContain('PASS');
    await expect(client.readResource({ uri: `agentpr://runs/${runId}/digest?attempt=9` })).rejects.toThrow(/no run digest for attempt 9; attempts with one: 1, 2/);

    // inspect-run sees the whole story.
    const inspected = await call('inspect-run', { run_id: runId });
    const timeline = (inspected.timeline as Array<{ summary: string }>).map((t) => t.summary);
    expect(timeline.some((s) => s.startsWith('command.local.validation.passed'))).toBe(true);
    expect(timeline.some((s) => s.startsWith('worker.push.completed'))).toBe(true);
    expect(inspected.stage_totals).toMatchObject({ agent: { attempts: 2, succeeded: 2 }, prepare: { attempts: 1 }, finish: { attempts: 1 } });
    expect(inspected.latest).toMatchObject({ attempt_no: 2, grade: 'PASS', recommendation: { action: 'advance' } });
  });

  test('a refusal comes back as an isError result naming the reason', async () => {
    h = makeHarness();
    const client = await connect(h);
    const created = (await client.callTool({ name: 'create-run', arguments: { owner: 'octo', repo: 'demo', workspace_dir: join(h.tmp, 'outside') } })) as ToolCallResult;
    const runId = (created.structuredContent!.run as { run_id: string }).run_id;
    const r = (await client.callTool({ name: 'run-agent-step', arguments: { run_id: runId, prompt: 'x' } })) as ToolCallResult;
    expect(r.isError).toBe(true);
    expect(textOf(r)).toMatch(/^workspace_outside_root:/);
  });
});
