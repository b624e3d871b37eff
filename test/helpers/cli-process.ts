import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';

/** The built CLI, run as its own OS process (races between processes need real ones). */
export const CLI = join(import.meta.dirname, '..', '..', 'dist', 'src', 'cli.js');

export interface CliDone {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface CliProcess {
  pid: number;
  done: Promise<CliDone>;
  kill: () => void;
}

/**
 * Starts `agentpr --home <home> ...args` with logs off; the child is added to `live`, which
 * `killLive` empties after each test so no process outlives it.
 */
export function spawnCli(home: string, args: string[], env: NodeJS.ProcessEnv, live: ChildProcess[]): CliProcess {
  const child = spawn(process.execPath, [CLI, '--home', home, ...args], { env: { ...env, AGENTPR_LOG_LEVEL: 'silent' }, stdio: ['ignore', 'pipe', 'pipe'] });
  live.push(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<CliDone>((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
  return { pid: child.pid!, done, kill: () => child.kill('SIGKILL') };
}

/** SIGKILLs every child in `live` that is still running, and empties the list. */
export function killLive(live: ChildProcess[]): void {
  for (const c of live.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
}
