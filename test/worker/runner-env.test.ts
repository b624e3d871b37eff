import { detectContainment } from '../../src/worker/contain.js';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { dbFingerprint } from '../helpers/db.js';
import { tempDir } from '../helpers/app.js';
import { buildRuntimeEnv, excludeRuntimeDir, loadEnvOverrides, RUNTIME_ENV_TEMPLATE } from '../../src/worker/env.js';
import { composePrompt, resolveCodexBin, runProcess, safetyContract } from '../../src/worker/runner.js';
import { git } from '../helpers/git.js';
import { alive, FAKE_CODEX, makeHarness, ok, preparedRun, scenario, toImplementing, type Harness } from './harness.js';

let h: Harness | undefined;
afterEach(async () => {
  await h?.cleanup();
  h = undefined;
});

describe('codex command', () => {
  test('safety contract forbids outside writes and names the read-only roots', () => {
    const c = safetyContract({ repoDir: '/w/demo', readOnlyRoots: ['/opt/ref', '/opt/ref', '/w/demo'] });
    expect(c).toContain('Work only inside the repository at /w/demo. Do not create, modify or delete files outside it.');
    expect(c).toContain('READ (never write) these paths outside the repository: /opt/ref.');
    expect(c).toContain('Do not run git commit, git push or finish.sh');
    expect(composePrompt(c, 'do it')).toBe(`${c}\n---\n\ndo it`);
  });

  test('binary from AGENTPR_CODEX_BIN or PATH; missing is exit 127 with a fix', () => {
    const dir = tempDir();
    const bin = join(dir, 'codex');
    writeFileSync(bin, '#!/bin/sh\n');
    chmodSync(bin, 0o755);
    expect(resolveCodexBin({ PATH: `/nonexistent:${dir}` })).toBe(bin);
    expect(resolveCodexBin({ PATH: '', AGENTPR_CODEX_BIN: bin })).toBe(bin);
    expect(() => resolveCodexBin({ PATH: '/nonexistent' })).toThrow(/codex binary not found \(exit 127\): 'codex' is not on PATH; install the Codex CLI/);
    expect(() => resolveCodexBin({ PATH: '', AGENTPR_CODEX_BIN: join(dir, 'nope') })).toThrow(/AGENTPR_CODEX_BIN=.*nope is not an executable file/);
  });
});

describe('runtime env', () => {
  test('template under .agentpr_runtime; overrides extend (with placeholders and removal) or replace', () => {
    const repo = tempDir();
    const rt = join(repo, '.agentpr_runtime');
    const base = buildRuntimeEnv(repo, { baseEnv: { PATH: '/bin', HOME: '/home/u', CODEX_HOME: '/home/u/.codex', XDG_CONFIG_HOME: '/home/u/.config' } });
    for (const [k, rel] of Object.entries(RUNTIME_ENV_TEMPLATE)) expect(base.env[k]).toBe(join(rt, rel));
    expect(base.env).toMatchObject({ PATH: '/bin', HOME: '/home/u', CODEX_HOME: '/home/u/.codex', XDG_CONFIG_HOME: '/home/u/.config' });

    const home = tempDir();
    writeFileSync(join(home, 'runtime_env_overrides.json'), JSON.stringify({ mode: 'extend', env: { BUNDLE_PATH: '{runtime}/bundle', XDG_DATA_HOME: null } }));
    writeFileSync(join(repo, 'runtime_env_overrides.json'), JSON.stringify({ env: { REPO_ROOT: '{repo}' } }));
    const loaded = loadEnvOverrides(repo, home, {});
    // The clone's own file is never read: only the operator's.
    expect(loaded.files).toEqual([join(home, 'runtime_env_overrides.json')]);
    expect(loaded.ignored).toBe(join(repo, 'runtime_env_overrides.json'));
    const ext = buildRuntimeEnv(repo, { baseEnv: { XDG_DATA_HOME: '/home/u/.local/share' }, overrides: loaded });
    expect(ext.env.BUNDLE_PATH).toBe(join(rt, 'bundle'));
    expect(ext.env.REPO_ROOT).toBeUndefined();
    expect('XDG_DATA_HOME' in ext.env).toBe(false);
    expect(ext.env.XDG_CACHE_HOME).toBe(join(rt, 'cache'));

    writeFileSync(join(home, 'runtime_env_overrides.json'), JSON.stringify({ mode: 'replace', env: { TMPDIR: '{runtime}/t' } }));
    const rep = buildRuntimeEnv(repo, { baseEnv: {}, overrides: loadEnvOverrides(repo, home, {}) });
    expect(rep.applied).toEqual({ TMPDIR: join(rt, 't'), AGENTPR_RUNTIME_DIR: rt });

    writeFileSync(join(home, 'runtime_env_overrides.json'), JSON.stringify({ mode: 'merge', env: { 'BAD NAME': 'x' } }));
    expect(() => loadEnvOverrides(repo, home, {})).toThrow(/invalid runtime env overrides .*runtime_env_overrides\.json: mode: .*; env\.BAD NAME/);
  });

  test('the runtime dir is excluded from git status', () => {
    const repo = tempDir();
    git(repo, ['init', '-q']);
    mkdirSync(join(repo, '.agentpr_runtime'));
    writeFileSync(join(repo, '.agentpr_runtime', 'x'), 'x');
    expect(git(repo, ['status', '--porcelain'])).toContain('.agentpr_runtime');
    excludeRuntimeDir(repo);
    excludeRuntimeDir(repo);
    expect(git(repo, ['status', '--porcelain'])).toBe('');
    expect(readFileSync(join(repo, '.git', 'info', 'exclude'), 'utf8').match(/\/\.agentpr_runtime\//g)).toHaveLength(1);
  });

  test('an invalid overrides file refuses the step with its name and changes nothing', async () => {
    h = makeHarness();
    const { runId } = await preparedRun(h);
    writeFileSync(join(h.home, 'runtime_env_overrides.json'), '{"mode": "extend", "env": {"A": 1}}');
    const before = dbFingerprint(h.app.db);
    const r = await h.call('run-agent-step', { run_id: runId, prompt: 'x' });
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.code).toBe('configuration');
      expect(r.error).toMatch(/invalid runtime env overrides .*home\/runtime_env_overrides\.json: env\.A/);
    }
    expect(dbFingerprint(h.app.db)).toBe(before);
  });

  test('the worker gets the override variables', async () => {
    h = makeHarness();
    const { runId, workspace } = await preparedRun(h);
    await toImplementing(h, runId);
    writeFileSync(join(h.home, 'runtime_env_overrides.json'), JSON.stringify({ env: { CUSTOM_TOOL_HOME: '{runtime}/custom-tool' } }));
    const record = join(h.tmp, 'record.json');
    h.setEnv({ FAKE_CODEX_SCENARIO: scenario('implement-pass'), FAKE_CODEX_RECORD: record });
    ok(await h.call('run-agent-step', { run_id: runId, prompt: 'x' }));
    const rec = JSON.parse(readFileSync(record, 'utf8')) as { env: Record<string, string> };
    expect(rec.env.CUSTOM_TOOL_HOME).toBe(join(workspace, '.agentpr_runtime', 'custom-tool'));
  });
});

describe('runProcess', () => {
  test('SIGTERM-ignoring worker and child are SIGKILLed after the grace; lines are stamped', async () => {
    const dir = tempDir();
    const pids = join(dir, 'pids.json');
    const r = await runProcess({
      bin: FAKE_CODEX,
      args: ['exec', '--sandbox', 'workspace-write', '--json', '--output-last-message', join(dir, 'm.txt'), 'p'],
      cwd: dir,
      env: { ...(process.env as Record<string, string>), FAKE_CODEX_SCENARIO: scenario('hang'), FAKE_CODEX_IGNORE_SIGTERM: '1', FAKE_CODEX_PIDS_FILE: pids },
      eventsPath: join(dir, 'events.jsonl'),
      stderrPath: join(dir, 'stderr.log'),
      timeoutMs: 2000,
      killGraceMs: 300,
      stamp: (line, at) => `${at.toISOString()} ${line}`,
      // The pids file holds host pids only outside a PID namespace.
      containment: detectContainment({ AGENTPR_WORKER_CONTAINMENT: 'session' }),
    });
    expect(r).toMatchObject({ timedOut: true, groupSignals: ['SIGTERM', 'SIGKILL'], lineCount: 3, signal: 'SIGKILL' });
    const { parent, child } = JSON.parse(readFileSync(pids, 'utf8')) as { parent: number; child: number };
    expect(alive(parent)).toBe(false);
    expect(alive(child)).toBe(false);
    expect(readFileSync(join(dir, 'stderr.log'), 'utf8')).toContain('ignoring SIGTERM');
    expect(readFileSync(join(dir, 'events.jsonl'), 'utf8').split('\n')[0]).toMatch(/^\d{4}-\d\d-\d\dT\S+ \{"type":"thread.started"/);
  });
});
