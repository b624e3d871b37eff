import { describe, expect, test } from 'vitest';
import { resourceText, useInMemoryClient, type ToolCallResult } from '../helpers/mcp.js';
import type { BoardSnapshot, RunPage } from '../../src/board/model.js';

const ctx = useInMemoryClient();
const UI = 'ui://agentpr/board.html';

describe('the board as an MCP App', () => {
  test('the ui:// resource is listed with the MCP Apps mime type and reads as one self-contained HTML file', async () => {
    const { resources } = await ctx.client.listResources();
    const ui = resources.find((r) => r.uri === UI);
    expect(ui).toMatchObject({ name: 'run-board', mimeType: 'text/html;profile=mcp-app', title: 'Run board' });

    const read = await ctx.client.readResource({ uri: UI });
    expect(read.contents[0]).toMatchObject({ uri: UI, mimeType: 'text/html;profile=mcp-app' });
    const html = resourceText(read);
    expect(html).toMatch(/^<!doctype html>/);
    // Nothing from a CDN or any other origin: the view works offline inside the host's sandbox.
    expect(html).not.toMatch(/<(script|link|img|iframe)[^>]+(src|href)="(https?:)?\/\//i);
    expect(html).not.toMatch(/@import|url\(\s*['"]?https?:/i);
    // It speaks the extension's handshake and reads the board through the host.
    expect(html).toContain("'ui/initialize'");
    expect(html).toContain("'ui/notifications/initialized'");
    expect(html).toContain("'agentpr://board'");
  });

  test('list-runs and inspect-run carry the UI metadata (current and older key); other tools none', async () => {
    const { tools } = await ctx.client.listTools();
    for (const name of ['list-runs', 'inspect-run']) {
      const t = tools.find((x) => x.name === name)!;
      expect(t._meta, name).toEqual({ ui: { resourceUri: UI }, 'ui/resourceUri': UI });
    }
    for (const t of tools.filter((x) => x.name !== 'list-runs' && x.name !== 'inspect-run')) {
      expect(t._meta?.ui, t.name).toBeUndefined();
    }
  });

  test('hosts without MCP Apps get the same data as text and structured content; the board resources answer JSON', async () => {
    const created = (await ctx.client.callTool({ name: 'create-run', arguments: { owner: 'acme', repo: 'widgets' } })) as ToolCallResult;
    const runId = (created.structuredContent as { run: { run_id: string } }).run.run_id;

    const listed = (await ctx.client.callTool({ name: 'list-runs', arguments: {} })) as ToolCallResult;
    expect(listed.isError).toBeFalsy();
    expect(listed.content[0]!.text).toContain(`${runId}  QUEUED`);
    expect((listed.structuredContent as { runs: Array<{ run_id: string }> }).runs.map((r) => r.run_id)).toEqual([runId]);

    const inspected = (await ctx.client.callTool({ name: 'inspect-run', arguments: { run_id: runId } })) as ToolCallResult;
    expect(inspected.content[0]!.text).toContain(`${runId} acme/widgets: QUEUED`);

    const board = JSON.parse(resourceText(await ctx.client.readResource({ uri: 'agentpr://board' }))) as BoardSnapshot;
    expect(board.cards).toEqual([expect.objectContaining({ run_id: runId, column: 'queued', actions: ['pause'] })]);
    const page = JSON.parse(resourceText(await ctx.client.readResource({ uri: `agentpr://board/runs/${runId}` }))) as RunPage;
    expect(page.card.run_id).toBe(runId);
    expect(page.inspect.timeline).toHaveLength(1);

    await expect(ctx.client.readResource({ uri: 'agentpr://board/runs/run_0123456789ab' })).rejects.toThrow(/unknown run 'run_0123456789ab'/);
  });
});
