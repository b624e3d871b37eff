import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { dbFingerprint } from '../helpers/db.js';
import { git } from '../helpers/git.js';
import {
  FAILURE_PATTERNS,
  buildAgentArgs,
  checkCallArgs,
  checkExtraArgs,
  clearProbeCache,
  parseHelpFlags,
  probeAgent,
  type AgentProbe,
} from '../../src/worker/agents/codex.js';
import { decideVerdict } from '../../src/analysis/verdict.js';
import { StreamAccumulator, stampLine } from '../../src/analysis/index.js';
import { agentPolicyFor, PolicySchema } from '../../src/policy.js';
import { FAKE_CODEX, FIXTURES, makeHarness, ok, preparedRun, scenario, toImplementing, type Harness } from './harness.js';

const HELP_0171 = readFileSync(join(FIXTURES, 'codex', 'exec-help-0.171.0.txt'), 'utf8');

let h: Harness | undefined;
afterEach(async () => {
  await h?.cleanup();
  h = undefined;
  clearProbeCache();
});

const probeOf = (help: string, version = '0.171.0'): AgentProbe => ({ bin: '/x/codex', version, versionLine: `codex-cli ${version}`, flags: parseHelpFlags(help) });

describe('command line from what the installed codex supports', () => {
  test('flags are read from the real 0.171.0 help', () => {
    const flags = parseHelpFlags(HELP_0171);
    for (const f of ['--sandbox', '-s', '--json', '-o', '--output-last-message', '-m', '--model', '--ephemeral', '--ignore-user-config', '-c', '--config']) {
      expect(flags.has(f), f).toBe(true);
    }
    expect(flags.has('--full-auto')).toBe(false);
  });

  test('argv: no --full-auto, the prompt on stdin (`-`), extra flags before it', () => {
    const p = probeOf(HELP_0171);
    expect(buildAgentArgs(p, { sandbox: 'workspace-write', lastMessagePath: '/r/m.txt' })).toEqual(['exec', '--sandbox', 'workspace-write', '--json', '--output-last-message', '/r/m.txt', '-']);
    expect(buildAgentArgs(p, { sandbox: 'danger-full-access', model: 'gpt-5.5', lastMessagePath: '/m', extraArgs: ['-c', 'model_reasoning_effort="high"', '--ephemeral'] })).toEqual([
      'exec', '--sandbox', 'danger-full-access', '--model', 'gpt-5.5', '--json', '--output-last-message', '/m', '-c', 'model_reasoning_effort="high"', '--ephemeral', '-',
    ]);
  });

  test('a codex without a needed flag is refused with its version and the flag named', () => {
    const noJson = HELP_0171.replace(/\n\s+--json\n[^\n]*\n/, '\n');
    expect(parseHelpFlags(noJson).has('--json')).toBe(false);
    expect(() => buildAgentArgs(probeOf(noJson, '0.9.0'), { sandbox: 'workspace-write', lastMessagePath: '/m' })).toThrow(/codex 0\.9\.0 at \/x\/codex has no --json flag/);
    const noOut = HELP_0171.replace(/\n\s+-o, --output-last-message <FILE>\n[^\n]*\n/, '\n');
    expect(() => buildAgentArgs(probeOf(noOut, '0.9.1'), { sandbox: 'workspace-write', lastMessagePath: '/m' })).toThrow(/codex 0\.9\.1 .* has no --output-last-message\/-o flag/);
    // A flag the operator asks for that this codex does not list.
    expect(() => buildAgentArgs(probeOf(HELP_0171), { sandbox: 'workspace-write', lastMessagePath: '/m', extraArgs: ['--no-such-flag'] })).toThrow(/has no --no-such-flag flag/);
  });

  test('flags agentpr owns are refused in extra args', () => {
    for (const a of ['--sandbox', '-s', '--json', '-o', '--output-last-message=/x', '--model', '-mgpt', '--cd', '--dangerously-bypass-approvals-and-sandbox', '--full-auto', '--add-dir']) {
      expect(() => checkExtraArgs([a], 'codex_args'), a).toThrow(/codex_args: .* is set by agentpr/);
    }
    expect(() => checkExtraArgs(['-'], 'codex_args')).toThrow(/not a flag/);
    expect(() => checkExtraArgs(['-c', 'model_reasoning_effort="high"', '--ephemeral'], 'codex_args')).not.toThrow();
  });

  test("a call's codex_args get an allowlist: model tuning via -c, never sandbox, approvals, providers or programs", () => {
    expect(() => checkCallArgs(['-c', 'model_reasoning_effort="high"', '--ephemeral'])).not.toThrow();
    expect(() => checkCallArgs(['--config=model_verbosity="low"'])).not.toThrow();
    for (const bad of [
      ['-c', 'sandbox_mode="danger-full-access"'],
      ['-c', 'sandbox_workspace_write.writable_roots=["/"]'],
      ['-c', 'approval_policy="never"'],
      ['-c', 'shell_environment_policy.inherit="all"'],
      ['-c', 'model_providers.evil.base_url="http://attacker"'],
      ['-c', 'notify=["sh","-c","curl attacker"]'],
      ['-c', 'mcp_servers.x.command="sh"'],
    ]) {
      expect(() => checkCallArgs(bad), bad[1]).toThrow(/is not allowed per call; -c takes key=value with key one of model_reasoning_effort/);
    }
    for (const flag of ['--enable', '--profile', '-p', '--approve-for-me', '--ignore-rules', '--local-provider']) {
      expect(() => checkCallArgs([flag, 'x']), flag).toThrow(/is not allowed per call|is set by agentpr/);
    }
  });

  test('the probe runs --version and exec --help once per binary', async () => {
    const log = join(await import('../helpers/app.js').then((m) => m.tempDir()), 'calls.log');
    const wrapper = join(log, '..', 'codex-wrapper');
    writeFileSync(wrapper, `#!/bin/sh\necho "$@" >> ${log}\nexec ${FAKE_CODEX} "$@"\n`, { mode: 0o755 });
    const a = await probeAgent(wrapper, process.env);
    const b = await probeAgent(wrapper, process.env);
    expect(a).toBe(b);
    expect(a.version).toBe('0.171.0');
    expect(readFileSync(log, 'utf8').trim().split('\n')).toEqual(['--version', 'exec --help']);
  });

  test('the fake codex refuses what 0.171.0 refuses', () => {
    const r = spawnSync(FAKE_CODEX, ['exec', '--sandbox', 'workspace-write', '--full-auto', '--json', '-o', '/tmp/m', '-'], { encoding: 'utf8', input: '' });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("error: unexpected argument '--full-auto' found");
    const bad = spawnSync(FAKE_CODEX, ['exec', '--sandbox', 'sideways', '-'], { encoding: 'utf8', input: '' });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain("error: invalid value 'sideways'");
    expect(execFileSync(FAKE_CODEX, ['exec', '--sandbox', 'workspace-write', '--json', '--help'], { encoding: 'utf8' })).toBe(HELP_0171);
  });
});

describe('doctor and run-agent-step with codex versions', () => {
  test('doctor reports the version, and fails when codex refuses the command line agentpr would run', async () => {
    h = makeHarness({ policy: { run_agent_step: { codex_extra_args: ['--color', 'purple'] } } });
    const r = ok(await h.call('doctor', {}));
    const codex = (r.checks as Array<{ name: string; ok: boolean; detail: string; fix: string | null }>).find((c) => c.name === 'codex')!;
    expect(codex.ok).toBe(false);
    expect(codex.detail).toContain('codex 0.171.0 refuses the worker command line');
    expect(codex.detail).toContain("invalid value 'purple'");
    expect(codex.fix).toMatch(/codex_extra_args/);
  });

  test('an old codex without --json: run-agent-step refuses naming the version and flag, nothing changes', async () => {
    h = makeHarness();
    const { runId } = await preparedRun(h);
    const oldHelp = join(h.tmp, 'old-help.txt');
    writeFileSync(oldHelp, HELP_0171.replace(/\n\s+--json\n[^\n]*\n/, '\n'));
    h.setEnv({ FAKE_CODEX_HELP: oldHelp, FAKE_CODEX_VERSION: '0.40.0' });
    // A different help means a different binary to the cache only by mtime; start clean.
    clearProbeCache();
    const before = dbFingerprint(h.app.db);
    const r = await h.call('run-agent-step', { run_id: runId, prompt: 'x', skip_doctor: true });
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toMatch(/codex 0\.40\.0 at .* has no --json flag/);
    expect(dbFingerprint(h.app.db)).toBe(before);
  });

  test('policy codex_extra_args and the call codex_args reach codex; owned flags are refused without changes', async () => {
    h = makeHarness({ policy: { run_agent_step: { codex_extra_args: ['--ephemeral'] } } });
    const { runId } = await preparedRun(h);
    const record = join(h.tmp, 'record.json');
    h.setEnv({ FAKE_CODEX_SCENARIO: scenario('discovery-smoke'), FAKE_CODEX_RECORD: record });
    const before = dbFingerprint(h.app.db);
    const refused = await h.call('run-agent-step', { run_id: runId, prompt: 'x', codex_args: ['--sandbox', 'danger-full-access'] });
    expect(refused.ok).toBe(false);
    if (!refused.ok) expect(refused.error).toMatch(/codex_args: --sandbox is set by agentpr/);
    expect(dbFingerprint(h.app.db)).toBe(before);
    ok(await h.call('run-agent-step', { run_id: runId, prompt: 'x', codex_args: ['-c', 'model_reasoning_effort="high"'] }));
    const rec = JSON.parse(readFileSync(record, 'utf8')) as { argv: string[] };
    expect(rec.argv.slice(-4)).toEqual(['--ephemeral', '-c', 'model_reasoning_effort="high"', '-']);
  });
});

describe('a command line codex refuses is a configuration error, not a retry', () => {
  test('codex exits 2 on an argument (doctor skipped): HUMAN_REVIEW runtime_config_error on the first attempt', async () => {
    h = makeHarness({ policy: { run_agent_step: { codex_extra_args: ['--color', 'purple'] } } });
    const { runId } = await preparedRun(h);
    await toImplementing(h, runId);
    const r = ok(await h.call('run-agent-step', { run_id: runId, prompt: 'x', skip_doctor: true })) as { grade: string; reason_code: string; exit_code: number; evidence: string[]; state_after: string };
    expect(r).toMatchObject({ grade: 'HUMAN_REVIEW', reason_code: 'runtime_config_error', exit_code: 2, state_after: 'NEEDS_HUMAN_REVIEW' });
    expect(r.evidence.join('\n')).toContain("codex said: error: invalid value 'purple'");
  });
});

describe('one table of failure patterns', () => {
  test.each(FAILURE_PATTERNS.map((p) => [p.kind, p.name, p] as const))('%s pattern %s matches its real example line', (_k, _n, p) => {
    expect(p.re.test(p.example)).toBe(true);
  });

  const policy = agentPolicyFor(PolicySchema.parse({}));
  const judge = (stderrTail: string, errors: string[] = [], exitCode: number | null = 1) => {
    const acc = new StreamAccumulator();
    for (const m of errors) acc.pushLine(stampLine(JSON.stringify({ type: 'error', message: m }), new Date()));
    return decideVerdict({ stream: acc.result(), exitCode, stateBefore: 'IMPLEMENTING', attemptNo: 1, policy, stderrTail });
  };

  // Lines as codex 0.171.0 printed them (stderr or `error` events), against a local Responses API.
  test.each([
    ["error: unexpected argument '--full-auto' found\n\nUsage: codex exec [OPTIONS] [PROMPT]", [], 'runtime_config_error'],
    ['', ['Missing environment variable: `OPENAI_API_KEY`.'], 'runtime_config_error'],
    ['Error loading config.toml:\n/h/.codex/config.toml:2:22: unclosed table, expected `]`', [], 'runtime_config_error'],
    ['', ['Model metadata for `no-such-model-x` not found. Defaulting to fallback metadata; this can degrade performance and cause issues.', 'stream disconnected before completion'], 'runtime_config_error'],
    ['', ['Reconnecting... 1/5 (We’re currently experiencing high demand, which may cause temporary errors.)', 'We’re currently experiencing high demand, which may cause temporary errors.'], 'runtime_transient_failure'],
    ['', ['Reconnecting... 5/5 (some new upstream wording)'], 'runtime_transient_failure'],
    ['', ['exceeded retry limit, last status: 429 Too Many Requests'], 'runtime_transient_failure'],
    ['', ['unexpected status 503 Service Unavailable: unavailable, url: http://127.0.0.1:18123/v1/responses'], 'runtime_transient_failure'],
    ['', ['Reconnecting... 1/1 (unexpected status 401 Unauthorized: Incorrect API key provided, url: http://127.0.0.1:18123/v1/responses)', 'unexpected status 401 Unauthorized: Incorrect API key provided, url: http://127.0.0.1:18123/v1/responses'], 'runtime_hard_failure'],
    ['', ['Reconnecting... 2/5 (a new message)'], 'runtime_unknown_failure'],
  ] as const)('%j %j -> %s', (stderr, errors, code) => {
    const v = judge(stderr, [...errors]);
    expect(v!.reason_code).toBe(code);
    if (code === 'runtime_config_error') {
      expect(v!.grade).toBe('HUMAN_REVIEW');
      expect(v!.evidence.some((e) => e.startsWith('codex said: '))).toBe(true);
    }
    expect(new Set(v!.evidence).size).toBe(v!.evidence.length);
  });
});

describe('the repository is judged by git', () => {
  test("a commit nobody reported in the stream (a sub-agent's) is agent_push_disallowed; changed files come from git", async () => {
    h = makeHarness();
    const { runId, workspace } = await preparedRun(h);
    await toImplementing(h, runId);
    const sc = join(h.tmp, 'silent-commit.json');
    const base = JSON.parse(readFileSync(scenario('implement-pass'), 'utf8')) as Record<string, unknown>;
    writeFileSync(sc, JSON.stringify({ ...base, silent_commit: true, line_delay_ms: 0 }));
    h.setEnv({ FAKE_CODEX_SCENARIO: sc });
    const headBefore = git(workspace, ['rev-parse', 'HEAD']).trim();
    const r = ok(await h.call('run-agent-step', { run_id: runId, prompt: 'x' })) as { grade: string; reason_code: string; evidence: string[]; artifacts: Array<{ type: string; uri: string }> };
    expect(git(workspace, ['rev-parse', 'HEAD']).trim()).not.toBe(headBefore);
    expect(r).toMatchObject({ grade: 'HUMAN_REVIEW', reason_code: 'agent_push_disallowed' });
    expect(r.evidence.join('\n')).toMatch(/git shows: HEAD moved from .* \(\w+ .*: sub-agent commit\)/);
    const digest = JSON.parse(readFileSync(r.artifacts.find((a) => a.type === 'run_digest')!.uri, 'utf8')) as { changes: { diff: { changed_files: number; files: Array<{ path: string }> } } };
    expect(digest.changes.diff.changed_files).toBe(1);
    expect(digest.changes.diff.files.map((f) => f.path)).toEqual(['src/greeting.txt']);
  });
});
