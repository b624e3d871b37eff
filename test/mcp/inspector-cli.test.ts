import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { TOOLS } from '../../tools/index.js';
import { tempDir } from '../helpers/app.js';

// The MCP Inspector's CLI (the pinned devDependency) drives the built `agentpr-mcp` over stdio, the
// way a person checks the server by hand (README). Each call starts the server anew on one data home.
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const INSPECTOR = join(ROOT, 'node_modules', '@modelcontextprotocol', 'inspector');
const SERVER = join(ROOT, 'dist', 'src', 'mcp', 'stdio.js');

let tmp: string;
let home: string;

beforeAll(() => {
  tmp = tempDir('agentpr-inspector-');
  home = join(tmp, 'agentpr');
  mkdirSync(join(tmp, 'user-home'), { recursive: true });
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

interface Answer {
  code: number;
  out: Record<string, unknown>;
  stderr: string;
}

function inspector(...args: string[]): Promise<Answer> {
  const pkg = JSON.parse(readFileSync(join(INSPECTOR, 'package.json'), 'utf8')) as { bin: Record<string, string> };
  const bin = join(INSPECTOR, pkg.bin['mcp-inspector']!);
  return new Promise((done, fail) => {
    execFile(
      process.execPath,
      [bin, '--cli', '-e', `AGENTPR_HOME=${home}`, '--format', 'json', process.execPath, SERVER, ...args],
      // The Inspector keeps its catalog under HOME: a throwaway one, never the user's.
      { cwd: tmp, env: { PATH: process.env.PATH, HOME: join(tmp, 'user-home') }, timeout: 90_000, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
        if (err && code === -1) return fail(new Error(`inspector did not run: ${err.message}\n${stderr}`));
        let out: Record<string, unknown>;
        try {
          out = JSON.parse(stdout) as Record<string, unknown>;
        } catch {
          return fail(new Error(`inspector printed no JSON (exit ${code}):\n${stdout.slice(0, 2000)}\n${stderr.slice(0, 2000)}`));
        }
        done({ code, out, stderr });
      },
    );
  });
}

const result = (a: Answer) => a.out.result as Record<string, unknown>;

describe('the MCP Inspector CLI against the built agentpr-mcp (stdio)', () => {
  test('tools/list: every tool, the long ones offered as tasks, and no schema the Inspector calls unportable (--strict)', async () => {
    expect(existsSync(SERVER), 'run npm run build first').toBe(true);
    const a = await inspector('--method', 'tools/list', '--strict');
    expect(a.code, a.stderr.slice(-2000)).toBe(0);
    const tools = result(a).tools as Array<{ name: string; description: string; execution?: { taskSupport?: string } }>;
    expect(tools.map((t) => t.name).sort()).toEqual(TOOLS.map((t) => t.name).sort());
    const step = tools.find((t) => t.name === 'run-agent-step')!;
    expect(step.execution).toEqual({ taskSupport: 'optional' });
    expect(step.description).toContain('tasks/cancel');
    // The server's logs went to stderr; stdout carried only the protocol (the JSON parsed above).
    expect(a.stderr).toContain('agentpr-mcp serving on stdio');
  }, 120_000);

  test('tools/call create-run makes a run that later server starts list and read (resources/list, resources/read)', async () => {
    const created = await inspector('--method', 'tools/call', '--tool-name', 'create-run', '--tool-arg', 'owner=octo', 'repo=demo');
    expect(created.code, created.stderr.slice(-2000)).toBe(0);
    const r = result(created) as { content: Array<{ text: string }>; structuredContent: { run: { run_id: string; state: string; workspace_dir: string } } };
    const run = r.structuredContent.run;
    expect(run.state).toBe('QUEUED');
    expect(r.content[0]!.text).toBe(`created ${run.run_id} for octo/demo in QUEUED (workspace ${run.workspace_dir})`);
    expect(run.workspace_dir).toBe(join(home, 'workspaces', 'octo', 'demo', run.run_id));

    const listed = await inspector('--method', 'tools/call', '--tool-name', 'list-runs', '--tool-arg', 'owner=octo');
    expect(listed.code).toBe(0);
    expect((result(listed).structuredContent as { runs: Array<{ run_id: string }> }).runs.map((x) => x.run_id)).toEqual([run.run_id]);

    const resources = await inspector('--method', 'resources/list');
    expect(resources.code).toBe(0);
    const uris = (result(resources).resources as Array<{ uri: string }>).map((x) => x.uri);
    expect(uris).toEqual(expect.arrayContaining(['agentpr://runs', 'agentpr://policy', `agentpr://runs/${run.run_id}`, `agentpr://runs/${run.run_id}/events`]));

    const read = await inspector('--method', 'resources/read', '--uri', `agentpr://runs/${run.run_id}`);
    expect(read.code).toBe(0);
    const body = JSON.parse((result(read).contents as Array<{ text: string }>)[0]!.text) as { run: { run_id: string; state: string } };
    expect(body.run).toMatchObject({ run_id: run.run_id, state: 'QUEUED' });
    // One database file under the data home the Inspector passed with -e, nothing in the current directory.
    expect(existsSync(join(home, 'agentpr.db'))).toBe(true);
    expect(readdirSync(tmp).sort()).toEqual(['agentpr', 'user-home']);
  }, 240_000);

  test('a refused call: the Inspector exits non-zero and shows the server message with the allowed values', async () => {
    const a = await inspector('--method', 'tools/call', '--tool-name', 'list-runs', '--tool-arg', 'state=NOPE');
    expect(a.code).not.toBe(0);
    const r = result(a) as { isError: boolean; content: Array<{ text: string }> };
    expect(r.isError).toBe(true);
    expect(r.content[0]!.text).toMatch(/^invalid input for list-runs: state: 'NOPE' is not allowed; allowed: QUEUED, DISCOVERY, /);
  }, 120_000);

  test('prompts/list and prompts/get: the common jobs, filled in with the arguments given', async () => {
    const listed = await inspector('--method', 'prompts/list');
    expect(listed.code).toBe(0);
    expect((result(listed).prompts as Array<{ name: string }>).map((p) => p.name).sort()).toEqual(['review-digest', 'start-contribution', 'triage-run']);
    const got = await inspector('--method', 'prompts/get', '--prompt-name', 'start-contribution', '--prompt-args', 'owner=octo', 'repo=demo', 'task=Fix the README typo');
    expect(got.code).toBe(0);
    const text = (result(got).messages as Array<{ content: { text: string } }>)[0]!.content.text;
    expect(text).toContain('Start a contribution to octo/demo: Fix the README typo');
    expect(text).toContain('create-run with owner=octo, repo=demo');
  }, 120_000);
});
