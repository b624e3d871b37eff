import { accessSync, closeSync, constants, existsSync, mkdirSync, openSync, readFileSync, readdirSync, statSync, writeSync } from 'node:fs';
import { delimiter, dirname, isAbsolute, join, resolve } from 'node:path';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { LineSplitter } from '../analysis/stream-parser.js';
import { ConfigurationError, UserInputError } from '../core/errors.js';
import type { RunAgentStepPolicy } from '../policy.js';
import { RUNTIME_DIR_NAME } from './env.js';
import { MARKER_VAR, detectContainment, markedPids, signalTree, type Containment, type ContainmentMode } from './contain.js';

/** The codex CLI's exit code for "command not found", which is reported for a missing binary. */
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

/** Integration runs need to write in the clone; a read-only sandbox is refused a read-only sandbox. */
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
 * The safety contract that precedes every prompt: writes only inside the
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
  /** The worker's pid and the marker its processes carry in their environment (for a later sweep). */
  onSpawn?: (pid: number, marker: string) => void;
  /** Aborting kills the process tree (the caller went away or the server is closing). */
  signal?: AbortSignal;
  /** A file fed to the worker's stdin (the prompt: never in argv, where `ps` shows it); else stdin is closed. */
  stdinFile?: string;
  /** How the worker is contained (default: detectContainment(process.env)). */
  containment?: Containment;
  /** Longest line kept whole (default 8 MiB); longer ones become a short agentpr.oversized_line record. */
  maxLineBytes?: number;
  /** Bytes of stream stored per attempt (default 256 MiB); past it lines are counted, not stored. */
  maxStreamBytes?: number;
  /** Resource limits applied with prlimit (null/absent: unlimited). */
  limits?: WorkerLimits;
}

export interface WorkerLimits {
  address_space_mb?: number | null;
  cpu_seconds?: number | null;
  open_files?: number | null;
  processes?: number | null;
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
  containment: ContainmentMode;
  /** Lines longer than maxLineBytes (stored as a short record, never held whole). */
  oversizedLines: number;
  /** Bytes written to the events file. */
  storedBytes: number;
  /** Lines not stored because the stream passed maxStreamBytes. */
  droppedLines: number;
  /** Writing the stream failed (ENOSPC, EIO, ...): the worker was stopped. */
  writeError: { code: string; message: string } | null;
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


/**
 * Process groups of workers still running. They are in their own group, so a terminal's Ctrl-C
 * does not reach them: if this process exits, or is signalled while nothing else handles the
 * signal (a plain CLI call), they are killed first. Servers install their own handlers and close
 * the App, which stops and records the steps.
 */
const liveGroups = new Map<number, string>();
const EXIT_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
let exitHookInstalled = false;
const signalHandlers = new Map<NodeJS.Signals, () => void>();

function killLiveGroups(): void {
  for (const [g, token] of liveGroups) {
    signalGroup(g, 'SIGKILL');
    signalTree(null, token, 'SIGKILL');
  }
}

function trackGroup(pid: number, token: string): void {
  liveGroups.set(pid, token);
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

/** prlimit arguments for the limits that are set (empty when none are). */
export function prlimitArgs(limits: WorkerLimits | undefined): string[] {
  if (!limits) return [];
  const out: string[] = [];
  if (limits.address_space_mb) out.push(`--as=${limits.address_space_mb * 1024 * 1024}`);
  if (limits.cpu_seconds) out.push(`--cpu=${limits.cpu_seconds}`);
  if (limits.open_files) out.push(`--nofile=${limits.open_files}`);
  if (limits.processes) out.push(`--nproc=${limits.processes}`);
  return out.length ? ['prlimit', ...out, '--'] : [];
}

const DEFAULT_MAX_LINE_BYTES = 8 * 1024 * 1024;
const DEFAULT_MAX_STREAM_BYTES = 256 * 1024 * 1024;
/** What an oversized line keeps of its start and end. */
const OVERSIZED_KEEP = 2048;

/**
 * Runs the worker contained (see contain.ts: a PID namespace, else its own session plus a /proc
 * sweep), storing each stdout line with its receive stamp and stderr in a file. On timeout or abort
 * every process of the worker gets SIGTERM, then SIGKILL after the grace, and the step ends then:
 * a process that escaped and holds stdout open does not keep it waiting. Lines are never held
 * whole past maxLineBytes, the stored stream stops at maxStreamBytes, and a failed write (a full
 * disk) stops the worker and comes back as writeError. Never throws for the process's own
 * failures: they come back in the result.
 */
export async function runProcess(opts: RunProcessOptions): Promise<RunProcessResult> {
  mkdirSync(dirname(opts.eventsPath), { recursive: true });
  mkdirSync(dirname(opts.stderrPath), { recursive: true });
  if (!isAbsolute(opts.bin)) throw new Error(`runProcess needs an absolute binary path, got ${opts.bin}`);
  const grace = opts.killGraceMs ?? 5000;
  const maxLine = opts.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
  const maxStream = opts.maxStreamBytes ?? DEFAULT_MAX_STREAM_BYTES;
  const containment = opts.containment ?? detectContainment(process.env);
  const started = new Date();
  const groupSignals: string[] = [];
  const token = randomUUID();
  let lineCount = 0;
  let oversizedLines = 0;
  let storedBytes = 0;
  let droppedLines = 0;
  let writeError: RunProcessResult['writeError'] = null;
  let timedOut = false;
  let aborted = false;
  let stopping: Promise<void> | undefined;
  const finish = (extra: Partial<RunProcessResult>): RunProcessResult => {
    const finished = new Date();
    return {
      exitCode: null, signal: null, timedOut, aborted, spawnError: null, pid: null,
      startedAt: started.toISOString(), finishedAt: finished.toISOString(), durationMs: finished.getTime() - started.getTime(),
      lineCount, groupSignals, containment: containment.mode, oversizedLines, storedBytes, droppedLines, writeError,
      ...extra,
    };
  };
  try {
    accessSync(opts.bin, constants.X_OK);
  } catch (err) {
    return finish({ exitCode: CODEX_NOT_FOUND_EXIT, spawnError: `could not start the worker ${opts.bin}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` });
  }
  let eventsFd: number | null = openSync(opts.eventsPath, 'a');
  let stderrFd: number;
  let stdinFd: number | undefined;
  try {
    stderrFd = openSync(opts.stderrPath, 'a');
  } catch (err) {
    closeSync(eventsFd);
    throw err;
  }
  try {
    if (opts.stdinFile) stdinFd = openSync(opts.stdinFile, 'r');
  } catch (err) {
    closeSync(eventsFd);
    closeSync(stderrFd);
    throw err;
  }
  const argv = [...containment.prefix, ...prlimitArgs(opts.limits), opts.bin, ...opts.args];
  const child = spawn(argv[0]!, argv.slice(1), {
    cwd: opts.cwd,
    env: { ...opts.env, [MARKER_VAR]: token },
    detached: true,
    stdio: [stdinFd ?? 'ignore', 'pipe', stderrFd],
    windowsHide: true,
  });
  closeSync(stderrFd);
  if (stdinFd !== undefined) closeSync(stdinFd);
  const pid = child.pid ?? null;
  const exited = new Promise<{ code: number | null; signal: string | null; error: string | null }>((res) => {
    child.once('exit', (code, sig) => res({ code, signal: sig, error: null }));
    child.once('error', (err) => res({ code: null, signal: null, error: err.message }));
  });
  if (pid !== null) {
    trackGroup(pid, token);
    opts.onSpawn?.(pid, token);
  }

  const killAll = async (firstWait: number): Promise<void> => {
    groupSignals.push('SIGTERM');
    // In a PID namespace SIGTERM to unshare itself would end the namespace at once; the processes
    // inside get it first (they carry the marker), so the worker has its grace to shut down.
    if (containment.mode === 'pidns' && pid !== null) {
      for (const p of markedPids(token)) if (p !== pid) signalPid(p, 'SIGTERM');
    } else signalTree(pid, token, 'SIGTERM');
    if (!(await waitTreeGone(pid, token, firstWait))) {
      groupSignals.push('SIGKILL');
      signalTree(pid, token, 'SIGKILL');
      await waitTreeGone(pid, token, 2000);
    }
  };
  const stop = (why: 'timeout' | 'abort' | 'write'): Promise<void> => {
    if (stopping || pid === null) return stopping ?? Promise.resolve();
    if (why === 'timeout') timedOut = true;
    else if (why === 'abort') aborted = true;
    stopping = killAll(grace);
    return stopping;
  };

  const timer = setTimeout(() => void stop('timeout'), opts.timeoutMs);
  const onAbort = () => void stop('abort');
  if (opts.signal?.aborted) onAbort();
  else opts.signal?.addEventListener('abort', onAbort, { once: true });

  const store = (stored: string): void => {
    if (eventsFd === null) return;
    const bytes = Buffer.byteLength(stored) + 1;
    if (storedBytes + bytes > maxStream) {
      droppedLines++;
      return;
    }
    try {
      writeSync(eventsFd, `${stored}\n`);
      storedBytes += bytes;
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      writeError ??= { code: e.code ?? 'EIO', message: `writing ${opts.eventsPath} failed: ${e.message}` };
      droppedLines++;
      try {
        closeSync(eventsFd);
      } catch {
        // the descriptor is unusable anyway
      }
      eventsFd = null;
      void stop('write');
    }
  };
  const emit = (line: string): void => {
    const at = new Date();
    lineCount++;
    const stored = opts.stamp(line, at);
    store(stored);
    try {
      opts.onLine?.(line, stored, at);
    } catch {
      // a progress reporter's failure must not break the capture
    }
  };
  const splitter = new LineSplitter(maxLine, {
    line: (buf, start, end) => emit(buf.toString('utf8', start, end).replace(/\r$/, '')),
    tail: (buf, start, end) => emit(buf.toString('utf8', start, end)),
    oversized: (h, t, total) => {
      oversizedLines++;
      emit(JSON.stringify({ type: 'agentpr.oversized_line', bytes: total, head: h.toString('utf8', 0, Math.min(h.length, OVERSIZED_KEEP)), tail: t.toString('utf8', Math.max(0, t.length - OVERSIZED_KEEP)) }));
    },
  });
  const stdout = child.stdout!;
  const linesDone = new Promise<void>((resolveLines) => {
    stdout.on('data', (chunk: Buffer) => splitter.push(chunk));
    stdout.once('close', () => resolveLines());
    stdout.once('error', () => resolveLines());
  });

  // The step ends when the worker exits or, after a timeout/abort/write error, once the kill is
  // done: whichever comes first. Never on stdout closing alone.
  let settled = false;
  const ended = await Promise.race([
    exited,
    (async () => {
      while (!stopping && !settled) await sleep(50);
      if (stopping) await stopping;
      return null;
    })(),
  ]);
  settled = true;
  clearTimeout(timer);
  opts.signal?.removeEventListener('abort', onAbort);
  // Whatever is left of the tree (daemons, grandchildren holding stdout) goes now.
  if (pid !== null && treeAlive(pid, token)) {
    if (stopping) await stopping;
    else await killAll(Math.min(grace, 2000));
  } else if (stopping) await stopping;
  const exit = ended ?? (await Promise.race([exited, sleep(1000).then(() => null)]));
  await Promise.race([linesDone, sleep(2000)]);
  stdout.destroy();
  splitter.end();
  if (eventsFd !== null) closeSync(eventsFd);
  if (pid !== null) untrackGroup(pid);
  const spawnError = exit?.error ?? null;
  return finish({
    exitCode: spawnError ? CODEX_NOT_FOUND_EXIT : (exit?.code ?? null),
    signal: exit?.signal ?? null,
    spawnError,
    pid,
  });
}

function signalPid(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // gone meanwhile
  }
}

function treeAlive(pid: number, token: string): boolean {
  return groupAlive(pid) || markedPids(token).some((p) => isProcessAlive(p));
}

async function waitTreeGone(pid: number | null, token: string, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  const gone = () => (pid === null || !groupAlive(pid)) && !markedPids(token).some((p) => isProcessAlive(p));
  while (Date.now() < until) {
    if (gone()) return true;
    await sleep(50);
  }
  return gone();
}
