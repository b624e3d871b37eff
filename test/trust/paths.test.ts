import { mkdirSync, symlinkSync, writeFileSync, copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Registry, type Entry } from '../../src/registry.js';
import { TOOLS } from '../../tools/index.js';
import type { App } from '../../src/app.js';
import { makeTestApp, tempDir } from '../helpers/app.js';
import { materializeContract } from '../../src/worker/skills.js';
import { connectInMemory, textOf, type ToolCallResult } from '../helpers/mcp.js';

const registry = new Registry(TOOLS);
let app: App;
let home: string;
let cleanup: () => Promise<void>;
let runId: string;

beforeEach(async () => {
  ({ app, home, cleanup } = makeTestApp({ env: { AGENTPR_GITHUB_TOKEN: 'ghp_secretvalue123456' } }));
  const r = await registry.call('create-run', { owner: 'acme', repo: 'widget' }, { app, entry: 'cli' }, {});
  if (!r.ok) throw new Error(r.error);
  runId = (r.data.run as { run_id: string }).run_id;
  await registry.call('start-discovery', { run_id: runId }, { app, entry: 'cli', skipDoctor: true });
});
afterEach(async () => cleanup());

const artifacts = () => (app.db.prepare('SELECT COUNT(*) AS n FROM artifacts').get() as { n: number }).n;
const state = () => app.service.getRun(runId).state;

describe('path inputs from entries other than the CLI stay below the allowed roots', () => {
  const remote: Entry[] = ['telegram', 'manager', 'mcp', 'webhook'];

  it.each(remote)('%s: body_file=/proc/self/environ is refused and nothing is stored', async (entry) => {
    const before = artifacts();
    const r = await registry.call('request-open-pr', { run_id: runId, title: 'x', body_file: '/proc/self/environ' }, { app, entry, skipDoctor: true });
    expect(r).toMatchObject({ ok: false, code: 'invalid_input' });
    expect(!r.ok && r.error).toContain('body_file: /proc/self/environ is under /proc');
    expect(artifacts()).toBe(before);
  });

  it.each(remote)('%s: prompt_file=/etc/shadow and allowed_read_only_roots=["/"] are refused', async (entry) => {
    const r = await registry.call('run-agent-step', { run_id: runId, prompt_file: '/etc/shadow' }, { app, entry, skipDoctor: true });
    expect(r).toMatchObject({ ok: false, code: 'invalid_input' });
    expect(!r.ok && r.error).toMatch(/prompt_file: \/etc\/shadow .*outside the allowed roots/);
    const roots = await registry.call('run-agent-step', { run_id: runId, prompt: 'do it', allowed_read_only_roots: ['/'] }, { app, entry, skipDoctor: true });
    expect(!roots.ok && roots.error).toContain('allowed_read_only_roots[0]: / is outside the allowed roots');
    expect(app.service.listAttempts(runId, "agent")).toEqual([]);
  });

  it('a symlink inside the data home that points outside is resolved first and refused', async () => {
    const link = join(home, 'contract.md');
    symlinkSync('/etc/passwd', link);
    const r = await registry.call('mark-plan-ready', { run_id: runId, contract_path: link }, { app, entry: 'telegram', skipDoctor: true });
    expect(!r.ok && r.error).toContain('(it resolves to /etc/passwd) is outside the allowed roots');
    expect(state()).toBe('DISCOVERY');
  });

  it('mark-plan-ready: /etc/passwd from MCP is refused; a missing file is refused even from the CLI; a real contract passes', async () => {
    const { client, close } = await connectInMemory(app);
    try {
      const r = (await client.callTool({ name: 'mark-plan-ready', arguments: { run_id: runId, contract_path: '/etc/passwd', skip_doctor: true } })) as ToolCallResult;
      expect(r.isError).toBe(true);
      expect(textOf(r)).toContain('contract_path: /etc/passwd is outside the allowed roots');
    } finally {
      await close();
    }
    const missing = await registry.call('mark-plan-ready', { run_id: runId, contract_path: join(home, 'nope.md') }, { app, entry: 'cli', skipDoctor: true });
    expect(!missing.ok && missing.error).toContain('is not a file');
    expect(state()).toBe('DISCOVERY');
    const contract = join(home, 'contracts', 'c.md');
    mkdirSync(join(home, 'contracts'));
    writeFileSync(contract, '# contract\n');
    const ok = await registry.call('mark-plan-ready', { run_id: runId, contract_path: contract }, { app, entry: 'telegram', skipDoctor: true });
    expect(ok.ok).toBe(true);
    expect(state()).toBe('PLAN_READY');
  });

  it('policy security.file_roots lets the operator name another directory', async () => {
    const extra = tempDir('agentpr-roots-');
    const stream = join(extra, 's.jsonl');
    writeFileSync(stream, '{"type":"thread.started","thread_id":"t"}\n');
    const refused = await registry.call('analyze-stream', { path: stream }, { app, entry: 'mcp' });
    expect(refused.ok).toBe(false);
    (app.policy.security as { file_roots: string[] }).file_roots = [extra];
    const allowed = await registry.call('analyze-stream', { path: stream }, { app, entry: 'mcp' });
    expect(allowed.ok).toBe(true);
  });

  it.each(remote)('%s: a web-address-shaped path cannot climb out of the roots', async (entry) => {
    const climb = `https://x${'/..'.repeat(40)}/etc/passwd`;
    const prompt = await registry.call('run-agent-step', { run_id: runId, prompt_file: climb }, { app, entry, skipDoctor: true });
    expect(prompt).toMatchObject({ ok: false, code: 'invalid_input' });
    expect(!prompt.ok && prompt.error).toMatch(/prompt_file: .* is outside the allowed roots/);
    // A contract may be a web address: recorded as given, and never read as a file on this host.
    const contract = await registry.call('mark-plan-ready', { run_id: runId, contract_path: climb }, { app, entry, skipDoctor: true });
    expect(contract.ok).toBe(true);
    const workspace = app.service.getRun(runId).workspace_dir;
    expect(materializeContract(workspace, climb)).toBeNull();
  });

  it('the CLI (the operator at the terminal) may still name any path', async () => {
    const outside = tempDir('agentpr-op-');
    const stream = join(outside, 's.jsonl');
    writeFileSync(stream, '{"type":"thread.started","thread_id":"t"}\n');
    const r = await registry.call('analyze-stream', { path: stream }, { app, entry: 'cli' });
    expect(r.ok).toBe(true);
  });
});

describe('analyze-stream shows no content of lines it cannot parse', () => {
  it('any file: counts and line numbers only; a stored stream: the line, secret-scrubbed', async () => {
    const outside = tempDir('agentpr-as-');
    const file = join(outside, 'notes.txt');
    writeFileSync(file, 'root:x:0:0:root:/root:/bin/bash\ntoken=ghp_secretvalue123456\n');
    const r = await registry.call('analyze-stream', { path: file }, { app, entry: 'cli' });
    if (!r.ok) throw new Error(r.error);
    const ev = (r.data.digest as { events: { parse_errors: number; parse_error_samples: Array<{ line: number; excerpt: string }> } }).events;
    expect(ev.parse_errors).toBe(2);
    expect(ev.parse_error_samples.map((s) => s.line)).toEqual([1, 2]);
    expect(ev.parse_error_samples.every((s) => s.excerpt === '')).toBe(true);
    expect(JSON.stringify(r.data)).not.toContain('root:x:0:0');

    const stored = join(home, 'reports', runId, 'agent', '1');
    mkdirSync(stored, { recursive: true });
    copyFileSync(file, join(stored, 'events.jsonl'));
    const s = await registry.call('analyze-stream', { path: join(stored, 'events.jsonl') }, { app, entry: 'mcp' });
    if (!s.ok) throw new Error(s.error);
    const samples = (s.data.digest as { events: { parse_error_samples: Array<{ excerpt: string }> } }).events.parse_error_samples;
    expect(samples[0]!.excerpt).toContain('root:x:0:0');
    expect(samples[1]!.excerpt).toBe('token=[REDACTED]');
  });
});

describe('values that reach an argv', () => {
  it('model and remotes may not start with -', async () => {
    const m = await registry.call('run-agent-step', { run_id: runId, prompt: 'x', model: '--config=evil' }, { app, entry: 'cli', skipDoctor: true });
    expect(!m.ok && m.error).toContain("model: model must not start with '-'");
    const f = await registry.call('run-prepare', { run_id: runId, fork_url: '--upload-pack=touch /tmp/x' }, { app, entry: 'cli', skipDoctor: true });
    expect(!f.ok && f.error).toContain("fork_url must not start with '-'");
  });
});

describe('apply-event cannot smuggle a contract path past the roots', () => {
  it('worker.discovery.completed with contract_path=/etc/shadow from MCP is refused', async () => {
    const r = await registry.call('apply-event', { run_id: runId, event_type: 'worker.discovery.completed', payload: { contract_path: '/etc/shadow' } }, { app, entry: 'mcp', skipDoctor: true });
    expect(r).toMatchObject({ ok: false, code: 'invalid_input' });
    expect(!r.ok && r.error).toContain('payload.contract_path: /etc/shadow is outside the allowed roots');
    expect(state()).toBe('DISCOVERY');
  });
});
