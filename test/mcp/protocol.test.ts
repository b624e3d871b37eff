import { describe, expect, test } from 'vitest';
import { connectInMemory, useInMemoryClient, type ToolCallResult } from '../helpers/mcp.js';
import { makeTestApp } from '../helpers/app.js';
import { TOOLS } from '../../tools/index.js';
import { TOOLSET_OF } from '../../src/mcp/toolsets.js';

const ctx = useInMemoryClient({ per: 'each' });

const call = async (name: string, args: Record<string, unknown>) =>
  (await ctx.client.callTool({ name, arguments: args })) as ToolCallResult;

async function newRun(owner = 'octo', repo = 'proto'): Promise<string> {
  const r = await call('create-run', { owner, repo });
  return (r.structuredContent!.run as { run_id: string }).run_id;
}

async function until(cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('MCP protocol features', () => {
  test('notifications/message: a step logs start and finish, worker events are forwarded, at the level the client set', async () => {
    const messages: Array<{ level: string; data: { message: string } }> = [];
    ctx.client.setNotificationHandler('notifications/message', (n) => {
      messages.push(n.params as { level: string; data: { message: string } });
    });
    await ctx.client.setLoggingLevel('info');
    const runId = await newRun();
    await until(() => messages.some((m) => m.data.message.startsWith('create-run finished')));
    expect(messages.map((m) => m.data.message)).toContain('create-run started');
    // A refused call is a warning.
    await call('mark-done', { run_id: runId });
    await until(() => messages.some((m) => m.level === 'warning' && m.data.message.startsWith('mark-done failed: illegal transition')));
    // A worker event (here a failed step) is forwarded as a warning even when another tool wrote it.
    await call('start-discovery', { run_id: runId });
    ctx.app.service.applyEvent({ run_id: runId, event_type: 'worker.step.failed', payload: { step: 'agent', reason_code: 'runtime_timeout', error_message: 'took too long' } });
    await until(() => messages.some((m) => m.level === 'warning' && m.data.message.includes('worker.step.failed (DISCOVERY -> FAILED_RETRYABLE)')));
    // At level error, info and warning messages stop.
    await ctx.client.setLoggingLevel('error');
    const count = messages.length;
    await newRun();
    await call('list-runs', {});
    await new Promise((r) => setTimeout(r, 200));
    expect(messages.length).toBe(count);
  });

  test('a subscription to a run sees its state change; an unsubscribed run does not notify', async () => {
    const runId = await newRun();
    const other = await newRun();
    const updated: string[] = [];
    ctx.client.setNotificationHandler('notifications/resources/updated', (n) => {
      updated.push(n.params.uri);
    });
    expect(ctx.client.getServerCapabilities()?.resources?.subscribe).toBe(true);
    await ctx.client.subscribeResource({ uri: `agentpr://runs/${runId}` });
    await call('start-discovery', { run_id: other });
    await call('start-discovery', { run_id: runId });
    await until(() => updated.includes(`agentpr://runs/${runId}`));
    expect(updated).not.toContain(`agentpr://runs/${other}`);
    await ctx.client.unsubscribeResource({ uri: `agentpr://runs/${runId}` });
    const seen = updated.length;
    await call('pause', { run_id: runId });
    await new Promise((r) => setTimeout(r, 200));
    expect(updated.length).toBe(seen);
  });

  test('resources/list is paginated with nextCursor; every entry comes exactly once', async () => {
    for (let i = 0; i < 130; i++) ctx.app.service.createRun({ owner: 'octo', repo: `r${i}` });
    const uris: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      // One page per request (the SDK client's listResources() would walk every page itself).
      const page = await ctx.client.request({ method: 'resources/list', params: cursor ? { cursor } : {} });
      expect(page.resources.length).toBeLessThanOrEqual(100);
      uris.push(...page.resources.map((r) => r.uri));
      cursor = page.nextCursor;
      pages++;
    } while (cursor);
    // agentpr://runs, the policy, the board's data and its ui:// view, and per run: the run and its events.
    expect(uris.length).toBe(4 + 130 * 2);
    expect(new Set(uris).size).toBe(uris.length);
    expect(pages).toBe(3);
    // The client's own walk sees the same entries.
    expect((await ctx.client.listResources()).resources.map((r) => r.uri)).toEqual(uris);
    await expect(ctx.client.listResources({ cursor: 'bogus' })).rejects.toThrow(/invalid cursor/);
  });

  test('an unknown run is resource-not-found (invalid params naming the uri), not an internal error', async () => {
    const err = await ctx.client.readResource({ uri: 'agentpr://runs/run_000000000000' }).catch((e: unknown) => e);
    // The SDK's resource-not-found: -32602 with data.uri (the client rebuilds a ResourceNotFoundError from it).
    expect(err).toMatchObject({ code: -32602, data: { uri: 'agentpr://runs/run_000000000000' } });
    expect(String((err as Error).message)).toContain("unknown run 'run_000000000000'");
    const digest = await ctx.client.readResource({ uri: `agentpr://runs/${await newRun()}/digest` }).catch((e: unknown) => e);
    expect(digest).toMatchObject({ code: -32602 });
    expect(String((digest as Error).message)).toContain('has no run digest yet');
  });

  test('prompts for the common jobs', async () => {
    const { prompts } = await ctx.client.listPrompts();
    expect(prompts.map((p) => p.name).sort()).toEqual(['review-digest', 'start-contribution', 'triage-run']);
    const runId = await newRun();
    const triage = await ctx.client.getPrompt({ name: 'triage-run', arguments: { run_id: runId } });
    const body = (triage.messages[0]!.content as { text: string }).text;
    expect(body).toContain(`inspect-run ${runId}`);
    const start = await ctx.client.getPrompt({ name: 'start-contribution', arguments: { owner: 'octo', repo: 'hello', task: 'fix the typo in README' } });
    expect((start.messages[0]!.content as { text: string }).text).toContain('create-run with owner=octo, repo=hello');
  });

  test('completions for run_id, owner, repo and state', async () => {
    const a = await newRun('octo', 'alpha');
    await newRun('octo', 'beta');
    await newRun('hubber', 'gamma');
    const values = async (ref: { type: 'ref/prompt'; name: string } | { type: 'ref/resource'; uri: string }, name: string, value: string, args?: Record<string, string>) =>
      (await ctx.client.complete({ ref, argument: { name, value }, ...(args ? { context: { arguments: args } } : {}) })).completion.values;
    expect(await values({ type: 'ref/prompt', name: 'triage-run' }, 'run_id', a.slice(0, 8))).toContain(a);
    expect(await values({ type: 'ref/resource', uri: 'agentpr://runs/{run_id}' }, 'run_id', a.slice(0, 10))).toEqual([a]);
    expect(await values({ type: 'ref/prompt', name: 'start-contribution' }, 'owner', 'oc')).toEqual(['octo']);
    expect((await values({ type: 'ref/prompt', name: 'start-contribution' }, 'repo', '', { owner: 'octo' })).sort()).toEqual(['alpha', 'beta']);
    expect(await values({ type: 'ref/prompt', name: 'triage-run' }, 'state', 'NEE')).toEqual(['NEEDS_HUMAN_REVIEW']);
  });
});

describe('toolsets and read-only', () => {
  test('every tool belongs to a toolset', () => {
    for (const t of TOOLS) expect(TOOLSET_OF[t.name], t.name).toBeDefined();
  });

  test('--toolsets github exposes only GitHub tools; with read-only, only their read tools', async () => {
    const t = makeTestApp();
    try {
      const gh = await connectInMemory(t.app, { toolsets: ['github'] });
      const names = (await gh.client.listTools()).tools.map((x) => x.name).sort();
      expect(names).toEqual(['approve-open-pr', 'cleanup-webhook-deliveries', 'record-check', 'record-pr-state', 'record-review', 'request-open-pr', 'sync-github', 'webhook-audit-summary']);
      await expect(gh.client.callTool({ name: 'create-run', arguments: { owner: 'o', repo: 'r' } })).rejects.toThrow(/create-run not found/);
      await gh.close();
      const ro = await connectInMemory(t.app, { toolsets: ['github', 'core'], readOnly: true });
      const roNames = (await ro.client.listTools()).tools.map((x) => x.name);
      expect(roNames).toContain('webhook-audit-summary');
      expect(roNames).toContain('list-runs');
      expect(roNames).not.toContain('record-check');
      expect(roNames).not.toContain('run-agent-step');
      await ro.close();
    } finally {
      await t.cleanup();
    }
  });
});
