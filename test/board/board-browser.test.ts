import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { AppBridge } from '@modelcontextprotocol/ext-apps/app-bridge';
import { connectInMemory, resourceText, type ToolCallResult } from '../helpers/mcp.js';
import { makeTestApp, tempDir } from '../helpers/app.js';
import { startHttpServer, type RunningHttpServer } from '../../src/mcp/http.js';
import { Registry } from '../../src/registry.js';
import { TOOLS } from '../../tools/index.js';
import type { App } from '../../src/app.js';

/**
 * The board in a real browser (Debian's chromium, driven by playwright-core) over the real HTTP
 * server, on the data the built demo leaves behind plus three runs made here. The screenshot of
 * the board is written to the test's temp dir; with AGENTPR_UPDATE_SCREENSHOTS=1 it also
 * replaces docs/board.png (the README's picture) and docs/board-run.png.
 */

const ROOT = join(import.meta.dirname, '..', '..');
const DEMO = join(ROOT, 'dist', 'src', 'demo', 'main.js');
const CHROMIUM = process.env.AGENTPR_CHROMIUM ?? '/usr/bin/chromium';
const TOKEN = 'browser-board-token-7c1e';
const registry = new Registry(TOOLS);

let home: string;
let app: App;
let cleanup: () => Promise<void>;
let server: RunningHttpServer;
let base: string;
let context: BrowserContext;
let profile: string;
let demoRun: string;
const runs: Record<'queued' | 'working' | 'failed' | 'person', string> = { queued: '', working: '', failed: '', person: '' };

async function call(name: string, args: Record<string, unknown>): Promise<Record<string, unknown>> {
  const r = await registry.call(name, args, { app, entry: 'cli', actor: 'test', skipDoctor: true });
  if (!r.ok) throw new Error(r.error);
  return r.data;
}

function runBuiltDemo(env: NodeJS.ProcessEnv): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [DEMO], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, out }));
  });
}

beforeAll(async () => {
  expect(existsSync(CHROMIUM), `${CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium; .ci/run does it)`).toBe(true);
  expect(existsSync(DEMO), 'dist/ is missing: npm run build first').toBe(true);
  home = tempDir('agentpr-board-browser-');
  const env: NodeJS.ProcessEnv = { ...process.env, AGENTPR_HOME: home, AGENTPR_LOG_LEVEL: 'warn' };
  delete env.AGENTPR_DB;
  const demo = await runBuiltDemo(env);
  expect(demo.code, demo.out).toBe(0);
  demoRun = /done: (run_[0-9a-f]{12}) is DONE/.exec(demo.out)![1]!;

  ({ app, cleanup } = makeTestApp({ home, env: { AGENTPR_DB: join(home, 'agentpr.db') } }));
  runs.queued = ((await call('create-run', { owner: 'acme', repo: 'widgets' })) as { run: { run_id: string } }).run.run_id;
  runs.working = ((await call('create-run', { owner: 'acme', repo: 'gadgets' })) as { run: { run_id: string } }).run.run_id;
  await call('start-discovery', { run_id: runs.working });
  runs.failed = ((await call('create-run', { owner: 'acme', repo: 'gizmos' })) as { run: { run_id: string } }).run.run_id;
  await call('start-discovery', { run_id: runs.failed });
  await call('apply-event', {
    run_id: runs.failed,
    event_type: 'worker.step.failed',
    payload: { step: 'prepare', reason_code: 'script_failed', error_message: 'prepare: git clone of the fork failed' },
  });

  runs.person = ((await call('create-run', { owner: 'acme', repo: 'doohickeys' })) as { run: { run_id: string } }).run.run_id;
  await call('start-discovery', { run_id: runs.person });
  await call('apply-event', {
    run_id: runs.person,
    event_type: 'worker.step.failed',
    payload: { step: 'agent', reason_code: 'scope_too_large', error_message: 'the change touches 14 files; the budget is 6', to_state: 'NEEDS_HUMAN_REVIEW' },
  });

  server = await startHttpServer({ app, port: 0, token: TOKEN });
  base = server.url.replace(/\/mcp$/, '');
  profile = tempDir('agentpr-chromium-profile-');
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1400, height: 860 },
  });
}, 180_000);

afterAll(async () => {
  await context?.close();
  await server?.close();
  await cleanup?.();
  if (profile) rmSync(profile, { recursive: true, force: true });
  if (home) rmSync(home, { recursive: true, force: true });
});

const errors: string[] = [];
async function newPage(): Promise<Page> {
  const page = await context.newPage();
  page.on('pageerror', (e) => errors.push(e.message));
  return page;
}

describe('the board in a browser, after the demo', () => {
  test('the token is asked once (401 without it); then columns and cards show the runs, with charts', async () => {
    const page = await newPage();
    const first = await page.goto(`${base}/`);
    expect(first!.status()).toBe(401);
    await page.fill('input[name=token]', TOKEN);
    await Promise.all([page.waitForURL(`${base}/`), page.click('button[type=submit]')]);
    await page.waitForSelector('.card');

    const titles = await page.locator('.column h2').allInnerTexts();
    expect(titles.map((t) => t.replace(/\s+/g, ' ').trim())).toEqual(['Queued 1', 'Working 1', 'Waiting on CI or review 0', 'Needs a person 1', 'Done / failed 2']);

    const demoCard = page.locator(`.card[data-run-id="${demoRun}"]`);
    expect(await demoCard.getAttribute('data-state')).toBe('DONE');
    expect(await demoCard.locator('xpath=ancestor::section').getAttribute('data-column')).toBe('finished');
    expect(await demoCard.innerText()).toMatch(/demo-org\/demo-calc[\s\S]*DONE[\s\S]*PASS[\s\S]*runtime_success[\s\S]*PR #1/);
    expect(await demoCard.locator('a').getAttribute('href')).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/demo-org\/demo-calc\/pull\/1$/);
    expect(await page.locator(`section[data-column="queued"] .card[data-run-id="${runs.queued}"]`).count()).toBe(1);
    expect(await page.locator(`section[data-column="working"] .card[data-run-id="${runs.working}"]`).count()).toBe(1);
    const failed = page.locator(`section[data-column="finished"] .card[data-run-id="${runs.failed}"]`);
    expect(await failed.innerText()).toContain('prepare: git clone of the fork failed');
    expect(await page.locator(`section[data-column="person"] .card[data-run-id="${runs.person}"]`).getAttribute('data-state')).toBe('NEEDS_HUMAN_REVIEW');

    // Pictures: time per stage (demo steps), PASS rate for the demo repository, tokens of its agent attempt.
    expect(await page.locator('[data-chart="stage-time"] rect').count()).toBeGreaterThanOrEqual(4);
    expect(await page.locator('[data-chart="stage-time"] text').allTextContents()).toEqual(expect.arrayContaining(['agent', 'prepare', 'finish', 'pr_create']));
    expect(await page.locator('[data-chart="pass-rate"] circle').getAttribute('data-repo')).toBe('demo-org/demo-calc');
    // Two agent attempts since the demo iterates on its failed check and review: the first one's tokens come first.
    expect(await page.locator('[data-chart="tokens"] rect').count()).toBe(2);
    expect(await page.locator('[data-chart="tokens"] rect').first().getAttribute('data-value')).toBe(String(38593));

    const shot = join(home, 'board.png');
    await page.setViewportSize({ width: 1400, height: 500 });
    await page.screenshot({ path: shot, fullPage: true });
    const png = readFileSync(shot);
    expect(png.subarray(1, 4).toString()).toBe('PNG');
    expect(png.length).toBeGreaterThan(20_000);
    if (process.env.AGENTPR_UPDATE_SCREENSHOTS === '1') copyFileSync(shot, join(ROOT, 'docs', 'board.png'));
    await page.close();
  });

  test("a run's page: timeline with durations, the verdict and its evidence, figures, insight, approval; no confirm token", async () => {
    const page = await newPage();
    await page.goto(`${base}/`);
    await page.click(`.card[data-run-id="${demoRun}"]`);
    await page.waitForSelector('[data-testid=run-page]');
    expect(page.url()).toBe(`${base}/#/runs/${demoRun}`);
    expect(await page.locator('[data-testid=run-state]').innerText()).toBe('DONE');

    const timeline = await page.locator('[data-testid=timeline] tr').allInnerTexts();
    expect(timeline.some((r) => r.includes('command.run.create: created in QUEUED'))).toBe(true);
    expect(timeline.some((r) => /agent#1 succeeded exit 0 \(runtime_success\) in \d+ ms\t\d/.test(r))).toBe(true);
    expect(timeline.some((r) => r.includes('github.pr.merged: REVIEW_WAIT -> DONE'))).toBe(true);
    // prepare, pr_create, agent + finish for each of the two rounds, and each sync that moved the run
    // (a sync that records nothing new leaves no attempt).
    const syncs = app.service.listAttempts(demoRun, 'github_sync');
    expect(syncs.length).toBeGreaterThan(0);
    expect(syncs.every((a) => a.status === 'succeeded')).toBe(true);
    expect(await page.locator('[data-testid=stage-gantt] rect').count()).toBe(6 + syncs.length);

    const verdict = await page.locator('[data-testid=verdict]').innerText();
    expect(verdict).toMatch(/PASS\s+runtime_success/);
    // The latest verdict is the iteration round's (the demo fixes its failed check and review).
    expect(verdict).toContain('next: advance · attempt 2');
    expect(verdict).toContain('worker exited 0; 2 test command(s), 0 failed');
    expect(verdict).toContain('Manager recommendation: advance (normal)');
    const figures = await page.locator('[data-testid=figures]').innerText();
    expect(figures).toMatch(/\d+\s+commands/);
    expect(figures).toMatch(/2\s+test commands/);
    expect(figures).toContain('src/calc.js');
    // The replayed recording reuses its thread id, so round 2's tokens are the delta over round 1 (0).
    expect(figures).toMatch(/0\s+tokens\s+34,304 cached input, 1,325 output/);
    expect(await page.locator('[data-testid=insight] h3').first().innerText()).toBe('Manager Insight');
    expect(await page.locator('[data-testid=rounds]').innerText()).toMatch(/1\s+succeeded\s+PASS runtime_success/);
    expect(await page.locator('[data-testid=approvals]').innerText()).toMatch(/mcp:agentpr-demo\s+mcp\s+.*\s+ok\s+#1/);

    const request = app.service.listArtifacts(demoRun, 'pr_open_request')[0]!;
    const confirmToken = String(request.metadata.token);
    expect(confirmToken).toMatch(/^[A-Z0-9]{4,}$/);
    expect(await page.content()).not.toContain(confirmToken);
    expect(await page.locator('[data-action]').count()).toBe(0); // DONE: nothing to press
    if (process.env.AGENTPR_UPDATE_SCREENSHOTS === '1') await page.screenshot({ path: join(ROOT, 'docs', 'board-run.png'), fullPage: true });

    const failed = await newPage();
    await failed.goto(`${base}/#/runs/${runs.failed}`);
    await failed.waitForSelector('[data-testid=run-page]');
    expect(await failed.locator('[data-action=retry]').innerText()).toBe('Retry from DISCOVERY');
    await failed.close();
    await page.close();
  });

  test('pause on one page; the change arrives live on another open board and back on the run page', async () => {
    const board = await newPage();
    await board.goto(`${base}/`);
    await board.waitForSelector(`section[data-column="working"] .card[data-run-id="${runs.working}"]`);
    await board.waitForSelector('#live.on');
    await board.evaluate(() => void ((globalThis as Record<string, unknown>).notReloaded = true));

    const run = await newPage();
    await run.goto(`${base}/#/runs/${runs.working}`);
    await run.waitForSelector('[data-testid=run-page]');
    await run.waitForSelector('#live.on');
    expect(await run.locator('[data-testid=run-state]').innerText()).toBe('DISCOVERY');
    await run.click('[data-action=pause]');
    await run.locator('[data-testid=run-state]', { hasText: /^PAUSED$/ }).waitFor();
    expect(await run.locator('[data-testid=action-result]').innerText()).toBe(`${runs.working}: DISCOVERY -> PAUSED (command.pause)`);
    expect(app.service.getRun(runs.working).state).toBe('PAUSED');

    // The other page was not touched: server-sent events moved the card.
    await board.waitForSelector(`section[data-column="person"] .card[data-run-id="${runs.working}"][data-state="PAUSED"]`, { timeout: 15_000 });
    expect(await board.evaluate(() => (globalThis as Record<string, unknown>).notReloaded)).toBe(true);

    // A change made elsewhere (here: the registry, as the CLI would) reaches the open run page.
    expect(await run.locator('[data-action=resume]').innerText()).toBe('Resume in DISCOVERY');
    await call('resume', { run_id: runs.working, target_state: 'DISCOVERY' });
    await run.locator('[data-testid=run-state]', { hasText: /^DISCOVERY$/ }).waitFor({ timeout: 15_000 });
    await board.waitForSelector(`section[data-column="working"] .card[data-run-id="${runs.working}"]`, { timeout: 15_000 });
    expect(errors).toEqual([]);
    await run.close();
    await board.close();
  });
});

describe('the board as an MCP App inside a host (the extension\'s own AppBridge, in Chromium)', () => {
  test('the host renders the ui:// view: it initializes, shows the tool result, opens a run and pauses it through tools/call', async () => {
    const { client, close } = await connectInMemory(app);
    const page = await newPage();
    const bridge = new AppBridge(client, { name: 'agentpr-test-host', version: '1.0.0' }, { openLinks: {}, serverTools: {}, serverResources: {} });
    const sizes: Array<{ width?: number; height?: number }> = [];
    bridge.onsizechange = (p) => void sizes.push(p);
    const initialized = new Promise<void>((resolve) => (bridge.oninitialized = () => resolve()));
    // The view's messages reach the bridge through the host page; the bridge's go back into the iframe.
    const transport = {
      onmessage: undefined as ((m: unknown) => void) | undefined,
      onclose: undefined as (() => void) | undefined,
      onerror: undefined as ((e: Error) => void) | undefined,
      start: async () => undefined,
      send: async (m: unknown) => void (await page.evaluate(`window.toView(${JSON.stringify(m)})`)),
      close: async () => transport.onclose?.(),
    };
    await page.exposeFunction('fromView', (m: unknown) => transport.onmessage?.(m));
    await page.setContent(`<!doctype html><body style="margin:0"><iframe id="view" sandbox="allow-scripts" style="width:1300px;height:800px;border:0"></iframe>
      <script>
        const view = document.getElementById('view');
        window.toView = (m) => view.contentWindow.postMessage(m, '*');
        window.addEventListener('message', (e) => { if (e.source === view.contentWindow) window.fromView(e.data); });
      </script></body>`);
    await bridge.connect(transport as unknown as Parameters<typeof bridge.connect>[0]);

    const { tools } = await client.listTools();
    const uri = (tools.find((t) => t.name === 'list-runs')!._meta as { ui: { resourceUri: string } }).ui.resourceUri;
    const html = resourceText(await client.readResource({ uri }));
    await page.evaluate(`document.getElementById('view').srcdoc = ${JSON.stringify(html)}`);
    await initialized;

    const listed = (await client.callTool({ name: 'list-runs', arguments: {} })) as ToolCallResult;
    await bridge.sendToolInput({ arguments: {} });
    await bridge.sendToolResult(listed as Parameters<typeof bridge.sendToolResult>[0]);
    const view = page.frameLocator('#view');
    await view.locator(`.card[data-run-id="${demoRun}"]`).waitFor();
    expect(await view.locator('.column').count()).toBe(5);
    expect(await view.locator('#live').innerText()).toBe('in agentpr-test-host');

    const target = ((await call('create-run', { owner: 'acme', repo: 'thingamajigs' })) as { run: { run_id: string } }).run.run_id;
    await call('start-discovery', { run_id: target });
    const inspected = (await client.callTool({ name: 'inspect-run', arguments: { run_id: target } })) as ToolCallResult;
    await bridge.sendToolInput({ arguments: { run_id: target } });
    await bridge.sendToolResult(inspected as Parameters<typeof bridge.sendToolResult>[0]);
    await view.locator(`[data-testid=run-page][data-run-id="${target}"]`).waitFor();
    expect(await view.locator('[data-testid=run-state]').innerText()).toBe('DISCOVERY');

    await view.locator('[data-action=pause]').click();
    await view.locator('[data-testid=run-state]', { hasText: /^PAUSED$/ }).waitFor({ timeout: 15_000 });
    expect(app.service.getRun(target).state).toBe('PAUSED');
    expect(await view.locator('[data-testid=action-result]').innerText()).toBe(`${target}: DISCOVERY -> PAUSED (command.pause)`);
    expect(sizes.length).toBeGreaterThan(0);
    expect(errors).toEqual([]);

    await bridge.close();
    await close();
    await page.close();
  });
});
