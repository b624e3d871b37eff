import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import pino from 'pino';
import { createApp } from '../../src/app.js';
import { ConfigurationError } from '../../src/core/errors.js';
import { DEFAULT_POLICY, PolicySchema, agentPolicyFor } from '../../src/policy.js';
import { defaultPolicyFile, loadPolicy, loadPolicyWithSource, packageRoot } from '../../src/policy-file.js';
import { Registry } from '../../src/registry.js';
import { TOOLS } from '../../tools/index.js';
import { makeTestApp, tempDir } from '../helpers/app.js';
import { connectInMemory } from '../helpers/mcp.js';

const registry = new Registry(TOOLS);
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()?.();
});

function policyFile(content: unknown): string {
  const file = join(tempDir('agentpr-policy-'), 'policy.json');
  writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content));
  return file;
}

function loadError(content: unknown): string {
  const file = policyFile(content);
  try {
    loadPolicy(file);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigurationError);
    const message = (err as Error).message;
    expect(message).toContain(file);
    return message;
  }
  throw new Error('expected loadPolicy to fail');
}

describe('policy file', () => {
  test('the project file sits at the package root (not the cwd) and repeats the built-in defaults exactly', () => {
    expect(defaultPolicyFile()).toBe(join(packageRoot(), 'policies', 'manager_policy.json'));
    const raw: unknown = JSON.parse(readFileSync(defaultPolicyFile(), 'utf8'));
    expect(raw).toEqual(PolicySchema.parse({}));
    const loaded = loadPolicyWithSource(undefined);
    expect(loaded.source).toBe(defaultPolicyFile());
    expect(loaded.policy).toEqual(DEFAULT_POLICY);
    expect(readFileSync(defaultPolicyFile(), 'utf8')).not.toMatch(/\/(home|Users|tmp|work)\//);
  });

  test('a partial file is deep-merged over the built-ins; arrays replace', () => {
    const p = loadPolicy(policyFile({ run_agent_step: { max_agent_seconds: 60, known_test_failure_allowlist: ['flaky_.*'] }, telegram_bot: { list_limit: 5 } }));
    expect(p.run_agent_step.max_agent_seconds).toBe(60);
    expect(p.run_agent_step.max_changed_files).toBe(6);
    expect(p.run_agent_step.known_test_failure_allowlist).toEqual(['flaky_.*']);
    expect(p.telegram_bot).toEqual({ ...DEFAULT_POLICY.telegram_bot, list_limit: 5 });
    expect(p.github_webhook).toEqual(DEFAULT_POLICY.github_webhook);
  });

  test('repo overrides are keyed case-insensitively and change only the fields they name', () => {
    const p = loadPolicy(
      policyFile({ run_agent_step: { max_changed_files: 10, repo_overrides: { 'Octo-Org/Hello.World': { max_agent_seconds: 30, skills_mode: 'agentpr' } } } }),
    );
    expect(Object.keys(p.run_agent_step.repo_overrides)).toEqual(['octo-org/hello.world']);
    const eff = agentPolicyFor(p, 'OCTO-ORG', 'hello.world');
    expect(eff.max_agent_seconds).toBe(30);
    expect(eff.skills_mode).toBe('agentpr');
    expect(eff.max_changed_files).toBe(10); // from the file, not reset to the built-in 6
    expect(agentPolicyFor(p, 'other', 'repo').max_agent_seconds).toBe(900);
  });

  test('bad JSON names the file and says it is not JSON', () => {
    expect(loadError('{"run_agent_step": {')).toMatch(/is not valid JSON/);
  });

  test('an unknown key names its path and the allowed keys', () => {
    const m = loadError({ run_agent_step: { max_agent_secs: 10 } });
    expect(m).toContain('run_agent_step.max_agent_secs: unknown key');
    expect(m).toContain('max_agent_seconds');
    expect(loadError({ telegram: {} })).toMatch(/telegram: unknown key; allowed keys: run_agent_step, telegram_bot, github_webhook, github, manager/);
  });

  test('a wrong value names the key, the value and the allowed values', () => {
    expect(loadError({ run_agent_step: { codex_sandbox: 'yolo' } })).toContain(
      'run_agent_step.codex_sandbox: invalid value "yolo"; allowed: read-only, workspace-write, danger-full-access',
    );
    expect(loadError({ run_agent_step: { success_event_stream_sample_pct: 150 } })).toMatch(
      /run_agent_step\.success_event_stream_sample_pct: .*\(got 150\); allowed: an integer from 0 to 100/,
    );
    expect(loadError({ github_webhook: { max_payload_bytes: 10 } })).toMatch(/github_webhook\.max_payload_bytes: .*allowed: an integer >= 1024/);
    expect(loadError({ run_agent_step: { max_agent_seconds: '900' } })).toMatch(/max_agent_seconds: expected number, received string \(got "900"\)/);
    expect(loadError({ run_agent_step: { repo_overrides: { 'not-a-repo': {} } } })).toMatch(/repo_overrides\.not-a-repo: .*lower-case owner\/repo/);
    expect(loadError({ run_agent_step: { repo_overrides: { 'a/b': { on_retryable_state: 'LATER' } } } })).toMatch(
      /repo_overrides\.a\/b\.on_retryable_state: invalid value "LATER"; allowed: UNCHANGED, LOCAL_VALIDATING/,
    );
    expect(loadError({ run_agent_step: { known_test_failure_allowlist: ['(unclosed'] } })).toMatch(
      /known_test_failure_allowlist\.0: '\(unclosed' is not a valid regular expression/,
    );
  });

  test('a missing explicit file is an error, not a silent fallback', () => {
    expect(() => loadPolicy('/nonexistent/agentpr/policy.json')).toThrow(/policy file \/nonexistent\/agentpr\/policy.json does not exist/);
  });

  test('an invalid policy file makes createApp throw (startup error) before creating a database', () => {
    const home = tempDir('agentpr-home-');
    const file = policyFile({ run_agent_step: { skills_mode: 'always' } });
    const start = () => createApp({ home, logger: pino({ level: 'silent' }), env: { ...process.env, AGENTPR_POLICY_FILE: file } });
    expect(start).toThrow(ConfigurationError);
    expect(start).toThrow(/run_agent_step\.skills_mode: invalid value "always"; allowed: off, agentpr/);
    const viaFlag = () => createApp({ home, policyFile: file, logger: pino({ level: 'silent' }), env: { ...process.env, AGENTPR_POLICY_FILE: '' } });
    expect(viaFlag).toThrow(file);
    expect(existsSync(join(home, 'agentpr.db'))).toBe(false);
  });

  test('show-policy and agentpr://policy show the effective policy, per repo with its override', async () => {
    const file = policyFile({ run_agent_step: { max_added_lines: 300, repo_overrides: { 'acme/widget': { max_agent_seconds: 45 } } } });
    const t = makeTestApp({ env: { AGENTPR_POLICY_FILE: file } });
    cleanups.push(t.cleanup);
    const all = await registry.call('show-policy', {}, { app: t.app, entry: 'cli' });
    expect(all.ok && all.data.source).toBe(file);
    expect(all.ok && (all.data.policy as { run_agent_step: { max_added_lines: number } }).run_agent_step.max_added_lines).toBe(300);
    expect(all.ok && all.text).toContain('repo overrides: acme/widget');
    const one = await registry.call('show-policy', { owner: 'Acme', repo: 'Widget' }, { app: t.app, entry: 'cli' });
    expect(one.ok && one.data.run_agent_step).toMatchObject({ max_agent_seconds: 45, max_added_lines: 300 });
    expect(one.ok && one.data.repo_override).toEqual({ max_agent_seconds: 45 });
    const half = await registry.call('show-policy', { owner: 'acme' }, { app: t.app, entry: 'cli' });
    expect(half).toMatchObject({ ok: false, code: 'invalid_input' });

    const { client, close } = await connectInMemory(t.app);
    cleanups.push(close);
    const res = await client.readResource({ uri: 'agentpr://policy' });
    const first = res.contents[0] as { text: string };
    const body = JSON.parse(first.text) as { source: string; policy: { run_agent_step: { max_added_lines: number } } };
    expect(body.source).toBe(file);
    expect(body.policy.run_agent_step.max_added_lines).toBe(300);
  });
});
