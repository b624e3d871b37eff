import { chmodSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { z } from 'zod';
import { Registry, defineTool, type AnyTool } from '../../src/registry.js';
import { RunViewSchema } from '../../src/core/models.js';
import { TOOLS } from '../../tools/index.js';
import { gateChecksFor } from '../../src/worker/doctor.js';
import { makeTestApp, tempDir } from '../helpers/app.js';
import { dbFingerprint } from '../helpers/db.js';

const FAKE_CODEX = resolve('test/fixtures/bin/fake-codex');
const NO_TOKENS = { AGENTPR_GITHUB_TOKEN: '', GITHUB_TOKEN: '', GH_TOKEN: '', AGENTPR_TELEGRAM_BOT_TOKEN: '' };

/** Stands in for the worker tool: the gate keys on the name, so this gets the codex check. */
const fakeAgentStep = defineTool({
  name: 'run-agent-step',
  title: 'fake agent step',
  description: 'creates a run (a visible change) when allowed through',
  tier: 'write',
  annotations: {},
  input: z.object({}),
  output: z.object({ run: RunViewSchema }),
  handler: (_args, { app }) => ({ data: { run: app.service.createRun({ owner: 'acme', repo: 'widget' }) }, text: 'ok' }),
});
const createRun = TOOLS.find((t) => t.name === 'create-run') as AnyTool;
const doctor = TOOLS.find((t) => t.name === 'doctor') as AnyTool;
const registry = new Registry([fakeAgentStep as unknown as AnyTool, createRun, doctor]);

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()?.();
});
function app(env: NodeJS.ProcessEnv) {
  const t = makeTestApp({ env });
  cleanups.push(t.cleanup);
  return t.app;
}

type Report = { ok: boolean; failed: string[]; checks: Array<{ name: string; ok: boolean; detail: string; fix: string | null }> };

describe('doctor tool', () => {
  test('reports each check with ok/detail; a runnable codex passes', async () => {
    const a = app({ AGENTPR_CODEX_BIN: FAKE_CODEX, ...NO_TOKENS });
    const r = await registry.call('doctor', {}, { app: a, entry: 'cli' });
    if (!r.ok) throw new Error(r.error);
    const report = r.data as Report;
    expect(report.checks.map((c) => c.name)).toEqual(['git', 'codex', 'containment', 'database', 'policy', 'workspace_root']);
    expect(report.ok).toBe(true);
    expect(report.checks.find((c) => c.name === 'containment')?.detail).toMatch(/^(pidns|session): .*; workers (die with agentpr|may outlive agentpr)/);
    expect(report.checks.find((c) => c.name === 'git')?.detail).toMatch(/^git version /);
    expect(report.checks.find((c) => c.name === 'codex')?.detail).toContain(FAKE_CODEX);
    expect(report.checks.every((c) => c.fix === null)).toBe(true);
  });

  test('a missing codex binary and missing tokens of named features fail with a fix', async () => {
    const a = app({ AGENTPR_CODEX_BIN: '/nonexistent/bin/codex', ...NO_TOKENS });
    const r = await registry.call('doctor', { features: ['github_sync', 'telegram'] }, { app: a, entry: 'cli' });
    if (!r.ok) throw new Error(r.error);
    const report = r.data as Report;
    expect(report.ok).toBe(false);
    expect(report.failed).toEqual(['codex', 'github_token', 'telegram_token']);
    const codex = report.checks.find((c) => c.name === 'codex');
    expect(codex?.detail).toContain('AGENTPR_CODEX_BIN=/nonexistent/bin/codex is not an executable file');
    expect(codex?.fix).toContain('AGENTPR_CODEX_BIN');
    expect(report.checks.find((c) => c.name === 'github_token')).toMatchObject({ detail: 'no GitHub token: none of AGENTPR_GITHUB_TOKEN, GITHUB_TOKEN, GH_TOKEN is set', fix: 'set AGENTPR_GITHUB_TOKEN (or leave the feature off)' });
    expect(r.text).toContain('FAIL codex');
  });

  test('a codex that exits non-zero on --version fails', async () => {
    const dir = tempDir('agentpr-codex-');
    const bad = join(dir, 'codex');
    writeFileSync(bad, '#!/bin/sh\necho "broken install" >&2\nexit 3\n');
    chmodSync(bad, 0o755);
    const a = app({ AGENTPR_CODEX_BIN: bad });
    const r = await registry.call('doctor', {}, { app: a, entry: 'cli' });
    const codex = r.ok ? (r.data as Report).checks.find((c) => c.name === 'codex') : undefined;
    expect(codex).toMatchObject({ ok: false, detail: `${bad} --version exited 3: broken install` });
  });
});

describe('the automatic doctor gate', () => {
  test('a failing codex check refuses the worker tool, lists the fix and changes nothing; skip_doctor bypasses', async () => {
    const a = app({ AGENTPR_CODEX_BIN: '/nonexistent/bin/codex' });
    const before = dbFingerprint(a.db);
    const r = await registry.call('run-agent-step', {}, { app: a, entry: 'mcp' });
    expect(r).toMatchObject({ ok: false, code: 'refused' });
    const error = r.ok ? '' : r.error;
    expect(error).toContain('run-agent-step refused by the startup doctor; nothing was changed');
    expect(error).toContain('- codex: codex binary not found');
    expect(error).toContain('fix: point AGENTPR_CODEX_BIN at an executable codex binary');
    expect(error).toContain('skip_doctor');
    expect(dbFingerprint(a.db)).toBe(before);

    expect((await registry.call('run-agent-step', { skip_doctor: true }, { app: a, entry: 'mcp' })).ok).toBe(true);
    expect((await registry.call('run-agent-step', {}, { app: a, entry: 'cli', skipDoctor: true })).ok).toBe(true);
    // Tools that do not start the worker do not need codex.
    expect((await registry.call('create-run', { owner: 'acme', repo: 'other' }, { app: a, entry: 'mcp' })).ok).toBe(true);
  });

  test('a policy file broken after startup refuses write tools until it is fixed (failures are not cached)', async () => {
    const file = join(tempDir('agentpr-pol-'), 'policy.json');
    writeFileSync(file, JSON.stringify({ run_agent_step: { max_agent_seconds: 60 } }));
    const a = app({ AGENTPR_POLICY_FILE: file, AGENTPR_CODEX_BIN: FAKE_CODEX });
    writeFileSync(file, JSON.stringify({ run_agent_step: { max_agent_seconds: 'soon' } }));
    const before = dbFingerprint(a.db);
    const r = await registry.call('create-run', { owner: 'acme', repo: 'widget' }, { app: a, entry: 'mcp' });
    expect(r).toMatchObject({ ok: false, code: 'refused' });
    expect(r.ok ? '' : r.error).toMatch(/- policy: invalid policy in .*policy\.json: run_agent_step\.max_agent_seconds: expected number/);
    expect(dbFingerprint(a.db)).toBe(before);
    writeFileSync(file, JSON.stringify({ run_agent_step: { max_agent_seconds: 60 } }));
    expect((await registry.call('create-run', { owner: 'acme', repo: 'widget' }, { app: a, entry: 'mcp' })).ok).toBe(true);
  });

  test('read tools are never gated', async () => {
    const a = app({ AGENTPR_CODEX_BIN: '/nonexistent/bin/codex', PATH: '/nonexistent' });
    const r = await registry.call('doctor', {}, { app: a, entry: 'mcp' });
    expect(r.ok).toBe(true);
    expect(r.ok && (r.data as Report).failed).toEqual(['git', 'codex']);
  });

  test('a containment the kernel cannot give fails the check with a fix', async () => {
    const a = app({ AGENTPR_CODEX_BIN: FAKE_CODEX, AGENTPR_WORKER_CONTAINMENT: 'jail', ...NO_TOKENS });
    const r = await registry.call('doctor', {}, { app: a, entry: 'cli' });
    if (!r.ok) throw new Error(r.error);
    const check = (r.data as Report).checks.find((c) => c.name === 'containment');
    expect(check).toMatchObject({ ok: false, detail: expect.stringContaining('AGENTPR_WORKER_CONTAINMENT=jail is not one of auto, pidns, session') });
    expect(check?.fix).toContain('AGENTPR_WORKER_CONTAINMENT=auto');
  });

  test('the gate map: git, database, policy always; codex only for tools that run the worker', () => {
    expect(gateChecksFor('create-run')).toEqual(['git', 'database', 'policy']);
    expect(gateChecksFor('run-agent-step')).toEqual(['git', 'codex', 'containment', 'database', 'policy', 'workspace_root']);
    expect(gateChecksFor('manager-tick')).toContain('codex');
    expect(gateChecksFor('run-finish')).not.toContain('codex');
  });
});
