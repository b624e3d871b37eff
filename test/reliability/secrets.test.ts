import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { sign } from '@octokit/webhooks-methods';
import { FakeGitHub } from '../helpers/fake-github.js';
import { startFakeTelegram, type FakeTelegram } from '../helpers/fake-telegram.js';
import { startFakeOpenAI, textReply, toolCall, type FakeOpenAI } from '../helpers/fake-openai.js';
import { textOf, type ToolCallResult } from '../helpers/mcp.js';
import { deliver, fixture } from '../github/runs.js';
import { makeHarness, scenario, waitFor, type Harness } from '../worker/harness.js';

/**
 * Issue 9: secrets never appear in logs or audit files. Every long-running entry runs as the built
 * binary in its own process with debug logging, all of them holding every secret (one env file for
 * all services, as docs/operations.md sets them up). A whole run goes through MCP over HTTP with the
 * bearer token; the webhook receiver gets signed, forged and badly signed deliveries; the Telegram
 * bot handles commands (one quoting a secret); the manager asks a model with its API key. Then every
 * captured stdout/stderr, every file under the data home (reports, audit logs, digests, streams)
 * and every MCP tool result is searched for each secret value.
 */

const ROOT = join(import.meta.dirname, '..', '..');
const CLI = join(ROOT, 'dist', 'src', 'cli.js');
const hex = (n = 12) => randomBytes(n).toString('hex');

const SECRETS = {
  AGENTPR_MCP_TOKEN: `mcp-token-${hex()}`,
  AGENTPR_GITHUB_WEBHOOK_SECRET: `whsec-current-${hex()}`,
  webhook_rotated_1: `whsec-old-${hex()}`,
  webhook_rotated_2: `whsec-older-${hex()}`,
  AGENTPR_GITHUB_TOKEN: `ghp_${hex(18)}`,
  AGENTPR_TELEGRAM_BOT_TOKEN: `${1_000_000 + Math.floor(Math.random() * 8_000_000)}:AA${hex(16)}`,
  AGENTPR_MANAGER_API_KEY: `sk-manager-${hex(16)}`,
};

const ADMIN_CHAT = 3003;

interface Proc {
  name: string;
  child: ChildProcess;
  out: string;
  err: string;
  exit: Promise<number | null>;
}

const procs: Proc[] = [];
let h: Harness | undefined;
let gh: FakeGitHub | undefined;
let tg: FakeTelegram | undefined;
let llm: FakeOpenAI | undefined;
afterAll(async () => {
  for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
  await gh?.stop();
  await tg?.close();
  await llm?.close();
  await h?.cleanup();
});

function run(name: string, args: string[], env: NodeJS.ProcessEnv): Proc {
  const child = spawn(process.execPath, [CLI, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const p: Proc = { name, child, out: '', err: '', exit: new Promise((resolve) => child.on('exit', (code) => resolve(code))) };
  child.stdout!.on('data', (d: Buffer) => (p.out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (p.err += d.toString()));
  procs.push(p);
  return p;
}

/** Every file below `dir`, recursively, except the clones (the agent's working trees). */
function filesUnder(dir: string, skip: Set<string>): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (skip.has(p)) continue;
    if (entry.isDirectory()) out.push(...filesUnder(p, skip));
    else if (entry.isFile()) out.push(p);
  }
  return out;
}

test('no secret value reaches a log line, an audit file, a report or a tool result during a full run through every entry', async () => {
  gh = await new FakeGitHub({ token: SECRETS.AGENTPR_GITHUB_TOKEN }).start();
  tg = await startFakeTelegram(SECRETS.AGENTPR_TELEGRAM_BOT_TOKEN);
  llm = await startFakeOpenAI();
  llm.apiKey = SECRETS.AGENTPR_MANAGER_API_KEY;
  // Keep every event stream (so the worker's output is on disk to be searched too).
  h = makeHarness({ policy: { run_agent_step: { success_event_stream_sample_pct: 100 } } });
  gh.repo('octo', 'demo', 'main');

  const env: NodeJS.ProcessEnv = {
    ...h.app.env,
    AGENTPR_HOME: h.home,
    AGENTPR_LOG_LEVEL: 'debug',
    AGENTPR_MCP_TOKEN: SECRETS.AGENTPR_MCP_TOKEN,
    AGENTPR_GITHUB_WEBHOOK_SECRET: SECRETS.AGENTPR_GITHUB_WEBHOOK_SECRET,
    AGENTPR_GITHUB_WEBHOOK_SECRETS: `${SECRETS.webhook_rotated_1}, ${SECRETS.webhook_rotated_2}`,
    AGENTPR_GITHUB_TOKEN: SECRETS.AGENTPR_GITHUB_TOKEN,
    GITHUB_API_URL: gh.url,
    AGENTPR_TELEGRAM_BOT_TOKEN: SECRETS.AGENTPR_TELEGRAM_BOT_TOKEN,
    AGENTPR_TELEGRAM_API_ROOT: tg.apiRoot,
    AGENTPR_MANAGER_API_KEY: SECRETS.AGENTPR_MANAGER_API_KEY,
    AGENTPR_MANAGER_BASE_URL: llm.baseURL,
    AGENTPR_MANAGER_MODEL: 'fake-model-1',
    FAKE_CODEX_SCENARIO: scenario('implement-pass'),
    // The agent runs `env` and its output lands in the kept event stream under reports/.
    FAKE_CODEX_RUN_ENV: '1',
  };
  for (const k of ['GITHUB_TOKEN', 'GH_TOKEN', 'OPENAI_API_KEY', 'AGENTPR_TELEGRAM_LLM_API_KEY']) delete env[k];
  const toolTexts: string[] = [];

  // ---- MCP over HTTP with the bearer token ---------------------------------------------------
  const http = run('serve --http', ['serve', '--http', '--port', '0'], env);
  const url = await waitFor(`the HTTP server to listen (stderr: ${http.err})`, () => /MCP Streamable HTTP on (http:\/\/\S+)/.exec(http.err)?.[1]);
  const wrong = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', authorization: `Bearer ${SECRETS.AGENTPR_GITHUB_TOKEN}` },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} }),
  });
  expect(wrong.status).toBe(401);
  const client = new Client({ name: 'secrets-test', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { Authorization: `Bearer ${SECRETS.AGENTPR_MCP_TOKEN}` } } }));
  const call = async (name: string, args: Record<string, unknown>): Promise<Record<string, unknown>> => {
    const r = (await client.callTool({ name, arguments: args })) as ToolCallResult;
    toolTexts.push(`${name}: ${textOf(r)}\n${JSON.stringify(r.structuredContent ?? {})}`);
    expect(r.isError, `${name}: ${textOf(r)}`).toBeFalsy();
    return r.structuredContent!;
  };
  const runId = ((await call('create-run', { owner: 'octo', repo: 'demo' })).run as { run_id: string }).run_id;
  await call('run-prepare', { run_id: runId });
  const contract = join(h.home, 'contract.md');
  writeFileSync(contract, '# Contract\n\nAppend a greeting to src/greeting.txt; validate with npm test.\n');
  await call('mark-plan-ready', { run_id: runId, contract_path: contract });
  await call('start-implementation', { run_id: runId });
  expect(await call('run-agent-step', { run_id: runId, prompt: 'Append a greeting to src/greeting.txt and run the tests.' })).toMatchObject({ grade: 'PASS', state_after: 'LOCAL_VALIDATING' });
  expect((await call('run-finish', { run_id: runId, changes: 'Add the agentpr greeting' })).state).toBe('PUSHED');
  const request = await call('request-open-pr', { run_id: runId, title: 'Add the agentpr greeting', body: 'Adds one line.' });
  const confirm = (request as { token: string }).token;
  const approved = await call('approve-open-pr', { run_id: runId, token: confirm, confirm: true });
  const pr = (approved as { pr_number: number }).pr_number;
  expect(h.app.service.getRun(runId).state).toBe('CI_WAIT');
  const pull = gh.repo('octo', 'demo').pulls.find((p) => p.number === pr)!;
  gh.setChecks('octo', 'demo', pull.head_sha, [{ id: 11, name: 'ci', status: 'completed', conclusion: 'success' }]);
  await call('sync-github', { run_id: runId });
  expect(h.app.service.getRun(runId).state).toBe('REVIEW_WAIT');
  await call('doctor', {});
  const second = ((await call('create-run', { owner: 'octo', repo: 'second' })).run as { run_id: string }).run_id;
  const third = ((await call('create-run', { owner: 'octo', repo: 'third' })).run as { run_id: string }).run_id;
  await client.close();
  // The token reached GitHub on the wire (and only there).
  expect(gh.requests.length).toBeGreaterThan(0);
  expect(gh.requests.every((r) => r.authorization?.endsWith(SECRETS.AGENTPR_GITHUB_TOKEN))).toBe(true);

  // ---- the webhook receiver: current and rotated secrets, a forged and a bad signature ------------
  const hook = run('run-github-webhook', ['run-github-webhook', '--port', '0'], env);
  const hookUrl = await waitFor(`the webhook receiver to listen (stderr: ${hook.err})`, () => /GitHub webhook receiver on (http:\/\/\S+)/.exec(hook.err)?.[1]);
  const review = fixture<Record<string, Record<string, unknown>>>('pull_request_review.submitted');
  review.repository = { ...review.repository, name: 'demo', full_name: 'octo/demo', owner: { ...(review.repository!.owner as object), login: 'octo' } };
  review.pull_request = { ...review.pull_request, number: pr };
  review.review = { ...review.review, state: 'changes_requested' };
  const forged = await deliver(hookUrl, { event: 'pull_request_review', payload: review, secret: 'attacker-guess' });
  expect(forged.status).toBe(401);
  // A sender that put the secret itself where the signature goes.
  const badSig = await deliver(hookUrl, { event: 'pull_request_review', payload: review, signature: `sha256=${SECRETS.AGENTPR_GITHUB_WEBHOOK_SECRET}` });
  expect(badSig.status).toBe(401);
  const unsigned = await deliver(hookUrl, { event: 'pull_request_review', payload: review, signature: null });
  expect(unsigned.status).toBe(401);
  expect(h.app.service.getRun(runId).state).toBe('REVIEW_WAIT');
  const ping = await deliver(hookUrl, { event: 'ping', payload: fixture('ping'), secret: SECRETS.webhook_rotated_2 });
  expect(ping.body.outcome).toBe('pong');
  const applied = await deliver(hookUrl, { event: 'pull_request_review', payload: review, secret: SECRETS.AGENTPR_GITHUB_WEBHOOK_SECRET });
  expect(applied.body).toMatchObject({ outcome: 'processed' });
  expect(h.app.service.getRun(runId).state).toBe('ITERATING');
  const raw = JSON.stringify(fixture('check_run.completed.failure'));
  const rotated = await deliver(hookUrl, { event: 'check_run', raw, payload: null, signature: await sign(SECRETS.webhook_rotated_1, raw) });
  expect(rotated.status).toBe(200);

  // ---- Telegram: commands from an admin chat, one quoting a secret, one approving ------------------
  const texts = [
    '/list',
    `/show ${runId}`,
    '/pending_pr',
    `/show ${runId} ${SECRETS.AGENTPR_GITHUB_TOKEN}`,
    `/pause ${second} token=${SECRETS.AGENTPR_MCP_TOKEN}`,
    `/approve_pr ${runId} ${confirm}`,
    `status ${runId} with key ${SECRETS.AGENTPR_MANAGER_API_KEY}`,
    `my bot token is ${SECRETS.AGENTPR_TELEGRAM_BOT_TOKEN}`,
  ];
  for (const text of texts) tg.pushText({ chatId: ADMIN_CHAT, text });
  const bot = run('run-telegram-bot', ['run-telegram-bot', '--allow-admin-chat-id', String(ADMIN_CHAT), '--nl-mode', 'rules', '--once'], env);
  expect(await bot.exit, bot.err).toBe(0);
  expect(tg.messagesTo(ADMIN_CHAT).length).toBeGreaterThanOrEqual(texts.length);

  // ---- the manager in llm mode ----------------------------------------------------------------
  llm.reply(toolCall('start-discovery', { run_id: third }), textReply('Waiting for a person.'));
  const tick = run('manager-tick', ['manager-tick', '--run-id', third, '--decision-mode', 'llm', '--max-actions', '1', '--json'], env);
  expect(await tick.exit, tick.err).toBe(0);
  expect(llm.requests.length, `${tick.out}\n${tick.err}`).toBeGreaterThan(0);
  // The key went to the model's endpoint on the wire: that is where it belongs.
  expect(llm.requests[0]!.headers.authorization).toBe(`Bearer ${SECRETS.AGENTPR_MANAGER_API_KEY}`);
  expect(h.app.service.getRun(third).state).toBe('DISCOVERY');
  const doctor = run('doctor', ['doctor', '--json'], env);
  expect(await doctor.exit, doctor.err).toBe(0);

  // ---- stop the services, then search everything ---------------------------------------------
  for (const p of [http, hook]) p.child.kill('SIGTERM');
  expect(await http.exit, http.err).toBe(0);
  expect(await hook.exit, hook.err).toBe(0);

  const sources: Array<[string, string]> = [];
  for (const p of procs) sources.push([`${p.name} stdout`, p.out], [`${p.name} stderr`, p.err]);
  const files = filesUnder(h.home, new Set([h.app.config.workspaceRoot]));
  for (const f of files) if (statSync(f).size < 50 * 1024 * 1024) sources.push([relative(h.home, f), readFileSync(f, 'latin1')]);
  toolTexts.forEach((t, i) => sources.push([`MCP tool result ${i}`, t]));

  // The search is not vacuous: debug logs were captured and the audit files were written.
  expect(http.err).toMatch(/"level":20/);
  const names = files.map((f) => relative(h!.home, f));
  expect(names).toEqual(expect.arrayContaining(['reports/telegram_audit.jsonl', 'reports/github_webhook_audit.jsonl']));
  expect(names.some((n) => /agent\/1\/events\.jsonl$/.test(n))).toBe(true);
  const webhookAudit = readFileSync(join(h.home, 'reports', 'github_webhook_audit.jsonl'), 'utf8');
  expect(webhookAudit.match(/"outcome":"invalid_signature"/g)).toHaveLength(3);
  const tgAudit = readFileSync(join(h.home, 'reports', 'telegram_audit.jsonl'), 'utf8').trim().split('\n');
  expect(tgAudit.length).toBeGreaterThanOrEqual(texts.length);

  const leaks: string[] = [];
  for (const [where, text] of sources) {
    for (const [name, value] of Object.entries(SECRETS)) if (text.includes(value)) leaks.push(`${name} in ${where}`);
  }
  expect(leaks).toEqual([]);
});
