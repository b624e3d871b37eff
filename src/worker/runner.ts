import { accessSync, closeSync, constants, existsSync, mkdirSync, openSync, readFileSync, readdirSync, statSync, writeSync } from 'node:fs';
import { delimiter, dirname, isAbsolute, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { loadExeca } from '../exec.js';
import { ConfigurationError, UserInputError } from '../core/errors.js';
import type { RunAgentStepPolicy } from '../policy.js';
import { RUNTIME_DIR_NAME } from './env.js';

/** The codex CLI's exit code for "command not found", which SPEC §4 reports for a missing binary. */
export const CODEX_NOT_FOUND_EXIT = 127;

export type Sandbox = RunAgentStepPolicy['codex_sandbox'];

/** Raised when the codex binary cannot be found; carries the shell's 127 for the CLI's exit code. */
export class CodexNotFoundError extends ConfigurationError {
  readonly exitCode = CODEX_NOT_FOUND_EXIT;
  constructor(message: string) {
    super(message);
    this.name = 'CodexNotFoundError';
  }
}

function isExecutableFile(p: string): boolean {
  try {
    if (!statSync(p).isFile()) return false;
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * The codex binary: AGENTPR_CODEX_BIN (a path, or a name looked up on PATH), else `codex` on PATH.
 * Missing -> CodexNotFoundError (exit 127) saying how to fix it.
 */
export function resolveCodexBin(env: NodeJS.ProcessEnv = process.env): string {
  const configured = env.AGENTPR_CODEX_BIN?.trim();
  const name = configured || 'codex';
  if (name.includes('/')) {
    const p = resolve(name);
    if (isExecutableFile(p)) return p;
    throw new CodexNotFoundError(
      `codex binary not found (exit ${CODEX_NOT_FOUND_EXIT}): AGENTPR_CODEX_BIN=${configured} is not an executable file; fix the path or unset it to use codex from PATH`,
    );
  }
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, name);
    if (isExecutableFile(p)) return p;
  }
  throw new CodexNotFoundError(
    `codex binary not found (exit ${CODEX_NOT_FOUND_EXIT}): '${name}' is not on PATH${configured ? ' (from AGENTPR_CODEX_BIN)' : ''}; install the Codex CLI (npm i -g @openai/codex) or set AGENTPR_CODEX_BIN to its path`,
  );
}

/** Integration runs need to write in the clone; SPEC §4 refuses a read-only sandbox. */
export function assertRunnableSandbox(sandbox: Sandbox, source: string): void {
  if (sandbox === 'read-only') {
    throw new UserInputError(
      `codex sandbox 'read-only' (from ${source}) cannot run an integration step: the worker must edit the repository; use workspace-write (recommended) or danger-full-access`,
    );
  }
}

export function lastMessagePath(repoDir: string): string {
  return join(resolve(repoDir), RUNTIME_DIR_NAME, 'codex_last_message.txt');
}

/**
 * The safety contract that precedes every prompt (seed constraint 27): writes only inside the
 * repository, reads outside it only under the named roots, no global installs or privilege.
 */
export function safetyContract(opts: { repoDir: string; readOnlyRoots: readonly string[]; allowPush?: boolean }): string {
  const repo = resolve(opts.repoDir);
  const roots = [...new Set(opts.readOnlyRoots.map((r) => resolve(r)))].filter((r) => r !== repo);
  const lines = [
    'SAFETY CONTRACT (agentpr orchestrator; these rules override anything below)',
    `1. Work only inside the repository at ${repo}. Do not create, modify or delete files outside it.`,
    `2. Caches, virtualenvs, temp and tool data go under ${join(repo, RUNTIME_DIR_NAME)} (the environment already points there); never write to $HOME or system directories.`,
    roots.length
      ? `3. You may READ (never write) these paths outside the repository: ${roots.join(', ')}. Everything else outside the repository is off limits.`
      : '3. Do not read files outside the repository except toolchain files the commands you run need.',
    '4. Never use sudo, brew install, global package installs (npm/pnpm/yarn -g, uv tool install, pipx, poetry self), or change system settings.',
    opts.allowPush
      ? '5. Committing and pushing are allowed only on the current feature branch.'
      : '5. Do not run git commit, git push or finish.sh: the orchestrator commits and pushes after validating your work.',
    '6. Run the project\'s own tests, lints and type checks for what you change and report each command with its result.',
    '7. Keep the change minimal and within the task; when blocked, stop and explain why in your final message.',
  ];
  return lines.join('\n');
}

export function composePrompt(contract: string, prompt: string): string {
  return `${contract}\n---\n\n${prompt}`;
}

// ---- running the process --------------------------------------------------------------------------

export interface RunProcessOptions {
  bin: string;
  args: string[];
  cwd: string;
  env: Record<string, string>;
  /** Stamped stdout lines, one per line (JSONL). */
  eventsPath: string;
  stderrPath: string;
  timeoutMs: number;
  /** After SIGTERM to the group, how long before SIGKILL. */
  killGraceMs?: number;
  /** Turns a raw stdout line into the stored line (the analysis's receive-time stamp). */
  stamp: (line: string, receivedAt: Date) => string;
  /** Every stdout line as it arrives: raw, as stored (stamped), and when. Must not throw. */
  onLine?: (line: string, stored: string, receivedAt: Date) => void;
  onSpawn?: (pid: number) => void;
  /** Aborting kills the process tree (the caller went away or the server is closing). */
  signal?: AbortSignal;
  /** A file fed to the worker's stdin (the prompt: never in argv, where `ps` shows it); else stdin is closed. */
  stdinFile?: string;
}

export interface RunProcessResult {
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  aborted: boolean;
  /** The binary could not be started at all (message), e.g. ENOENT or EACCES. */
  spawnError: string | null;
  pid: number | null;
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  lineCount: number;
  /** Signals sent to the process group: on timeout/abort, or to clean up leftovers after exit. */
  groupSignals: string[];
}

/** State letter and process group from /proc/<pid>/stat (Linux), or undefined. */
function procStat(pid: string): { state: string; pgrp: number } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { state: rest[0] ?? '?', pgrp: Number(rest[2]) };
  } catch {
    return undefined;
  }
}

/**
 * Whether any process of the group is still running. Zombies do not count: an orphaned
 * grandchild that was killed stays a zombie until init reaps it, which can take a second.
 */
export function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
  } catch {
    return false;
  }
  if (!existsSync('/proc/self/stat')) return true;
  for (const entry of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(entry)) continue;
    const st = procStat(entry);
    if (st && st.pgrp === pgid && st.state !== 'Z' && st.state !== 'X') return true;
  }
  return false;
}

/** A process that exists and is not a zombie (Linux); elsewhere, one that accepts signal 0. */
export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  const st = procStat(String(pid));
  return st === undefined ? !existsSync('/proc/self/stat') : st.state !== 'Z' && st.state !== 'X';
}

function signalGroup(pid: number, sig: NodeJS.Signals): boolean {
  try {
    process.kill(-pid, sig);
    return true;
  } catch {
    try {
      process.kill(pid, sig);
      return true;
    } catch {
      return false;
    }
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function waitGroupGone(pid: number, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (!groupAlive(pid)) return true;
    await sleep(50);
  }
  return !groupAlive(pid);
}

/**
 * Process groups of workers still running. They are in their own group, so a terminal's Ctrl-C
 * does not reach them: if this process exits, or is signalled while nothing else handles the
 * signal (a plain CLI call), they are killed first. Servers install their own handlers and close
 * the App, which stops and records the steps.
 */
const liveGroups = new Set<number>();
const EXIT_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
let exitHookInstalled = false;
const signalHandlers = new Map<NodeJS.Signals, () => void>();

function killLiveGroups(): void {
  for (const g of liveGroups) signalGroup(g, 'SIGKILL');
}

function trackGroup(pid: number): void {
  liveGroups.add(pid);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', killLiveGroups);
  }
  for (const sig of EXIT_SIGNALS) {
    if (signalHandlers.has(sig) || process.listenerCount(sig) > 0) continue;
    const handler = () => {
      killLiveGroups();
      untrackSignals();
      // Nobody else handles it: carry on with the default action (exit by this signal).
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    };
    signalHandlers.set(sig, handler);
    process.on(sig, handler);
  }
}

function untrackSignals(): void {
  for (const [sig, handler] of signalHandlers) process.off(sig, handler);
  signalHandlers.clear();
}

function untrackGroup(pid: number): void {
  liveGroups.delete(pid);
  if (liveGroups.size === 0) untrackSignals();
}

/**
 * Runs the worker in its own process group (detached), storing each stdout line with its receive
 * stamp and stderr in a file. On timeout or abort the whole group gets SIGTERM, then SIGKILL after
 * the grace; members left behind after a normal exit are ended the same way. Never throws for the
 * process's own failures: they come back in the result.
 */
export async function runProcess(opts: RunProcessOptions): Promise<RunProcessResult> {
  mkdirSync(dirname(opts.eventsPath), { recursive: true });
  mkdirSync(dirname(opts.stderrPath), { recursive: true });
  if (!isAbsolute(opts.bin)) throw new Error(`runProcess needs an absolute binary path, got ${opts.bin}`);
  const grace = opts.killGraceMs ?? 5000;
  const started = new Date();
  const eventsFd = openSync(opts.eventsPath, 'a');
  const groupSignals: string[] = [];
  let lineCount = 0;
  let timedOut = false;
  let aborted = false;
  let stopping: Promise<void> | undefined;

  const child = (await loadExeca()).execa(opts.bin, opts.args, {
    cwd: opts.cwd,
    env: opts.env,
    extendEnv: false,
    detached: true,
    cleanup: false,
    stdin: opts.stdinFile ? { file: opts.stdinFile } : 'ignore',
    stdout: 'pipe',
    stderr: { file: opts.stderrPath, append: true },
    buffer: false,
    reject: false,
    windowsHide: true,
  });
  const pid = child.pid ?? null;
  if (pid !== null) {
    trackGroup(pid);
    opts.onSpawn?.(pid);
  }

  const stop = (why: 'timeout' | 'abort'): Promise<void> => {
    if (stopping || pid === null) return stopping ?? Promise.resolve();
    if (why === 'timeout') timedOut = true;
    else aborted = true;
    stopping = (async () => {
      groupSignals.push('SIGTERM');
      signalGroup(pid, 'SIGTERM');
      if (!(await waitGroupGone(pid, grace))) {
        groupSignals.push('SIGKILL');
        signalGroup(pid, 'SIGKILL');
        await waitGroupGone(pid, 2000);
      }
    })();
    return stopping;
  };

  const timer = setTimeout(() => void stop('timeout'), opts.timeoutMs);
  const onAbort = () => void stop('abort');
  if (opts.signal?.aborted) onAbort();
  else opts.signal?.addEventListener('abort', onAbort, { once: true });

  const linesDone = new Promise<void>((resolveLines) => {
    if (!child.stdout) return resolveLines();
    const rl = createInterface({ input: child.stdout, crlfDelay: Infinity });
    rl.on('line', (line) => {
      const at = new Date();
      lineCount++;
      const stored = opts.stamp(line, at);
      writeSync(eventsFd, `${stored}\n`);
      try {
        opts.onLine?.(line, stored, at);
      } catch {
        // a progress reporter's failure must not break the capture
      }
    });
    rl.on('close', () => resolveLines());
  });

  let spawnError: string | null = null;
  let exitCode: number | null = null;
  let signal: string | null = null;
  try {
    const result = await child;
    exitCode = result.exitCode ?? null;
    signal = result.signal ?? null;
    if (result.failed && result.exitCode === undefined && !result.signal && !timedOut && !aborted) {
      spawnError = result.originalMessage || result.shortMessage || 'could not start the worker';
    }
  } finally {
    clearTimeout(timer);
    opts.signal?.removeEventListener('abort', onAbort);
  }
  // Grandchildren may still hold stdout open; end them so the stream closes.
  if (pid !== null && groupAlive(pid)) {
    if (stopping) await stopping;
    else {
      groupSignals.push('SIGTERM');
      signalGroup(pid, 'SIGTERM');
      if (!(await waitGroupGone(pid, Math.min(grace, 2000)))) {
        groupSignals.push('SIGKILL');
        signalGroup(pid, 'SIGKILL');
        await waitGroupGone(pid, 2000);
      }
    }
  } else if (stopping) await stopping;
  await Promise.race([linesDone, sleep(2000)]);
  closeSync(eventsFd);
  if (pid !== null) untrackGroup(pid);
  const finished = new Date();
  return {
    exitCode: spawnError ? CODEX_NOT_FOUND_EXIT : exitCode,
    signal,
    timedOut,
    aborted,
    spawnError,
    pid,
    startedAt: started.toISOString(),
    finishedAt: finished.toISOString(),
    durationMs: finished.getTime() - started.getTime(),
    lineCount,
    groupSignals,
  };
}
