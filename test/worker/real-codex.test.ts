import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { startFakeResponses, writeCodexConfig, type FakeResponses } from '../helpers/fake-responses.js';
import { alive, makeHarness, ok, preparedRun, toImplementing, waitFor, type Harness } from './harness.js';

/**
 * The real Codex CLI (the pinned @openai/codex devDependency, its bundled Linux binary with bwrap)
 * driven through run-agent-step on runs prepared with run-prepare against local bare repos, talking
 * to a local Responses API (test/helpers/fake-responses.ts) set in the test CODEX_HOME/config.toml.
 * The sandbox is codex's own (workspace-write via bwrap).
 */
const CODEX_BIN = resolve('node_modules/.bin/codex');
const HAVE_CODEX = existsSync(CODEX_BIN) && process.platform === 'linux' && process.arch === 'x64';
const KEY_VAR = 'AGENTPR_TEST_RESPONSES_KEY';
const KEY = 'sk-local-test-0123456789';

const FILES = {
  'README.md': '# demo\n',
  'package.json': JSON.stringify({ name: 'demo', version: '1.0.0', private: true, scripts: { test: 'node --test' } }, null, 2) + '\n',
  'greet.js': "exports.greet = (name) => `hello, ${name}`;\n",
  'test/greet.test.js': "const test = require('node:test');\nconst assert = require('node:assert');\nconst { greet } = require('../greet.js');\ntest('greets', () => assert.strictEqual(greet('a'), 'hello, a'));\n",
};

const FAILING_TEST_PATCH = [
  '*** Begin Patch',
  '*** Add File: test/broken.test.js',
  "+const test = require('node:test');",
  "+const assert = require('node:assert');",
  "+test('broken', () => assert.strictEqual(1, 2));",
  '*** End Patch',
].join('\n');

const EDIT_PATCH = ['*** Begin Patch', '*** Update File: greet.js', '@@', '-exports.greet = (name) => `hello, ${name}`;', '+exports.greet = (name) => `hello, ${name}`;', '+exports.bye = (name) => `bye, ${name}`;', '*** End Patch'].join('\n');

type StepData = {
  grade: string | null;
  reason_code: string | null;
  state_after: string;
  timed_out: boolean;
  exit_code: number | null;
  evidence: string[];
  artifacts: Array<{ type: string; uri: string }>;
};

let h: Harness | undefined;
let api: FakeResponses | undefined;
afterEach(async () => {
  await h?.cleanup();
  await api?.close();
  h = undefined;
  api = undefined;
});

async function setup(opts: { key?: string | null; model?: string } = {}): Promise<{ runId: string; workspace: string }> {
  api = await startFakeResponses({ apiKey: KEY });
  const env: Record<string, string> = { AGENTPR_CODEX_BIN: CODEX_BIN };
  if (opts.key !== null) env[KEY_VAR] = opts.key ?? KEY;
  h = makeHarness({ files: FILES, env });
  if (opts.key === null) h.setEnv({ [KEY_VAR]: undefined });
  writeCodexConfig(h.codexHome, { baseURL: api.baseURL, envKey: KEY_VAR, model: opts.model });
  const { runId, workspace } = await preparedRun(h);
  await toImplementing(h, runId);
  return { runId, workspace };
}

const step = async (runId: string, extra: Record<string, unknown> = {}) =>
  ok(await h!.call('run-agent-step', { run_id: runId, prompt: 'Add a bye() helper next to greet() and run the tests.', max_agent_seconds: 120, ...extra })) as StepData;

const TITLE = HAVE_CODEX
  ? 'the real codex binary through run-agent-step'
  : `the real codex binary through run-agent-step (skipped: ${CODEX_BIN} is missing or @openai/codex ships no binary for ${process.platform}/${process.arch} in this install)`;

describe.skipIf(!HAVE_CODEX)(TITLE, () => {
  test('doctor names the version and accepts the command line', async () => {
    await setup();
    const r = ok(await h!.call('doctor', {}));
    const codex = (r.checks as Array<{ name: string; ok: boolean; detail: string }>).find((c) => c.name === 'codex')!;
    expect(codex.ok).toBe(true);
    expect(codex.detail).toContain('codex 0.171.0');
    expect(codex.detail).toContain("accepts 'codex exec --sandbox workspace-write --json --output-last-message");
  });

  test('code mode (default model): patch + passing node --test -> PASS, files from git, usage read', async () => {
    const { runId, workspace } = await setup();
    api!.reply({ kind: 'patch', patch: EDIT_PATCH }, { kind: 'exec', cmd: 'node --test' }, { kind: 'message', text: 'Added bye(); node --test passed.' });
    const r = await step(runId);
    expect(api!.requests[0]!.dialect).toBe('code_mode');
    expect(r).toMatchObject({ grade: 'PASS', reason_code: 'runtime_success', state_after: 'LOCAL_VALIDATING', exit_code: 0 });
    expect(readFileSync(join(workspace, 'greet.js'), 'utf8')).toContain('exports.bye');
    const digest = JSON.parse(readFileSync(r.artifacts.find((a) => a.type === 'run_digest')!.uri, 'utf8')) as {
      usage: { input_tokens: number; output_tokens: number; total_tokens: number; cache_write_input_tokens?: number };
    };
    // Three model requests in the turn, summed by codex; no total_tokens in its stream: computed.
    expect(digest.usage.input_tokens).toBe(3 * 1200);
    expect(digest.usage.total_tokens).toBe(3 * (1200 + 80));
    const lastMessage = readFileSync(r.artifacts.find((a) => a.type === 'agent_last_message')!.uri, 'utf8');
    expect(lastMessage).toContain('Added bye()');
  });

  test('classic tools (gpt-5.5): failing test with codex exit 0 -> test_command_failed', async () => {
    const { runId } = await setup({ model: 'gpt-5.5' });
    api!.reply({ kind: 'patch', patch: FAILING_TEST_PATCH }, { kind: 'exec', cmd: 'npm test' }, { kind: 'message', text: 'Tests ran.' });
    const r = await step(runId);
    expect(api!.requests[0]!.dialect).toBe('classic');
    expect(r).toMatchObject({ grade: 'HUMAN_REVIEW', reason_code: 'test_command_failed', state_after: 'NEEDS_HUMAN_REVIEW', exit_code: 0 });
    expect(r.evidence.join('\n')).toContain('npm test');
  });

  test('classic tools: no test run -> missing_test_evidence', async () => {
    const { runId } = await setup({ model: 'gpt-5.5' });
    api!.reply({ kind: 'exec', cmd: 'cat greet.js' }, { kind: 'message', text: 'Read the file.' });
    const r = await step(runId);
    expect(r).toMatchObject({ grade: 'HUMAN_REVIEW', reason_code: 'missing_test_evidence' });
  });

  test("codex's workspace-write sandbox (bwrap) holds as root: the repository is writable, /var/tmp and .git are not", async () => {
    const { runId, workspace } = await setup({ model: 'gpt-5.5' });
    const outside = `/var/tmp/agentpr-sandbox-probe-${process.pid}-${Date.now()}`;
    api!.reply(
      { kind: 'exec', cmd: `touch inside.txt; echo inside=$?; touch ${outside}; echo outside=$?; touch .git/probe; echo git=$?` },
      { kind: 'exec', cmd: 'node --test' },
      { kind: 'message', text: 'Probed the sandbox.' },
    );
    const r = await step(runId);
    const out = JSON.stringify(api!.requests[1]!.body.input);
    expect(out).toContain('inside=0');
    expect(out).toMatch(/outside=1/);
    expect(out).toMatch(/git=1/);
    expect(existsSync(outside)).toBe(false);
    expect(existsSync(join(workspace, 'inside.txt'))).toBe(true);
    expect(existsSync(join(workspace, '.git', 'probe'))).toBe(false);
    expect(r.grade).toBe('PASS');
  });

  test('a model that never finishes -> timeout, no process left', async () => {
    const { runId } = await setup();
    api!.fallback = { kind: 'hang' };
    const r = await step(runId, { max_agent_seconds: 3 });
    expect(r).toMatchObject({ timed_out: true, reason_code: 'timeout', state_after: 'FAILED_RETRYABLE' });
    const attempt = h!.app.service.listAttempts(runId, 'agent')[0]!;
    const pid = attempt.metadata.worker_pid as number;
    expect(typeof pid).toBe('number');
    await waitFor('worker gone', () => !alive(pid), 10_000);
  });

  test.each([
    [429, 'Rate limit reached for requests'],
    [503, 'Service Unavailable'],
    [500, 'The server had an error while processing your request.'],
  ])('HTTP %i from the model API -> RETRYABLE runtime_transient_failure', async (status, message) => {
    const { runId } = await setup();
    api!.fallback = { kind: 'error', status, message };
    const r = await step(runId);
    expect(r).toMatchObject({ grade: 'RETRYABLE', reason_code: 'runtime_transient_failure', state_after: 'FAILED_RETRYABLE' });
    expect(r.exit_code).not.toBe(0);
  });

  test('HTTP 401 (wrong key) -> HUMAN_REVIEW runtime_hard_failure', async () => {
    const { runId } = await setup({ key: 'sk-wrong-key-000000' });
    const r = await step(runId);
    expect(r).toMatchObject({ grade: 'HUMAN_REVIEW', reason_code: 'runtime_hard_failure' });
    expect(r.evidence.join('\n')).toMatch(/401/);
  });

  test("the provider's key variable unset -> HUMAN_REVIEW runtime_config_error with codex's message", async () => {
    const { runId } = await setup({ key: null });
    const r = await step(runId);
    expect(r).toMatchObject({ grade: 'HUMAN_REVIEW', reason_code: 'runtime_config_error', state_after: 'NEEDS_HUMAN_REVIEW' });
    expect(r.evidence.join('\n')).toContain(`Missing environment variable: \`${KEY_VAR}\``);
    expect(api!.requests).toHaveLength(0);
  });

  test('a broken config.toml -> HUMAN_REVIEW runtime_config_error quoting codex', async () => {
    const { runId } = await setup();
    writeFileSync(join(h!.codexHome, 'config.toml'), 'model_provider = "local"\n[model_providers.local\nbase_url = 3\n');
    const r = await step(runId);
    expect(r).toMatchObject({ grade: 'HUMAN_REVIEW', reason_code: 'runtime_config_error' });
    expect(r.evidence.join('\n')).toMatch(/config\.toml/);
    expect(api!.requests).toHaveLength(0);
  });
});
