import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { PACKAGE_ROOT } from '../src/version.js';
import { isMain, median, ratioTarget, round, tmp } from './util.js';

const STDIO_BIN = join(PACKAGE_ROOT, 'dist', 'src', 'mcp', 'stdio.js');

/** Spawn agentpr-mcp, initialize, get the tools/list answer; ms from spawn to that answer. */
function once(home: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, [STDIO_BIN], { env: { ...process.env, AGENTPR_HOME: home, AGENTPR_LOG_LEVEL: 'warn' }, stdio: ['pipe', 'pipe', 'ignore'] });
    let buf = '';
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const msg = JSON.parse(line) as { id?: number; result?: { tools?: unknown[] } };
        if (msg.id === 1) {
          child.stdin.write(`${JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' })}\n`);
          child.stdin.write(`${JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list', params: {} })}\n`);
        } else if (msg.id === 2) {
          const ms = performance.now() - t0;
          if (!msg.result?.tools?.length) reject(new Error('tools/list answered without tools'));
          child.kill();
          resolve(ms);
        }
      }
    });
    child.on('error', reject);
    child.stdin.write(
      `${JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'bench', version: '1' } } })}\n`,
    );
  });
}

/** A bare `node -e ''`: ms from spawn to its exit, measured the same way (async spawn, same event loop). */
function bareOnce(): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
    child.on('error', reject);
    child.on('exit', () => resolve(performance.now() - t0));
  });
}

/**
 * `coldstart`: median spawn -> initialize -> tools/list of agentpr-mcp, beside a bare `node -e ''`.
 * The two take turns, one start each, so a change in the machine's load hits both alike.
 * Target: at most 2.5x the bare start.
 */
export async function run(samples = 15): Promise<Record<string, unknown>> {
  const home = tmp();
  try {
    await once(home); // first start creates the database; measure warm-disk starts after it
    await bareOnce();
    const times: number[] = [];
    const bare: number[] = [];
    for (let i = 0; i < samples; i++) {
      times.push(await once(home));
      bare.push(await bareOnce());
    }
    const med = median(times);
    return {
      samples,
      agentpr_mcp_tools_list_ms: { median: round(med), min: round(Math.min(...times)), max: round(Math.max(...times)) },
      baseline_bare_node_ms: { median: round(median(bare)) },
      ...ratioTarget(med / median(bare), '<=', 2.5, 'tools/list start / bare node start'),
    };
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
}

if (isMain(import.meta.url)) console.log(JSON.stringify(await run(), null, 2));
