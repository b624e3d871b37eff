import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { dbFingerprint } from '../helpers/db.js';
import { git } from '../helpers/git.js';
import { retentionBucket } from '../../src/analysis/index.js';
import { activeAgentStep } from '../../src/worker/active.js';
import { alive, makeHarness, ok, preparedRun, scenario, toImplementing, waitFor, type Harness } from './harness.js';

let h: Harness | undefined;
afterEach(async () => {
  await h?.cleanup();
  h = undefined;
});

type StepData = {
  attempt_no: number;
  status: string;
  state_before: string;
  state_after: string;
  grade: string | null;
  reason_code: string | null;
  timed_out: boolean;
  kept_event_stream: boolean | null;
  artifacts: Array<{ type: string; uri: string }>;
  evidence: string[];
  event: { event_type: string } | null;
};

describe('run-agent-step through the registry', () => {
  test('QUEUED run: moved to DISCOVERY, discovery PASS leaves the state unchanged, command line and env as specified', async () => {
    h = makeHarness();
    const created = ok(await h.call('create-run', { owner: 'octo', repo: 'demo' }));
    const runId = (created.run as { run_id: string }).run_id;
    const workspace = (created.run as { workspace_dir: string }).workspace_dir;
    // Clone by hand: the step itself is what moves QUEUED -> DISCOVERY here.
    git(h.tmp, ['clone', '-q', h.forge.forkUrl, workspace]);
    const record = join(h.tmp, 'record.json');
    h.setEnv({ FAKE_CODEX_SCENARIO: scenario('discovery-smoke'), FAKE_CODEX_RECORD: record });

    // From MCP a read root must lie below the allowed roots (here the data home).
    const reference = join(h.home, 'reference');
    mkdirSync(reference);
    const r = ok(await h.call('run-agent-step', { run_id: runId, prompt: 'Survey the repository.', allowed_read_only_roots: [reference] })) as StepData;
    expect(r).toMatchObject({ status: 'finished', state_before: 'DISCOVERY', state_after: 'DISCOVERY', grade: 'PASS', reason_code: 'runtime_success', event: null });
    const events = h.app.service.listEvents(runId).map((e) => e.event_type);
    expect(events).toEqual(['command.run.create', 'command.start.discovery']);

    const rec = JSON.parse(readFileSync(record, 'utf8')) as { argv: string[]; cwd: string; env: Record<string, string>; stdin: string | null };
    const lastMessage = join(workspace, '.agentpr_runtime', 'codex_last_message.txt');
    // No --full-auto (codex 0.171.0 refuses it); the prompt is not in argv: `-` and stdin.
    expect(rec.argv).toEqual(['exec', '--sandbox', 'workspace-write', '--json', '--output-last-message', lastMessage, '-']);
    const prompt = rec.stdin!;
    expect(prompt).toMatch(/^SAFETY CONTRACT/);
    expect(prompt).toContain(`Work only inside the repository at ${workspace}`);
    expect(prompt).toContain(reference);
    expect(prompt.endsWith('\n---\n\nSurvey the repository.')).toBe(true);
    expect(rec.cwd).toBe(workspace);
    const rt = join(workspace, '.agentpr_runtime');
    for (const k of ['XDG_CACHE_HOME', 'XDG_DATA_HOME', 'TMPDIR', 'npm_config_cache', 'PIP_CACHE_DIR', 'UV_CACHE_DIR', 'GOCACHE']) {
      expect(rec.env[k], k).toMatch(new RegExp(`^${rt}/`));
    }
    expect(rec.env.CODEX_HOME).toBe(h.codexHome);
    expect(rec.env.HOME).toBe(process.env.HOME);
    // The runtime dir never shows up as a change.
    expect(git(workspace, ['status', '--porcelain'])).toBe('');
    expect(readFileSync(lastMessage, 'utf8')).toContain('Read-only status check complete');
    const types = h.app.service.listArtifacts(runId).map((a) => a.artifact_type).sort();
    expect(types).toEqual(expect.arrayContaining(['agent_last_message', 'agent_runtime_report', 'manager_insight', 'run_digest']));
  });

  test('failing test command with exit 0 -> NEEDS_HUMAN_REVIEW test_command_failed, stream kept', async () => {
    h = makeHarness();
    const { runId } = await preparedRun(h);
    await toImplementing(h, runId);
    h.setEnv({ FAKE_CODEX_SCENARIO: scenario('test-fail-exit0') });
    const r = ok(await h.call('run-agent-step', { run_id: runId, prompt: 'Fix the exa types.' })) as StepData & { exit_code: number };
    expect(r.exit_code).toBe(0);
    expect(r).toMatchObject({ grade: 'HUMAN_REVIEW', reason_code: 'test_command_failed', state_before: 'IMPLEMENTING', state_after: 'NEEDS_HUMAN_REVIEW', kept_event_stream: true });
    expect(r.evidence.join('\n')).toMatch(/bun test/);
    const run = h.app.service.getRun(runId);
    expect(run.last_error).toMatch(/^agent:test_command_failed:/);
    const stream = h.app.service.listArtifacts(runId, 'agent_event_stream');
    expect(stream).toHaveLength(1);
    const first = readFileSync(stream[0]!.uri, 'utf8').split('\n')[0]!;
    expect(JSON.parse(first)).toMatchObject({ type: 'thread.started' });
    expect(first).toMatch(/^\{"_ts":"\d{4}-\d\d-\d\dT/);
    const attempt = h.app.service.listAttempts(runId, 'agent')[0]!;
    expect(attempt).toMatchObject({ status: 'failed', exit_code: 0, reason_code: 'test_command_failed' });
  });

  test('a hang is killed at the timeout: timer.timeout, no process of the tree left', async () => {
    h = makeHarness();
    const { runId } = await preparedRun(h);
    await toImplementing(h, runId);
    const pids = join(h.tmp, 'pids.json');
    h.setEnv({ FAKE_CODEX_SCENARIO: scenario('hang'), FAKE_CODEX_PIDS_FILE: pids });
    const r = ok(await h.call('run-agent-step', { run_id: runId, prompt: 'Run the watcher.', max_agent_seconds: 2 })) as StepData;
    expect(r).toMatchObject({ timed_out: true, state_after: 'FAILED_RETRYABLE', reason_code: 'timeout' });
    expect(r.event?.event_type).toBe('timer.timeout');
    const { parent, child } = JSON.parse(readFileSync(pids, 'utf8')) as { parent: number; child: number };
    expect(alive(parent)).toBe(false);
    expect(alive(child)).toBe(false);
    const run = h.app.service.getRun(runId);
    expect(run.last_error).toBe('timeout:agent');
    const attempt = h.app.service.listAttempts(runId, 'agent')[0]!;
    expect(attempt.status).toBe('timed_out');
    // The digest is written anyway.
    expect(h.app.service.listArtifacts(runId, 'run_digest')).toHaveLength(1);
  });

  test('pausing the run while the worker runs stops the worker; the run stays PAUSED', async () => {
    h = makeHarness();
    const { runId } = await preparedRun(h);
    await toImplementing(h, runId);
    const pids = join(h.tmp, 'pids.json');
    h.setEnv({ FAKE_CODEX_SCENARIO: scenario('hang'), FAKE_CODEX_PIDS_FILE: pids });
    ok(await h.call('run-agent-step', { run_id: runId, prompt: 'Run the watcher.', wait: false }));
    await waitFor('the worker to start its child', () => existsSync(pids));
    const done = activeAgentStep(h.app, runId)!.done;
    ok(await h.call('pause', { run_id: runId }));
    await done;
    const { parent, child } = JSON.parse(readFileSync(pids, 'utf8')) as { parent: number; child: number };
    expect(alive(parent)).toBe(false);
    expect(alive(child)).toBe(false);
    expect(h.app.service.getRun(runId).state).toBe('PAUSED');
    const attempt = h.app.service.listAttempts(runId, 'agent')[0]!;
    expect(attempt).toMatchObject({ status: 'failed', reason_code: 'cancelled' });
    expect(h.app.service.listEvents(runId).map((e) => e.event_type).slice(-1)).toEqual(['command.pause']);
  });

  test('a failed preflight is the verdict: the worker never starts', async () => {
    h = makeHarness();
    const { runId, workspace } = await preparedRun(h);
    await toImplementing(h, runId);
    writeFileSync(join(workspace, '.git', 'index.lock'), '');
    const record = join(h.tmp, 'record.json');
    h.setEnv({ FAKE_CODEX_SCENARIO: scenario('implement-pass'), FAKE_CODEX_RECORD: record });
    const r = ok(await h.call('run-agent-step', { run_id: runId, prompt: 'Add the greeting.' })) as StepData & { exit_code: number | null };
    expect(r).toMatchObject({ grade: 'HUMAN_REVIEW', reason_code: 'preflight_hard_failure', state_after: 'NEEDS_HUMAN_REVIEW', exit_code: null });
    expect(r.evidence.join('\n')).toMatch(/git_writable/);
    expect(existsSync(record)).toBe(false);
    const digest = JSON.parse(readFileSync(h.app.service.latestArtifact(runId, 'run_digest')!.uri, 'utf8')) as { preflight: { ok: boolean } };
    expect(digest.preflight.ok).toBe(false);
  });

  test('a transient worker failure -> RETRYABLE -> FAILED_RETRYABLE via worker.step.failed', async () => {
    h = makeHarness();
    const { runId } = await preparedRun(h);
    await toImplementing(h, runId);
    h.setEnv({ FAKE_CODEX_SCENARIO: scenario('transient-failure') });
    const r = ok(await h.call('run-agent-step', { run_id: runId, prompt: 'Implement it.' })) as StepData;
    expect(r).toMatchObject({ grade: 'RETRYABLE', reason_code: 'runtime_transient_failure', state_after: 'FAILED_RETRYABLE' });
    expect(r.event?.event_type).toBe('worker.step.failed');
  });

  describe('refusals change nothing', () => {
    test('dirty worktree', async () => {
      h = makeHarness();
      const { runId, workspace } = await preparedRun(h);
      writeFileSync(join(workspace, 'notes.txt'), 'left over\n');
      const before = dbFingerprint(h.app.db);
      const r = await h.call('run-agent-step', { run_id: runId, prompt: 'x' });
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.error).toMatch(/^dirty_workspace_before_agent: .*notes\.txt/);
      expect(dbFingerprint(h.app.db)).toBe(before);
    });

    test('workspace outside the root', async () => {
      h = makeHarness();
      const created = ok(await h.call('create-run', { owner: 'octo', repo: 'demo', workspace_dir: join(h.tmp, 'elsewhere') }));
      const runId = (created.run as { run_id: string }).run_id;
      const before = dbFingerprint(h.app.db);
      const r = await h.call('run-agent-step', { run_id: runId, prompt: 'x' });
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.error).toMatch(/^workspace_outside_root: .*outside the workspace root/);
      expect(dbFingerprint(h.app.db)).toBe(before);
      expect(h.app.service.getRun(runId).state).toBe('QUEUED');
    });

    test('missing codex binary: exit 127 message (doctor skipped), and the doctor refuses first otherwise', async () => {
      h = makeHarness();
      const { runId } = await preparedRun(h);
      h.setEnv({ AGENTPR_CODEX_BIN: join(h.tmp, 'no-such-codex') });
      const before = dbFingerprint(h.app.db);
      const skipped = await h.call('run-agent-step', { run_id: runId, prompt: 'x', skip_doctor: true });
      expect(skipped.ok).toBe(false);
      if (!skipped.ok) {
        expect(skipped.code).toBe('configuration');
        expect(skipped.error).toMatch(/codex binary not found \(exit 127\).*no-such-codex/);
      }
      const { clearDoctorCache } = await import('../../src/worker/doctor.js');
      clearDoctorCache(h.app);
      const gated = await h.call('run-agent-step', { run_id: runId, prompt: 'x' });
      expect(gated.ok).toBe(false);
      if (!gated.ok) {
        expect(gated.code).toBe('refused');
        expect(gated.error).toMatch(/refused by the startup doctor[\s\S]*- codex:/);
      }
      expect(dbFingerprint(h.app.db)).toBe(before);
    });

    test('read-only sandbox, both prompt and prompt_file, wrong state', async () => {
      h = makeHarness();
      const { runId } = await preparedRun(h);
      const before = dbFingerprint(h.app.db);
      const ro = await h.call('run-agent-step', { run_id: runId, prompt: 'x', sandbox: 'read-only' });
      expect(!ro.ok && ro.error).toMatch(/sandbox 'read-only'.*cannot run an integration step/);
      const promptFile = join(h.app.config.home, 'prompt.md');
      writeFileSync(promptFile, 'x');
      const both = await h.call('run-agent-step', { run_id: runId, prompt: 'x', prompt_file: promptFile });
      expect(!both.ok && both.error).toMatch(/exactly one of prompt/);
      const contract = join(h.app.config.home, 'c.md');
      writeFileSync(contract, '# contract\n');
      ok(await h.call('mark-plan-ready', { run_id: runId, contract_path: contract }));
      const mid = dbFingerprint(h.app.db);
      const wrong = await h.call('run-agent-step', { run_id: runId, prompt: 'x' });
      expect(!wrong.ok && wrong.error).toMatch(/PLAN_READY: start-implementation first/);
      expect(dbFingerprint(h.app.db)).toBe(mid);
      expect(mid).not.toBe(before);
    });
  });

  test('retention follows the sampling rule for PASS attempts', async () => {
    for (const pct of [0, 100]) {
      h = makeHarness({ policy: { run_agent_step: { success_event_stream_sample_pct: pct } } });
      const { runId } = await preparedRun(h);
      h.setEnv({ FAKE_CODEX_SCENARIO: scenario('discovery-smoke') });
      const r = ok(await h.call('run-agent-step', { run_id: runId, prompt: 'Look around.' })) as StepData & { reports_dir: string };
      expect(r.grade).toBe('PASS');
      const expected = retentionBucket(runId, r.attempt_no) < pct;
      expect(expected).toBe(pct === 100);
      expect(r.kept_event_stream).toBe(expected);
      expect(h.app.service.listArtifacts(runId, 'agent_event_stream')).toHaveLength(expected ? 1 : 0);
      expect(existsSync(join(r.reports_dir, 'events.jsonl'))).toBe(expected);
      const digest = JSON.parse(readFileSync(h.app.service.latestArtifact(runId, 'run_digest')!.uri, 'utf8')) as { retention: { keep_event_stream: boolean } };
      expect(digest.retention.keep_event_stream).toBe(expected);
      await h.cleanup();
      h = undefined;
    }
  });

  test('wait: false returns at once; inspect-run and show-run report the running step; the result lands later', async () => {
    h = makeHarness();
    const { runId } = await preparedRun(h);
    await toImplementing(h, runId);
    h.setEnv({ FAKE_CODEX_SCENARIO: scenario('implement-pass'), FAKE_CODEX_LINE_DELAY_MS: '300' });
    const r = ok(await h.call('run-agent-step', { run_id: runId, prompt: 'Add the greeting.', wait: false })) as StepData;
    expect(r).toMatchObject({ status: 'running', attempt_no: 1, state_before: 'IMPLEMENTING', grade: null });
    const inspected = ok(await h.call('inspect-run', { run_id: runId })) as { active: { attempt_no: number } | null };
    expect(inspected.active?.attempt_no).toBe(1);
    const shown = ok(await h.call('show-run', { run_id: runId })) as { attempts: Array<{ step: string; status: string }> };
    expect(shown.attempts.find((a) => a.step === 'agent')?.status).toBe('running');
    const second = await h.call('run-agent-step', { run_id: runId, prompt: 'again' });
    expect(!second.ok && second.error).toMatch(/already running/);
    await activeAgentStep(h.app, runId)?.done;
    await waitFor('the step to finish', () => h!.app.service.getRun(runId).state === 'LOCAL_VALIDATING');
    const after = ok(await h.call('inspect-run', { run_id: runId })) as { active: unknown; latest: { grade: string; reason_code: string } };
    expect(after.active).toBeNull();
    expect(after.latest).toMatchObject({ grade: 'PASS', reason_code: 'runtime_success' });
  });

  test('progress callbacks carry the latest command', async () => {
    h = makeHarness();
    const { runId } = await preparedRun(h);
    await toImplementing(h, runId);
    h.setEnv({ FAKE_CODEX_SCENARIO: scenario('implement-pass') });
    const updates: Array<{ progress: number; message?: string }> = [];
    ok(await h.call('run-agent-step', { run_id: runId, prompt: 'Add the greeting.' }, { progress: async (u) => void updates.push(u) }));
    expect(updates.length).toBeGreaterThanOrEqual(2);
    expect(updates.some((u) => u.message?.includes('latest command: npm test'))).toBe(true);
    for (let i = 1; i < updates.length; i++) expect(updates[i]!.progress).toBeGreaterThan(updates[i - 1]!.progress);
  });
});
