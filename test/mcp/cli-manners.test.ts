import { execFile } from 'node:child_process';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, test } from 'vitest';
import { tempDir } from '../helpers/app.js';
import { VERSION } from '../../src/version.js';

const exec = promisify(execFile);
const ROOT = join(import.meta.dirname, '..', '..');
const CLI = join(ROOT, 'dist', 'src', 'cli.js');
const MCP_BIN = join(ROOT, 'dist', 'src', 'mcp', 'stdio.js');

type Result = { code: number; stdout: string; stderr: string };

/** The built binary with no log level set, as a person runs it. */
async function run(bin: string, args: string[], env: Record<string, string> = {}, cwd?: string): Promise<Result> {
  const base = { ...process.env };
  delete base.AGENTPR_LOG_LEVEL;
  try {
    const r = await exec(process.execPath, [bin, ...args], { env: { ...base, ...env }, timeout: 120_000, cwd });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}
const agentpr = (args: string[], env: Record<string, string> = {}) => run(CLI, args, env);

/** One human line on stderr, no pino JSON. */
function oneHumanLine(stderr: string): string {
  const lines = stderr.trim().split('\n');
  expect(lines, stderr).toHaveLength(1);
  expect(lines[0]).not.toMatch(/^\{"level"/);
  return lines[0]!;
}

describe('CLI manners', () => {
  test('a refused call prints one human line on stderr (no log lines) unless --verbose asks for logs', async () => {
    const home = tempDir('agentpr-manners-');
    const env = { AGENTPR_HOME: home, AGENTPR_CODEX_BIN: join(home, 'no-such-codex') };
    const created = await agentpr(['create-run', '--owner', 'octo', '--repo', 'm', '--json'], env);
    expect(created.code, created.stderr).toBe(0);
    const runId = (JSON.parse(created.stdout) as { run: { run_id: string } }).run.run_id;
    // The startup doctor refuses run-agent-step without codex (and logs a warning about it).
    const refused = await agentpr(['run-agent-step', runId, '--prompt', 'x'], env);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('refused by the startup doctor');
    expect(refused.stderr).not.toContain('{"level"');
    const verbose = await agentpr(['--verbose', 'run-agent-step', runId, '--prompt', 'x'], env);
    expect(verbose.code).toBe(1);
    expect(verbose.stderr).toContain('{"level"');
  });

  test('system errors come with a hint: a file that is not a database, a file in the way of the home', async () => {
    const dir = tempDir('agentpr-manners-');
    const notDb = join(dir, 'notes.txt');
    writeFileSync(notDb, 'these are my notes, not a database\n'.repeat(200));
    const r = await agentpr(['--db', notDb, 'list-runs'], { AGENTPR_HOME: join(dir, 'home') });
    expect(r.code).toBe(1);
    expect(oneHumanLine(r.stderr)).toMatch(/file is not a database \(that file is not an agentpr \(SQLite\) database; point --db/);
    const inTheWay = join(dir, 'plainfile');
    writeFileSync(inTheWay, 'x');
    const e = await agentpr(['--home', inTheWay, 'list-runs']);
    expect(e.code).toBe(1);
    expect(oneHumanLine(e.stderr)).toMatch(/EEXIST.*\(a file is in the way of a directory agentpr needs; move it away or choose another --home\)/);
  });

  test('usage mistakes exit 2, refused or failed calls exit 1', async () => {
    const home = tempDir('agentpr-manners-');
    const env = { AGENTPR_HOME: home };
    expect((await agentpr([], env)).code).toBe(2);
    expect((await agentpr(['serve', '--host'], env)).code).toBe(2);
    expect((await agentpr(['serve', '--toolsets', 'everything'], env))).toMatchObject({ code: 2, stderr: expect.stringContaining("'everything' is not a toolset; allowed: core, worker, github, manager") });
    expect((await agentpr(['run-github-webhook', '--host'], env)).code).toBe(2);
    expect((await agentpr(['list-runs', '--colour', 'red'], env)).code).toBe(2);
    expect((await agentpr(['list-runs', '--state', 'NOPE'], env)).code).toBe(1);
  });

  test('a failing doctor, a failed preflight and a failed prepare exit 1 after printing their report', async () => {
    const home = tempDir('agentpr-manners-');
    const env = { AGENTPR_HOME: home, AGENTPR_CODEX_BIN: join(home, 'no-such-codex') };
    const doctor = await agentpr(['doctor'], env);
    expect(doctor.code).toBe(1);
    expect(doctor.stdout).toContain('FAIL codex');
    expect(oneHumanLine(doctor.stderr)).toContain('agentpr doctor: failed');
    const created = await agentpr(['create-run', '--owner', 'octo', '--repo', 'm', '--json'], env);
    const runId = (JSON.parse(created.stdout) as { run: { run_id: string } }).run.run_id;
    const preflight = await agentpr(['run-preflight', runId], env);
    expect(preflight.code).toBe(1);
    expect(preflight.stdout).toContain('preflight FAILED');
    const prepare = await agentpr(['run-prepare', runId, '--upstream-url', join(home, 'no-such-remote.git'), '--fork-url', join(home, 'no-such-fork.git'), '--timeout-sec', '60'], env);
    expect(prepare.code, prepare.stdout + prepare.stderr).toBe(1);
    expect(prepare.stdout).toContain('prepare.sh attempt 1 failed');
  });

  test('--help never acts: init-db --help creates no database', async () => {
    const home = tempDir('agentpr-manners-');
    const r = await agentpr(['init-db', '--help'], { AGENTPR_HOME: home });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('usage: agentpr');
    expect(existsSync(join(home, 'agentpr.db'))).toBe(false);
    for (const cmd of [['serve', '--help'], ['run-manager-loop', '--help'], ['create-run', '--owner', 'o', '--repo', 'r', '--help']]) {
      const h = await agentpr(cmd, { AGENTPR_HOME: home });
      expect(h.code, cmd.join(' ')).toBe(0);
    }
    expect(existsSync(join(home, 'agentpr.db'))).toBe(false);
  });

  test('manager-tick --dry-run needs no codex; a real tick without codex is refused', async () => {
    const home = tempDir('agentpr-manners-');
    const env = { AGENTPR_HOME: home, AGENTPR_CODEX_BIN: join(home, 'no-such-codex') };
    await agentpr(['create-run', '--owner', 'octo', '--repo', 'm'], env);
    const dry = await agentpr(['manager-tick', '--dry-run'], env);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toMatch(/dry/i);
    const real = await agentpr(['manager-tick'], env);
    expect(real.code).toBe(1);
    expect(real.stderr).toContain('codex');
  });
});

describe('agentpr-mcp launch', () => {
  test('--version and --help answer without serving', async () => {
    const v = await run(MCP_BIN, ['--version']);
    expect(v).toMatchObject({ code: 0, stdout: `${VERSION}\n` });
    const h = await run(MCP_BIN, ['--help']);
    expect(h.code).toBe(0);
    expect(h.stdout).toContain('--toolsets LIST');
    expect(h.stdout).toContain('AGENTPR_READ_ONLY');
    const bad = await run(MCP_BIN, ['--frobnicate']);
    expect(bad.code).toBe(2);
    expect(oneHumanLine(bad.stderr)).toContain('unknown option --frobnicate');
    const badEnv = await run(MCP_BIN, [], { AGENTPR_HOME: tempDir('agentpr-manners-'), AGENTPR_TOOLSETS: 'core,nope' });
    expect(badEnv.code).toBe(2);
    expect(badEnv.stderr).toContain("AGENTPR_TOOLSETS: 'nope' is not a toolset");
  });

  test('a literal ${HOME} in AGENTPR_HOME (a client that does not expand it) is refused, not created', async () => {
    const cwd = tempDir('agentpr-manners-');
    const r = await run(MCP_BIN, [], { AGENTPR_HOME: '${HOME}/.agentpr' }, cwd);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('${HOME}');
    expect(readdirSync(cwd)).toEqual([]);
    const token = await run(MCP_BIN, [], { AGENTPR_HOME: cwd, AGENTPR_DB: '$HOME/agentpr.db' }, cwd);
    expect(token.code).toBe(1);
    expect(token.stderr).toContain('AGENTPR_DB');
  });
});
