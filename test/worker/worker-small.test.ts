import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dbFingerprint } from '../helpers/db.js';
import { join } from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { parseToolArgs } from '../../src/cli-main.js';
import { TOOLS } from '../../tools/index.js';
import { makeHarness, ok, preparedRun, scenario, toImplementing, type Harness } from './harness.js';

let h: Harness | undefined;
afterEach(async () => {
  await h?.cleanup();
  h = undefined;
});

type Step = { grade: string; reason_code: string; artifacts: Array<{ type: string; uri: string }> };

describe('small things the worker gets right', () => {
  test('an empty -o file after a failed turn: the last agent_message of the stream is kept instead', async () => {
    h = makeHarness();
    const { runId } = await preparedRun(h);
    await toImplementing(h, runId);
    const sc = join(h.tmp, 'failed-turn.json');
    writeFileSync(
      sc,
      JSON.stringify({
        events: [
          { type: 'thread.started', thread_id: 't1' },
          { type: 'turn.started' },
          { type: 'item.completed', item: { id: 'item_0', type: 'agent_message', text: 'I could not reach the model API; stopping.' } },
          { type: 'error', message: 'We’re currently experiencing high demand, which may cause temporary errors.' },
          { type: 'turn.failed', error: { message: 'We’re currently experiencing high demand, which may cause temporary errors.' } },
        ],
        last_message: '',
        exit_code: 1,
      }),
    );
    h.setEnv({ FAKE_CODEX_SCENARIO: sc });
    const r = ok(await h.call('run-agent-step', { run_id: runId, prompt: 'x' })) as Step;
    expect(r).toMatchObject({ grade: 'RETRYABLE', reason_code: 'runtime_transient_failure' });
    const last = r.artifacts.find((a) => a.type === 'agent_last_message');
    expect(last).toBeDefined();
    expect(readFileSync(last!.uri, 'utf8')).toBe('I could not reach the model API; stopping.');
  });

  test('runtime_report names override variables but never writes their values; no npm_config_store_dir', async () => {
    h = makeHarness();
    const { runId } = await preparedRun(h);
    await toImplementing(h, runId);
    const secret = 'sk-live-override-value-9f8e7d6c5b4a';
    writeFileSync(join(h.home, 'runtime_env_overrides.json'), JSON.stringify({ env: { PRIVATE_REGISTRY_TOKEN: secret, CUSTOM_TOOL_HOME: '{runtime}/custom-tool' } }));
    const record = join(h.tmp, 'record.json');
    h.setEnv({ FAKE_CODEX_SCENARIO: scenario('implement-pass'), FAKE_CODEX_RECORD: record });
    const r = ok(await h.call('run-agent-step', { run_id: runId, prompt: 'x' })) as Step;
    const reportPath = r.artifacts.find((a) => a.type === 'agent_runtime_report')!.uri;
    const text = readFileSync(reportPath, 'utf8');
    expect(text).not.toContain(secret);
    const report = JSON.parse(text) as { env: { applied: Record<string, string | null>; overridden: string[] }; codex_version: string };
    expect(report.env.overridden).toEqual(['CUSTOM_TOOL_HOME', 'PRIVATE_REGISTRY_TOKEN']);
    expect(Object.keys(report.env.applied)).not.toContain('PRIVATE_REGISTRY_TOKEN');
    expect(report.codex_version).toBe('0.171.0');
    const rec = JSON.parse(readFileSync(record, 'utf8')) as { env: Record<string, string> };
    expect(rec.env.npm_config_store_dir).toBeUndefined();
    expect(report.env.applied.npm_config_store_dir).toBeUndefined();
    // The digest and insight do not carry it either.
    for (const a of r.artifacts) if (a.type !== 'agent_event_stream') expect(readFileSync(a.uri, 'utf8'), a.type).not.toContain(secret);
  });

  test('analyze-stream --exit-code null means killed by a signal, as its help says', () => {
    const tool = TOOLS.find((t) => t.name === 'analyze-stream')!;
    expect(parseToolArgs(tool, ['/tmp/s.jsonl', '--exit-code', 'null'])).toMatchObject({ exit_code: null });
    expect(parseToolArgs(tool, ['/tmp/s.jsonl', '--exit-code=3'])).toMatchObject({ exit_code: 3 });
    expect(() => parseToolArgs(tool, ['/tmp/s.jsonl', '--exit-code', 'none'])).toThrow(/--exit-code expects a number, got 'none'/);
  });

  test('per-call overrides change this call only and are recorded on the attempt', async () => {
    h = makeHarness();
    const { runId, workspace } = await preparedRun(h);
    await toImplementing(h, runId);
    writeFileSync(join(workspace, 'notes.txt'), 'left over\n');
    h.setEnv({ FAKE_CODEX_SCENARIO: scenario('implement-pass') });
    const refused = await h.call('run-agent-step', { run_id: runId, prompt: 'x' });
    expect(!refused.ok && refused.error).toMatch(/^dirty_workspace_before_agent/);
    const r = ok(
      await h.call('run-agent-step', { run_id: runId, prompt: 'x', allow_dirty_worktree: true, skip_preflight: true, success_state: 'UNCHANGED', min_test_commands: 2, max_added_lines: 500 }),
    ) as Step & { state_after: string; evidence: string[] };
    // min_test_commands 2 with one `npm test` in the stream: insufficient evidence, not the policy's 1.
    expect(r).toMatchObject({ grade: 'HUMAN_REVIEW', reason_code: 'insufficient_test_evidence' });
    expect(r.evidence[0]).toContain('min_test_commands is 2');
    const attempt = h.app.service.listAttempts(runId, 'agent').at(-1)!;
    expect(attempt.metadata.overrides).toEqual({ allow_dirty_worktree: true, skip_preflight: true, success_state: 'UNCHANGED', min_test_commands: 2, max_added_lines: 500 });
  });

  test('success_state override: PASS leaves the run where it is', async () => {
    h = makeHarness();
    const { runId } = await preparedRun(h);
    await toImplementing(h, runId);
    h.setEnv({ FAKE_CODEX_SCENARIO: scenario('implement-pass') });
    const r = ok(await h.call('run-agent-step', { run_id: runId, prompt: 'x', success_state: 'UNCHANGED' })) as Step & { state_after: string };
    expect(r).toMatchObject({ grade: 'PASS', state_after: 'IMPLEMENTING' });
  });

  test('task_packet_file: its skills plan and contract are used, limits and paths stay agentpr\'s; a contract outside its folder is refused', async () => {
    h = makeHarness({ policy: { run_agent_step: { skills_mode: 'agentpr' } } });
    const { runId } = await preparedRun(h);
    await toImplementing(h, runId);
    ok(await h.call('install-skills', {}));
    const record = join(h.tmp, 'record.json');
    h.setEnv({ FAKE_CODEX_SCENARIO: scenario('implement-pass'), FAKE_CODEX_RECORD: record });
    const dir = join(h.tmp, 'packet');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'my-contract.md'), '# My contract\n');
    const packet = {
      schema: 'agentpr.task_packet.v1',
      created_at: '2026-12-01T00:00:00Z',
      run: { run_id: 'run_other', owner: 'x', repo: 'y', state: 'IMPLEMENTING', prompt_version: 'v1', workspace_dir: '/elsewhere' },
      stage: 'IMPLEMENTING',
      attempt_no: 9,
      skills: { mode: 'agentpr', installed_dir: '/nowhere', plan: [{ name: 'agentpr-discovery', path: '/nowhere/SKILL.md' }] },
      contract: { source: 'my-contract.md', path: '/x', relative_path: 'x' },
      limits: { sandbox: 'danger-full-access', max_agent_seconds: 99999, max_changed_files: 999, max_added_lines: 99999, min_test_commands: 0, max_retryable_attempts: 99 },
      paths: { runtime_dir: '/tmp/evil', task_packet: '/tmp/evil/p.json', last_message: '/tmp/evil/m.txt' },
    };
    const file = join(dir, 'packet.json');
    writeFileSync(file, JSON.stringify(packet));
    const r = ok(await h.call('run-agent-step', { run_id: runId, prompt: 'x', task_packet_file: file })) as Step;
    const used = JSON.parse(readFileSync(r.artifacts.find((a) => a.type === 'task_packet')!.uri, 'utf8')) as typeof packet;
    expect(used.skills.plan.map((p) => p.name)).toEqual(['agentpr-discovery']);
    expect(used.contract?.relative_path).toBe('.agentpr_runtime/contracts/my-contract.md');
    expect(used.run.run_id).toBe(runId);
    expect(used.limits).toMatchObject({ sandbox: 'workspace-write', max_changed_files: 6, min_test_commands: 1 });
    expect(used.paths.runtime_dir).not.toBe('/tmp/evil');
    const attempt = h.app.service.listAttempts(runId, 'agent').at(-1)!;
    expect(attempt.metadata.overrides).toEqual({ task_packet_file: file });

    writeFileSync(file, JSON.stringify({ ...packet, contract: { source: '/etc/passwd', path: '/x', relative_path: 'x' } }));
    const { runId: run2 } = await preparedRun(h, 'demo2');
    await toImplementing(h, run2);
    const before = dbFingerprint(h.app.db);
    const refused = await h.call('run-agent-step', { run_id: run2, prompt: 'x', task_packet_file: file });
    expect(!refused.ok && refused.error).toMatch(/contract\.source must be a file in .*packet or below/);
    expect(dbFingerprint(h.app.db)).toBe(before);
  });
});
