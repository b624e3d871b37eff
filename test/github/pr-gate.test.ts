import { reconcileOrphanedAttempts } from '../../src/worker/reconcile.js';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { makeTestApp, tempDir } from '../helpers/app.js';
import { FakeGitHub } from '../helpers/fake-github.js';
import type { App } from '../../src/app.js';
import { Registry, type Entry } from '../../src/registry.js';
import { TOOLS } from '../../tools/index.js';
import { analyzeAttempt, computeDiffStats, digestToJson } from '../../src/analysis/index.js';
import { recordGitBaseline } from '../../src/worker/git-guard.js';
import { agentPolicyFor } from '../../src/policy.js';
import { githubOwnerFromUrl } from '../../src/github/pr-open.js';
import { pushedRun } from './runs.js';
import { Client, InMemoryTransport } from '@modelcontextprotocol/client';
import { createMcpServer } from '../../src/mcp/server.js';

const OWNER = 'octo-org';
const REPO = 'widgets';
const BRANCH = 'feature/forge-fix-typo';
const GIT_ENV = { GIT_AUTHOR_NAME: 'Test', GIT_AUTHOR_EMAIL: 't@example.com', GIT_COMMITTER_NAME: 'Test', GIT_COMMITTER_EMAIL: 't@example.com' };

async function git(dir: string, ...args: string[]): Promise<string> {
  const r = await execa('git', ['-C', dir, ...args], { env: GIT_ENV });
  return String(r.stdout).trim();
}

/** A recorded-format codex stream: one test command with the given exit code. */
function streamFile(dir: string, testExit: number): string {
  const cmd = "/bin/bash -lc 'npm test'";
  const lines = [
    { type: 'thread.started', thread_id: 'thread-1' },
    { type: 'turn.started' },
    { type: 'item.started', item: { id: 'item_1', type: 'command_execution', command: cmd, aggregated_output: '', exit_code: null, status: 'in_progress' } },
    { type: 'item.completed', item: { id: 'item_1', type: 'command_execution', command: cmd, aggregated_output: testExit ? '1 failing\n' : '12 passing\n', exit_code: testExit, status: testExit ? 'failed' : 'completed' } },
    { type: 'item.completed', item: { id: 'item_2', type: 'agent_message', text: 'Fixed the typo in README.' } },
    { type: 'turn.completed', usage: { input_tokens: 100, cached_input_tokens: 0, output_tokens: 20 } },
  ];
  const path = join(dir, `stream-${testExit}.jsonl`);
  writeFileSync(path, lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
  return path;
}

interface Setup {
  runId: string;
  ws: string;
  remote: string;
  digestSha: string;
  pushedSha: string;
}

/**
 * A real clone with a bare remote: base commit D, the agent's uncommitted change, a digest made by
 * the analysis module on it (diff against D), then finish's commit P pushed to origin/BRANCH.
 */
async function setupPushedRun(app: App, opts: { testExit?: number; forkOwner?: string } = {}): Promise<Setup> {
  const root = tempDir('agentpr-git-');
  const remote = join(root, 'remote.git');
  await execa('git', ['init', '--bare', '-q', '-b', 'main', remote]);
  const ws = join(app.config.workspaceRoot, REPO);
  await execa('git', ['clone', '-q', remote, ws]);
  if (opts.forkOwner) {
    // origin names the fork on GitHub, as prepare.sh sets it up; insteadOf sends git to the local remote.
    const forkUrl = `https://github.com/${opts.forkOwner}/${REPO}.git`;
    await git(ws, 'remote', 'set-url', 'origin', forkUrl);
    await git(ws, 'config', `url.${remote}.insteadOf`, forkUrl);
  }
  writeFileSync(join(ws, 'README.md'), '# widgets\nteh widget library\n');
  await git(ws, 'add', '-A');
  await git(ws, 'commit', '-q', '-m', 'base');
  await git(ws, 'push', '-q', 'origin', 'HEAD:main');
  await git(ws, 'checkout', '-q', '-b', BRANCH);
  const digestSha = await git(ws, 'rev-parse', 'HEAD');
  writeFileSync(join(ws, 'README.md'), '# widgets\nthe widget library\n');

  const run = pushedRun(app, OWNER, REPO, { branch: BRANCH, workspace_dir: ws, stopBeforePush: true }).run_id;
  // What run-prepare records: the clone's git settings as agentpr set them up (the insteadOf included).
  recordGitBaseline(app.config.home, run, ws);
  const policy = agentPolicyFor(app.policy, OWNER, REPO);
  const analysis = await analyzeAttempt({
    streamPath: streamFile(root, opts.testExit ?? 0),
    exitCode: 0,
    stateBefore: 'IMPLEMENTING',
    attemptNo: 1,
    runId: run,
    policy,
    owner: OWNER,
    repo: REPO,
    diffStats: await computeDiffStats(ws),
    preflight: { ok: true, checks: [] },
  });
  const digestDir = join(app.config.reportsDir, run);
  mkdirSync(digestDir, { recursive: true });
  const digestPath = join(digestDir, 'run_digest_1.json');
  writeFileSync(digestPath, digestToJson(analysis.digest));
  app.service.addArtifact(run, { type: 'run_digest', uri: digestPath });

  await git(ws, 'commit', '-q', '-am', 'Fix typo');
  await git(ws, 'push', '-q', 'origin', BRANCH);
  const pushedSha = await git(ws, 'rev-parse', 'HEAD');
  app.service.applyEvent({ run_id: run, event_type: 'worker.push.completed', payload: { branch: BRANCH, head_sha: pushedSha } });
  expect(app.service.getRun(run).state).toBe('PUSHED');
  return { runId: run, ws, remote, digestSha, pushedSha };
}

describe('PR open gate: request-open-pr / approve-open-pr', () => {
  let ctx: ReturnType<typeof makeTestApp>;
  let app: App;
  let gh: FakeGitHub;
  const registry = new Registry(TOOLS);
  const call = (name: string, args: Record<string, unknown>, entry: Entry = 'mcp', actor = 'claude-desktop') =>
    registry.call(name, args, { app, entry, actor });

  beforeEach(async () => {
    gh = await new FakeGitHub().start();
    gh.repo(OWNER, REPO, 'main');
    ctx = makeTestApp({ env: { GITHUB_API_URL: gh.url, GITHUB_TOKEN: gh.token, AGENTPR_GITHUB_TOKEN: '' } });
    app = ctx.app;
  });
  afterEach(async () => {
    vi.useRealTimers();
    await ctx.cleanup();
    await gh.stop();
  });

  it('opens the PR only after request + confirm + token, and records who approved it', async () => {
    const s = await setupPushedRun(app);
    const req = await call('request-open-pr', { run_id: s.runId, title: 'Fix typo in README', body: 'Small fix.' });
    expect(req.ok).toBe(true);
    if (!req.ok) return;
    const token = req.data.token as string;
    expect(token).toMatch(/^[A-Z2-9]{6}$/);
    expect(req.data).toMatchObject({ head: BRANCH, head_sha: s.pushedSha, gate: { ok: true, failed_checks: [] }, evidence: { ok: true, digest_sha: s.digestSha } });
    expect(Date.parse(req.data.expires_at as string) - Date.now()).toBeGreaterThan(29 * 60_000);
    expect(gh.requests).toHaveLength(0);

    const noConfirm = await call('approve-open-pr', { run_id: s.runId, token, confirm: false }, 'telegram', 'telegram:42');
    expect(noConfirm).toMatchObject({ ok: false, code: 'invalid_input' });
    const wrong = await call('approve-open-pr', { run_id: s.runId, token: 'AAAAAA', confirm: true }, 'telegram', 'telegram:42');
    expect(wrong.ok).toBe(false);
    if (!wrong.ok) expect(wrong.error).toMatch(/confirm token does not match/);
    expect(gh.requests).toHaveLength(0);
    expect(app.service.getRun(s.runId).state).toBe('PUSHED');

    const ok = await call('approve-open-pr', { run_id: s.runId, token: token.toLowerCase(), confirm: true }, 'telegram', 'telegram:42');
    expect(ok.ok).toBe(true);
    if (!ok.ok) return;
    expect(ok.data).toMatchObject({ status: 'opened', pr_number: 1, run: { state: 'CI_WAIT', pr_number: 1 } });
    expect(ok.data.approval).toMatchObject({ approved_by: 'telegram:42', entry: 'telegram', head_sha: s.pushedSha, gate_ok: true, bypass: false, pr_number: 1 });
    expect(ok.text).toContain('approved by telegram:42 via telegram');
    const posts = gh.requestsTo('POST', '/repos/octo-org/widgets/pulls');
    expect(posts).toHaveLength(1);
    // maintainer_can_modify (policy github.maintainer_can_modify, default true) lets upstream push to the branch.
    expect(posts[0]!.body).toEqual({ title: 'Fix typo in README', head: BRANCH, base: 'main', body: 'Small fix.', draft: false, maintainer_can_modify: true });
    expect(posts[0]!.authorization).toBe(`token ${gh.token}`);
    expect(app.service.listArtifacts(s.runId, 'pr_url').map((a) => a.uri)).toEqual(['https://github.test/octo-org/widgets/pull/1']);
    expect(app.service.listAttempts(s.runId, 'pr_create')).toMatchObject([{ status: 'succeeded' }]);

    const again = await call('approve-open-pr', { run_id: s.runId, token, confirm: true });
    expect(again.ok && again.data).toMatchObject({ status: 'already_linked', pr_number: 1 });
    expect(gh.requestsTo('POST', '/pulls')).toHaveLength(1);
  });

  it('two approvals at once: one PR, the other refused; no attempt is left running, a later reconcile moves nothing', async () => {
    const s = await setupPushedRun(app);
    const req = await call('request-open-pr', { run_id: s.runId, title: 'Fix typo in README' });
    if (!req.ok) throw new Error(req.error);
    const token = req.data.token as string;
    const [a, b] = await Promise.all([call('approve-open-pr', { run_id: s.runId, token, confirm: true }), call('approve-open-pr', { run_id: s.runId, token, confirm: true })]);
    const wins = [a, b].filter((r) => r.ok && r.data.status === 'opened');
    const losers = [a, b].filter((r) => !r.ok);
    expect(wins).toHaveLength(1);
    expect(losers).toHaveLength(1);
    expect(!losers[0]!.ok && losers[0]!.error).toMatch(/is busy: its pr_create step|already linked to PR #1/);
    expect(gh.requestsTo('POST', '/repos/octo-org/widgets/pulls')).toHaveLength(1);
    expect(app.service.listAttempts(s.runId, 'pr_create').map((x) => x.status)).toEqual(['succeeded']);
    expect(app.service.leases.list()).toEqual([]);
    expect(reconcileOrphanedAttempts(app, Date.now() + 7 * 3_600_000)).toEqual([]);
    expect(app.service.getRun(s.runId).state).toBe('CI_WAIT');
  });

  it('blocks on the DoD gate with every failed check, and records an explicit bypass', async () => {
    const s = await setupPushedRun(app, { testExit: 1 });
    const req = await call('request-open-pr', { run_id: s.runId, title: 'Fix typo' });
    expect(req.ok).toBe(true);
    if (!req.ok) return;
    const codes = (req.data.gate as { failed_checks: Array<{ code: string }> }).failed_checks.map((c) => c.code);
    expect(codes).toEqual(['runtime_not_pass', 'runtime_not_runtime_success', 'failed_test_commands_present']);
    expect(req.text).toContain('would block the PR');

    const blocked = await call('approve-open-pr', { run_id: s.runId, token: req.data.token, confirm: true }, 'cli', 'cli:alice');
    expect(blocked.ok).toBe(false);
    if (!blocked.ok) {
      expect(blocked.code).toBe('refused');
      for (const c of codes) expect(blocked.error).toContain(c);
    }
    expect(gh.requests).toHaveLength(0);
    expect(app.service.getRun(s.runId).state).toBe('PUSHED');

    const bypass = await call('approve-open-pr', { run_id: s.runId, token: req.data.token, confirm: true, allow_dod_bypass: true }, 'cli', 'cli:alice');
    expect(bypass.ok).toBe(true);
    if (!bypass.ok) return;
    expect(bypass.data.approval).toMatchObject({ approved_by: 'cli:alice', entry: 'cli', gate_ok: false, bypass: true });
    expect(bypass.text).toMatch(/gate FAILED \(runtime_not_pass, runtime_not_runtime_success, failed_test_commands_present\) - bypassed/);
    const stored = app.service.listPrApprovals(s.runId);
    expect(stored).toHaveLength(1);
    expect((stored[0]!.gate as { failed_checks: unknown[] }).failed_checks).toHaveLength(3);
  });

  it('refuses an expired request unless allow_expired', async () => {
    const s = await setupPushedRun(app);
    const req = await call('request-open-pr', { run_id: s.runId, title: 'Fix typo', ttl_minutes: 5 });
    if (!req.ok) throw new Error(req.error);
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(Date.now() + 6 * 60_000);
    const expired = await call('approve-open-pr', { run_id: s.runId, token: req.data.token, confirm: true });
    expect(expired.ok).toBe(false);
    if (!expired.ok) expect(expired.error).toMatch(/expired at .*TTL 5 min/);
    expect(gh.requests).toHaveLength(0);
    const late = await call('approve-open-pr', { run_id: s.runId, token: req.data.token, confirm: true, allow_expired: true });
    expect(late.ok && late.data.status).toBe('opened');
  });

  it('refuses when the branch head moved since the request, without calling GitHub', async () => {
    const s = await setupPushedRun(app);
    const req = await call('request-open-pr', { run_id: s.runId, title: 'Fix typo' });
    if (!req.ok) throw new Error(req.error);
    // Someone pushes another commit to the branch from a second clone.
    const other = join(tempDir('agentpr-other-'), 'c');
    await execa('git', ['clone', '-q', '-b', BRANCH, s.remote, other]);
    writeFileSync(join(other, 'extra.txt'), 'not reviewed\n');
    await git(other, 'add', '-A');
    await git(other, 'commit', '-q', '-m', 'unreviewed');
    await git(other, 'push', '-q', 'origin', BRANCH);
    const moved = await git(other, 'rev-parse', 'HEAD');

    const res = await call('approve-open-pr', { run_id: s.runId, token: req.data.token, confirm: true, allow_dod_bypass: true });
    expect(res.ok).toBe(false);
    if (!res.ok) expect(res.error).toContain(`moved from ${s.pushedSha.slice(0, 12)} to ${moved.slice(0, 12)}`);
    expect(gh.requests).toHaveLength(0);

    // A new request pins the new head, but it is not the commit the worker pushed after the digest.
    const req2 = await call('request-open-pr', { run_id: s.runId, title: 'Fix typo' });
    if (!req2.ok) throw new Error(req2.error);
    expect(req2.data.evidence).toMatchObject({ ok: false, head_sha: moved });
    const res2 = await call('approve-open-pr', { run_id: s.runId, token: req2.data.token, confirm: true, allow_dod_bypass: true });
    expect(res2.ok).toBe(false);
    if (!res2.ok) expect(res2.error).toMatch(/head SHA check failed: .*moved since the evidence was taken/);
    expect(app.service.getRun(s.runId).state).toBe('PUSHED');
  });

  it('links an already open PR for the same head instead of opening a second one', async () => {
    const s = await setupPushedRun(app);
    gh.addPull(OWNER, REPO, { number: 7, head: BRANCH, head_sha: s.pushedSha });
    const req = await call('request-open-pr', { run_id: s.runId, title: 'Fix typo' });
    if (!req.ok) throw new Error(req.error);
    const res = await call('approve-open-pr', { run_id: s.runId, token: req.data.token, confirm: true });
    expect(res.ok && res.data).toMatchObject({ status: 'existing', pr_number: 7, approval: { pr_existing: true } });
    expect(gh.requestsTo('GET', '/pulls')[0]!.query).toMatchObject({ head: `${OWNER}:${BRANCH}`, state: 'open' });
    expect(gh.requestsTo('POST', '/pulls')).toHaveLength(0);
    expect(app.service.getRun(s.runId)).toMatchObject({ state: 'CI_WAIT', pr_number: 7 });
  });

  it('reports a rate limit without failing the run, and a later approval succeeds', async () => {
    const s = await setupPushedRun(app);
    const req = await call('request-open-pr', { run_id: s.runId, title: 'Fix typo' });
    if (!req.ok) throw new Error(req.error);
    gh.rateLimitNext({ times: 1, kind: 'primary', seconds: 1800 });
    const limited = await call('approve-open-pr', { run_id: s.runId, token: req.data.token, confirm: true });
    expect(limited.ok).toBe(false);
    if (!limited.ok) expect(limited.error).toMatch(/rate limited, retry after 18\d\d s; nothing changed/);
    expect(app.service.getRun(s.runId).state).toBe('PUSHED');
    expect(app.service.listAttempts(s.runId, 'pr_create')).toMatchObject([{ status: 'failed', reason_code: 'rate_limited' }]);
    const ok = await call('approve-open-pr', { run_id: s.runId, token: req.data.token, confirm: true });
    expect(ok.ok && ok.data.status).toBe('opened');
  });

  it('opens the PR from the fork named by the clone\'s origin', async () => {
    const s = await setupPushedRun(app, { forkOwner: 'forker' });
    const req = await call('request-open-pr', { run_id: s.runId, title: 'Fix typo', base: 'develop', draft: true });
    if (!req.ok) throw new Error(req.error);
    expect(req.data).toMatchObject({ head: `forker:${BRANCH}`, head_sha: s.pushedSha, base: 'develop', draft: true });
    const res = await call('approve-open-pr', { run_id: s.runId, token: req.data.token, confirm: true });
    expect(res.ok && res.data.status).toBe('opened');
    expect(gh.requestsTo('GET', '/pulls')[0]!.query.head).toBe(`forker:${BRANCH}`);
    expect(gh.requestsTo('POST', '/pulls')[0]!.body).toMatchObject({ head: `forker:${BRANCH}`, base: 'develop', draft: true });
    expect(gh.requestsTo('GET', '/repos/octo-org/widgets').filter((r) => r.path === '/repos/octo-org/widgets')).toHaveLength(0);
  });

  it('reads the owner from GitHub remote URLs', () => {
    expect(githubOwnerFromUrl('https://github.com/forker/widgets.git')).toBe('forker');
    expect(githubOwnerFromUrl('git@github.com:forker/widgets.git')).toBe('forker');
    expect(githubOwnerFromUrl('ssh://git@github.example.com:2222/forker/widgets')).toBe('forker');
    expect(githubOwnerFromUrl('/tmp/remote.git')).toBeUndefined();
  });

  it('refuses a request for a run that is not PUSHED, and approval without a request', async () => {
    const run = app.service.createRun({ owner: OWNER, repo: REPO });
    const req = await call('request-open-pr', { run_id: run.run_id, title: 'x' });
    expect(req.ok).toBe(false);
    if (!req.ok) expect(req.error).toMatch(/needs the run in PUSHED; .* is in QUEUED/);
    const appr = await call('approve-open-pr', { run_id: run.run_id, token: 'ABCDEF', confirm: true });
    expect(appr.ok).toBe(false);
    if (!appr.ok) expect(appr.error).toMatch(/no PR open request/);
  });
});

describe('approve-open-pr confirmed through MCP elicitation', () => {
  let ctx: ReturnType<typeof makeTestApp>;
  let gh: FakeGitHub;

  beforeEach(async () => {
    gh = await new FakeGitHub().start();
    gh.repo(OWNER, REPO, 'main');
    ctx = makeTestApp({ env: { GITHUB_API_URL: gh.url, GITHUB_TOKEN: gh.token, AGENTPR_GITHUB_TOKEN: '' } });
  });
  afterEach(async () => {
    await ctx.cleanup();
    await gh.stop();
  });

  /** A real SDK client that declares form elicitation and answers each question with `answer`. */
  async function elicitingClient(answer: 'yes' | 'no' | 'decline', asked: string[]) {
    const server = createMcpServer(ctx.app);
    const [serverSide, clientSide] = InMemoryTransport.createLinkedPair();
    await server.connect(serverSide);
    const client = new Client({ name: 'eliciting', version: '1' }, { capabilities: { elicitation: { form: {} } } });
    client.setRequestHandler('elicitation/create', (request) => {
      asked.push(request.params.message);
      if (answer === 'decline') return { action: 'decline' };
      return { action: 'accept', content: { confirm: answer === 'yes' } };
    });
    await client.connect(clientSide);
    return { client, close: async () => { await client.close(); await server.close(); } };
  }

  it('without a token the person is asked; yes opens the PR, no refuses and changes nothing', async () => {
    const s = await setupPushedRun(ctx.app);
    const registry = new Registry(TOOLS);
    const req = await registry.call('request-open-pr', { run_id: s.runId, title: 'Fix typo in README' }, { app: ctx.app, entry: 'mcp' });
    expect(req.ok).toBe(true);

    const asked: string[] = [];
    const no = await elicitingClient('no', asked);
    const refused = (await no.client.callTool({ name: 'approve-open-pr', arguments: { run_id: s.runId, confirm: true } })) as { isError?: boolean; content: Array<{ text: string }> };
    await no.close();
    expect(refused.isError).toBe(true);
    expect(refused.content[0]!.text).toContain('the person did not confirm');
    expect(asked[0]).toContain('Open the pull request "Fix typo in README" on octo-org/widgets');
    expect(gh.requests.filter((r) => r.method === 'POST')).toHaveLength(0);
    expect(ctx.app.service.getRun(s.runId).state).toBe('PUSHED');

    const yes = await elicitingClient('yes', asked);
    const opened = (await yes.client.callTool({ name: 'approve-open-pr', arguments: { run_id: s.runId, confirm: true } })) as { isError?: boolean; structuredContent?: Record<string, unknown>; content: Array<{ text: string }> };
    await yes.close();
    expect(opened.isError, opened.content[0]?.text).toBeFalsy();
    expect(opened.structuredContent).toMatchObject({ status: 'opened', run: { state: 'CI_WAIT' } });
  });

  it('a client without elicitation (and the CLI) still needs the token', async () => {
    const s = await setupPushedRun(ctx.app);
    const registry = new Registry(TOOLS);
    await registry.call('request-open-pr', { run_id: s.runId, title: 'Fix typo in README' }, { app: ctx.app, entry: 'mcp' });
    const r = await registry.call('approve-open-pr', { run_id: s.runId, confirm: true }, { app: ctx.app, entry: 'cli' });
    expect(r).toMatchObject({ ok: false, code: 'invalid_input' });
    expect(!r.ok && r.error).toContain('token: required');
    expect(ctx.app.service.getRun(s.runId).state).toBe('PUSHED');
  });
});
