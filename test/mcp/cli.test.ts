import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, test } from 'vitest';
import { tempDir } from '../helpers/app.js';
import { parseToolArgs } from '../../src/cli-main.js';
import { TOOLS } from '../../tools/index.js';

const exec = promisify(execFile);
const CLI = join(import.meta.dirname, '..', '..', 'dist', 'src', 'cli.js');

async function agentpr(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await exec(process.execPath, [CLI, ...args], { env: { ...process.env, AGENTPR_LOG_LEVEL: 'silent', ...env } });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

describe('the agentpr CLI (built binary)', () => {
  test('--help lists every tool by tier plus init-db and serve; <tool> --help lists its flags', async () => {
    const help = await agentpr(['--help']);
    expect(help.code).toBe(0);
    for (const t of TOOLS) expect(help.stdout).toContain(t.name);
    expect(help.stdout).toContain('init-db');
    expect(help.stdout).toContain('serve');
    const toolHelp = await agentpr(['link-pr', '--help']);
    expect(toolHelp.stdout).toContain('--run-id <string>');
    expect(toolHelp.stdout).toContain('--pr-number <number>');
  });

  test('init-db with --db creates that file; tools run against it with --json', async () => {
    const home = tempDir('agentpr-cli-');
    const db = join(home, 'custom', 'state.db');
    const init = await agentpr(['--db', db, 'init-db'], { AGENTPR_HOME: home });
    expect(init.code).toBe(0);
    expect(init.stdout).toContain(db);
    expect(existsSync(db)).toBe(true);
    const created = await agentpr(['--db', db, 'create-run', '--owner', 'octo', '--repo', 'cli', '--json'], { AGENTPR_HOME: home });
    expect(created.code).toBe(0);
    const runId = (JSON.parse(created.stdout) as { run: { run_id: string } }).run.run_id;
    const shown = await agentpr(['--db', db, 'show-run', runId], { AGENTPR_HOME: home });
    expect(shown.stdout).toContain(`${runId} octo/cli: QUEUED`);
    // The default database in the home was never touched.
    expect(existsSync(join(home, 'agentpr.db'))).toBe(false);
  });

  test('errors print one clear line to stderr and exit non-zero', async () => {
    const home = tempDir('agentpr-cli-');
    const created = await agentpr(['create-run', '--owner', 'octo', '--repo', 'cli', '--json'], { AGENTPR_HOME: home });
    const runId = (JSON.parse(created.stdout) as { run: { run_id: string } }).run.run_id;
    const illegal = await agentpr(['mark-done', '--run-id', runId], { AGENTPR_HOME: home });
    expect(illegal.code).toBe(1);
    expect(illegal.stderr.trim().split('\n')).toHaveLength(1);
    expect(illegal.stderr).toContain('illegal transition QUEUED -> DONE');
    const badFlag = await agentpr(['pause', '--run-id', runId, '--reason', 'x'], { AGENTPR_HOME: home });
    expect(badFlag.code).toBe(2);
    expect(badFlag.stderr).toContain('unknown option --reason for pause; allowed: --run-id');
    const unknown = await agentpr(['frobnicate'], { AGENTPR_HOME: home });
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("unknown command 'frobnicate'");
  });
});

describe('flag parsing from input schemas', () => {
  const tool = (name: string) => TOOLS.find((t) => t.name === name)!;
  test('numbers, JSON objects, repeated unions, kebab and snake flags', () => {
    expect(parseToolArgs(tool('link-pr'), ['--run-id', 'run_0123456789ab', '--pr_number=7'])).toEqual({ run_id: 'run_0123456789ab', pr_number: 7 });
    expect(parseToolArgs(tool('apply-event'), ['--run-id', 'r', '--event-type', 'e', '--payload', '{"branch":"b"}'])).toMatchObject({ payload: { branch: 'b' } });
    expect(parseToolArgs(tool('list-runs'), ['--state', 'PAUSED', '--state', 'QUEUED'])).toEqual({ state: ['PAUSED', 'QUEUED'] });
    expect(parseToolArgs(tool('list-runs'), ['--state', 'PAUSED'])).toEqual({ state: 'PAUSED' });
    expect(() => parseToolArgs(tool('link-pr'), ['--pr-number', 'seven'])).toThrow("--pr-number expects a number, got 'seven'");
    expect(() => parseToolArgs(tool('apply-event'), ['--payload', '{oops'])).toThrow(/--payload expects JSON/);
  });
});

describe('run-agent-step from the CLI', () => {
  test('--no-wait is refused before anything starts (the CLI would take the worker with it)', async () => {
    const home = tempDir('agentpr-cli-');
    const created = await agentpr(['create-run', '--owner', 'octo', '--repo', 'cli', '--json'], { AGENTPR_HOME: home });
    const runId = (JSON.parse(created.stdout) as { run: { run_id: string } }).run.run_id;
    const r = await agentpr(['--skip-doctor', 'run-agent-step', '--run-id', runId, '--prompt', 'x', '--no-wait'], { AGENTPR_HOME: home });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('wait=false needs a long-running server');
    const shown = await agentpr(['show-run', runId, '--json'], { AGENTPR_HOME: home });
    expect((JSON.parse(shown.stdout) as { run: { state: string }; attempts: unknown[] }).run.state).toBe('QUEUED');
    expect((JSON.parse(shown.stdout) as { attempts: unknown[] }).attempts).toHaveLength(0);
  });
});
