import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, test } from 'vitest';
import { tempDir } from '../helpers/app.js';

const CLI = join(resolve(dirname(fileURLToPath(import.meta.url)), '..', '..'), 'dist', 'src', 'cli.js');
const kills: Array<() => void> = [];
afterEach(() => {
  for (const k of kills.splice(0)) k();
});

async function serve(env: NodeJS.ProcessEnv): Promise<{ pid: number; url: string }> {
  const child = spawn(process.execPath, [CLI, 'serve', '--http', '--port', '0'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  kills.push(() => child.kill('SIGKILL'));
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const deadline = Date.now() + 60_000;
  for (;;) {
    const m = /MCP Streamable HTTP on (http:\/\/\S+)/.exec(err);
    if (m) return { pid: child.pid!, url: m[1]! };
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`server did not start: ${err}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const SECRET = 'mcp-token-from-a-file-0123456789abcdef';
const ping = (url: string, token: string) =>
  fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', authorization: `Bearer ${token}` },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} }),
  });

describe('secrets loaded from files are not in /proc/<pid>/environ', () => {
  test('AGENTPR_MCP_TOKEN_FILE: the server uses the token, and the environ of its process does not hold it', async () => {
    const home = tempDir('agentpr-proc-');
    const file = join(home, 'mcp.secret');
    writeFileSync(file, `${SECRET}\n`, { mode: 0o600 });
    const env: NodeJS.ProcessEnv = { ...process.env, AGENTPR_HOME: home, AGENTPR_POLICY_FILE: '', AGENTPR_MCP_TOKEN_FILE: file };
    delete env.AGENTPR_MCP_TOKEN;
    const { pid, url } = await serve(env);
    expect((await ping(url, SECRET)).status).toBe(200);
    expect((await ping(url, 'wrong')).status).toBe(401);
    // What a worker running as the same user could read.
    expect(readFileSync(`/proc/${pid}/environ`, 'utf8')).not.toContain(SECRET);
  });

  test('a secret file other users can read is refused at start', async () => {
    const home = tempDir('agentpr-proc-');
    const file = join(home, 'mcp.secret');
    writeFileSync(file, `${SECRET}\n`, { mode: 0o644 });
    const env: NodeJS.ProcessEnv = { ...process.env, AGENTPR_HOME: home, AGENTPR_POLICY_FILE: '', AGENTPR_MCP_TOKEN_FILE: file };
    delete env.AGENTPR_MCP_TOKEN;
    await expect(serve(env)).rejects.toThrow(/can be read by other users \(mode 644\); chmod 600 it/);
  });
});
