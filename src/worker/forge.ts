import { existsSync, mkdirSync, statSync } from 'node:fs';
import { scrubSecrets } from '../logger.js';
import { GIT_PUSH_CREDENTIALS, safeGitEnv } from './git-safety.js';
import { dirname, join, resolve } from 'node:path';
import { detectContainment } from './contain.js';
import { runProcess } from './runner.js';
import { readTail } from './file-tail.js';
import type { App } from '../app.js';
import { computeDiffStats } from '../analysis/diff-stats.js';
import { defaultIdempotencyKey } from '../core/events.js';
import { ConfigurationError, UserInputError, errorMessage } from '../core/errors.js';
import type { AttemptView, RunView } from '../core/models.js';
import { TransitionError, type RunState } from '../core/states.js';
import { packageRoot } from '../policy-file.js';
import { attemptOwnerMetadata } from './reconcile.js';
import { checkWorkspaceInsideRoot } from './preflight.js';
import { describeGitGuard, guardClone, hasGitEntry, recordGitBaseline } from './git-guard.js';

/**
 * The forge scripts run as step attempts: prepare.sh (fork, clone, branch) and
 * finish.sh (commit, push). Each run records exit code, logs, duration, and applies its event.
 */
export type ForgeScript = 'prepare' | 'finish';

/** Where the scripts live: AGENTPR_FORGE_SCRIPTS_DIR, else this package's forge_integration/scripts. */
export function forgeScriptPath(script: ForgeScript, env: NodeJS.ProcessEnv = process.env): string {
  const dir = env.AGENTPR_FORGE_SCRIPTS_DIR?.trim() ? resolve(env.AGENTPR_FORGE_SCRIPTS_DIR) : join(packageRoot(), 'forge_integration', 'scripts');
  const path = join(dir, `${script}.sh`);
  if (!existsSync(path)) {
    throw new ConfigurationError(`forge script ${path} does not exist; reinstall agentpr or fix AGENTPR_FORGE_SCRIPTS_DIR`);
  }
  return path;
}

export const DEFAULT_SCRIPT_TIMEOUT_SEC = 900;

export interface ScriptResult {
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  stdout: string;
  stderr: string;
  stdoutLog: string;
  stderrLog: string;
  durationMs: number;
  /** AGENTPR_KEY=value lines of stdout, keys lower-cased without the prefix (branch, head_sha, ...). */
  outputs: Record<string, string>;
  /** disk_full / io_error when writing the logs failed; null otherwise. */
  writeFailure?: 'disk_full' | 'io_error' | null;
}

const SCRIPT_KEEP_CHARS = 1024 * 1024;

function keepTail(text: string): string {
  return text.length > SCRIPT_KEEP_CHARS ? text.slice(-SCRIPT_KEEP_CHARS) : text;
}

export function parseOutputs(stdout: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of stdout.split('\n')) {
    const m = /^AGENTPR_([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (m?.[1] !== undefined && m[2] !== undefined) out[m[1].toLowerCase()] = m[2];
  }
  return out;
}

/** The last non-empty line of stderr, the clear message the scripts end with. */
export function lastLine(text: string): string {
  const lines = text.split('\n').map((l) => l.trim()).filter(Boolean);
  return lines[lines.length - 1] ?? '';
}

/**
 * Run a script with bash, contained like the agent worker (its own PID namespace where the kernel
 * allows it, else its own session plus a /proc sweep; see contain.ts), so git and ssh children it
 * leaves behind are ended with it. stdout and stderr go to log files as they arrive; in memory only
 * the last SCRIPT_KEEP_CHARS of each. On timeout or abort everything gets SIGTERM, then SIGKILL
 * 5 s later, and the step ends then. A failed log write (a full disk) is `writeFailure`.
 */
export async function runScript(opts: {
  script: string;
  args: string[];
  cwd: string;
  env: NodeJS.ProcessEnv;
  logBase: string;
  timeoutSec: number;
  signal?: AbortSignal;
}): Promise<ScriptResult> {
  mkdirSync(dirname(opts.logBase), { recursive: true });
  const stdoutLog = `${opts.logBase}.stdout.log`;
  const stderrLog = `${opts.logBase}.stderr.log`;
  let stdout = '';
  // Hooks and fsmonitor off, agentpr's secrets withheld except the credential a push needs.
  const env = safeGitEnv(opts.env, { credentials: GIT_PUSH_CREDENTIALS });
  const r = await runProcess({
    bin: bashPath(env.PATH),
    args: [opts.script, ...opts.args],
    cwd: opts.cwd,
    env,
    eventsPath: stdoutLog,
    stderrPath: stderrLog,
    timeoutMs: opts.timeoutSec * 1000,
    killGraceMs: 5_000,
    stamp: (line) => line,
    onLine: (line) => {
      stdout = keepTail(`${stdout}${line}\n`);
    },
    signal: opts.signal,
    containment: detectContainment(opts.env),
  });
  let stderr = tailOf(stderrLog, SCRIPT_KEEP_CHARS);
  if (r.spawnError) stderr += `\n${r.spawnError}\n`;
  if (r.writeError) stderr += `\nwriting the step's logs failed: ${r.writeError.code} ${r.writeError.message}\n`;
  if (r.timedOut) stderr += `\n${opts.script}: timed out after ${opts.timeoutSec} s; its processes were killed\n`;
  const code = r.writeError?.code;
  return {
    exitCode: r.exitCode,
    signal: r.signal,
    timedOut: r.timedOut,
    stdout,
    stderr,
    stdoutLog,
    stderrLog,
    durationMs: r.durationMs,
    outputs: parseOutputs(stdout),
    writeFailure: code ? (code === 'ENOSPC' || code === 'EDQUOT' ? 'disk_full' : 'io_error') : null,
  };
}

function bashPath(pathVar: string | undefined): string {
  for (const dir of (pathVar ?? '/usr/bin:/bin').split(':')) {
    if (!dir) continue;
    const p = join(dir, 'bash');
    if (existsSync(p)) return resolve(p);
  }
  return '/bin/bash';
}

function tailOf(path: string, chars: number): string {
  try {
    // At most 4 bytes a character: enough bytes for `chars` characters, never the whole log.
    const text = readTail(path, chars * 4);
    return text.length > chars ? text.slice(-chars) : text;
  } catch {
    return '';
  }
}

function assertInsideRoot(app: App, run: RunView): void {
  const c = checkWorkspaceInsideRoot(run.workspace_dir, app.config.workspaceRoot);
  if (!c.ok) throw new UserInputError(`${c.message}; ${c.fix}`);
}

export interface ForgeOutcome {
  run_id: string;
  step: 'prepare' | 'finish';
  attempt_no: number;
  ok: boolean;
  exit_code: number | null;
  timed_out: boolean;
  duration_ms: number;
  state: RunState;
  last_error: string | null;
  stdout_log: string;
  stderr_log: string;
  outputs: Record<string, string>;
  error?: string;
  /** What the git guard found changed in .git (and put back) before the script ran. */
  git_warnings?: string[];
}

/**
 * Close the attempt and apply the event in one transaction. If the event no longer fits (the run
 * was paused meanwhile), the attempt is still closed and the state is left as it is.
 */
/** What run-prepare / run-finish answer once the attempt and its event are settled. */
function outcome(step: 'prepare' | 'finish', attempt: AttemptView, r: ScriptResult, s: { state: RunState; last_error: string | null; error?: string }, gitWarnings: string[] = []): ForgeOutcome {
  return {
    run_id: attempt.run_id,
    step,
    attempt_no: attempt.attempt_no,
    ok: r.exitCode === 0 && !r.timedOut,
    exit_code: r.exitCode,
    timed_out: r.timedOut,
    duration_ms: r.durationMs,
    state: s.state,
    last_error: s.last_error,
    stdout_log: r.stdoutLog,
    stderr_log: r.stderrLog,
    outputs: r.outputs,
    ...(s.error ? { error: s.error } : {}),
    ...(gitWarnings.length ? { git_warnings: gitWarnings } : {}),
  };
}

function settle(
  app: App,
  attempt: AttemptView,
  r: ScriptResult,
  okEvent: { event_type: string; payload: Record<string, unknown> } | null,
  stepName: 'prepare' | 'finish',
  metadata: Record<string, unknown>,
  /** Applied after okEvent in the same transaction (an iteration's push back onto its PR). */
  thenEvent?: { event_type: string; payload: Record<string, unknown>; idempotency_key: string },
): { state: RunState; last_error: string | null; error?: string } {
  const ok = r.exitCode === 0 && !r.timedOut;
  const errorText = ok ? undefined : scrubSecrets(lastLine(r.stderr) || `${stepName}.sh exited ${r.exitCode ?? r.signal}`, app.env);
  const finish = () =>
    app.service.finishAttempt(attempt.attempt_id, {
      status: ok ? 'succeeded' : r.timedOut ? 'timed_out' : 'failed',
      exit_code: r.exitCode,
      reason_code: ok ? null : r.timedOut ? 'timeout' : (r.writeFailure ?? 'script_failed'),
      stdout_log: r.stdoutLog,
      stderr_log: r.stderrLog,
      duration_ms: r.durationMs,
      metadata: { ...metadata, outputs: r.outputs, ...(errorText ? { error: errorText } : {}) },
    });
  const event = ok
    ? okEvent
    : r.timedOut
      ? { event_type: 'timer.timeout', payload: { step: stepName, attempt_no: attempt.attempt_no } }
      : { event_type: 'worker.step.failed', payload: { step: stepName, reason_code: r.writeFailure ?? 'script_failed', error_message: errorText ?? '', attempt_no: attempt.attempt_no } };
  try {
    return app.service.transaction(() => {
      finish();
      if (!event) {
        const run = app.service.getRun(attempt.run_id);
        return { state: run.state, last_error: run.last_error, ...(errorText ? { error: errorText } : {}) };
      }
      const res = app.service.applyEvent({
        run_id: attempt.run_id,
        event_type: event.event_type,
        payload: event.payload,
        idempotency_key: defaultIdempotencyKey(event.event_type, attempt.run_id, { step: stepName, attempt_no: attempt.attempt_no }),
      });
      // A run paused while its push ran stays PAUSED: the iteration's return to its PR waits for resume.
      const then = ok && thenEvent && res.state !== 'PAUSED' ? app.service.applyEvent({ run_id: attempt.run_id, ...thenEvent }) : undefined;
      const last = then ?? res;
      return { state: last.state, last_error: last.last_error, ...(errorText ? { error: errorText } : {}) };
    });
  } catch (err) {
    if (!(err instanceof TransitionError)) throw err;
    finish();
    const run = app.service.getRun(attempt.run_id);
    app.logger.warn({ run_id: run.run_id, step: stepName, err: err.message }, 'forge step finished but its event no longer fits the run state');
    return { state: run.state, last_error: run.last_error, error: `${errorText ? `${errorText}; ` : ''}${event?.event_type} not applied: ${err.message}` };
  }
}

function logBase(app: App, runId: string, step: string, attemptNo: number): string {
  return join(app.config.reportsDir, runId, `${step}-${attemptNo}`);
}

export interface PrepareInput {
  run_id: string;
  upstream_url?: string;
  fork_url?: string;
  base?: string;
  feature?: string;
  timeout_sec?: number;
}

/**
 * prepare.sh in the parent of the run's workspace, cloning into the workspace itself. A QUEUED
 * run moves to DISCOVERY first; success leaves it in DISCOVERY with the branch in the attempt's
 * metadata (the manager reads "prepare has run" from the attempts).
 */
export async function runPrepare(app: App, input: PrepareInput, signal?: AbortSignal): Promise<ForgeOutcome> {
  const assertPreparable = (r: RunView) => {
    if (r.state !== 'QUEUED' && r.state !== 'DISCOVERY') {
      throw new UserInputError(
        `run-prepare works on a run in DISCOVERY (a QUEUED run is moved there first); ${r.run_id} is in ${r.state}${r.state === 'FAILED_RETRYABLE' || r.state === 'PAUSED' ? ' — move it back with retry/resume target_state=DISCOVERY' : ''}`,
      );
    }
  };
  const run = app.service.getRun(input.run_id);
  assertPreparable(run);
  assertInsideRoot(app, run);
  const script = forgeScriptPath('prepare', app.env);
  const workspace = resolve(run.workspace_dir);
  // A clone prepare reuses may hold what an earlier worker wrote into .git: check and put it back first.
  const gitWarnings = hasGitEntry(workspace) ? describeGitGuard(await guardClone(app.config.home, run.run_id, workspace)) : [];
  const cwd = dirname(workspace);
  mkdirSync(cwd, { recursive: true });
  const args = [run.owner, run.repo, input.base ?? '', input.feature ?? ''];
  while (args.length > 2 && args[args.length - 1] === '') args.pop();
  const env: NodeJS.ProcessEnv = { ...app.env, AGENTPR_FORGE_CLONE_DIR: workspace };
  if (input.upstream_url) env.AGENTPR_FORGE_UPSTREAM_URL = input.upstream_url;
  if (input.fork_url) env.AGENTPR_FORGE_FORK_URL = input.fork_url;
  const metadata = {
    script,
    args,
    cwd,
    workspace_dir: workspace,
    ...(input.upstream_url ? { upstream_url: input.upstream_url } : {}),
    ...(input.fork_url ? { fork_url: input.fork_url } : {}),
    ...(gitWarnings.length ? { git_warnings: gitWarnings } : {}),
  };
  // The state check, QUEUED -> DISCOVERY and the run's lease in one transaction: a second caller
  // is refused before it changes anything.
  const attempt = app.service.transaction(() => {
    const now = app.service.getRun(run.run_id);
    assertPreparable(now);
    if (now.state === 'QUEUED') {
      app.service.applyEvent({
        run_id: run.run_id,
        event_type: 'command.start.discovery',
        payload: {},
        idempotency_key: defaultIdempotencyKey('command.start.discovery', run.run_id, { after_event_id: app.service.lastEventId(run.run_id), by: 'run-prepare' }),
      });
    }
    return app.service.startAttempt(run.run_id, 'prepare', { ...attemptOwnerMetadata(), ...metadata });
  });
  let r: ScriptResult;
  try {
    r = await runScript({ script, args, cwd, env, logBase: logBase(app, run.run_id, 'prepare', attempt.attempt_no), timeoutSec: input.timeout_sec ?? DEFAULT_SCRIPT_TIMEOUT_SEC, signal });
  } catch (err) {
    app.service.finishAttempt(attempt.attempt_id, { status: 'failed', reason_code: 'script_failed', metadata: { error: errorMessage(err) } });
    throw err;
  }
  const branchMeta = r.outputs.branch ? { branch: r.outputs.branch, base: r.outputs.base, base_sha: r.outputs.base_sha, repo_dir: r.outputs.repo_dir } : {};
  if (r.exitCode === 0 && !r.timedOut) {
    // What prepare left in .git is what agentpr keeps: the guard puts it back after every worker.
    try {
      recordGitBaseline(app.config.home, run.run_id, workspace);
    } catch (err) {
      r = { ...r, exitCode: 1, stderr: `${r.stderr}\nrecording the clone's git settings failed: ${errorMessage(err)}\n` };
    }
  }
  const s = settle(app, attempt, r, null, 'prepare', { ...metadata, ...branchMeta });
  return outcome('prepare', attempt, r, s, gitWarnings);
}

export interface FinishInput {
  run_id: string;
  changes: string;
  project?: string;
  title?: string;
  timeout_sec?: number;
}

/** finish.sh in the run's clone: LOCAL_VALIDATING -> worker.push.completed {branch, head_sha} -> PUSHED. */
export async function runFinish(app: App, input: FinishInput, signal?: AbortSignal): Promise<ForgeOutcome> {
  const assertFinishable = (r: RunView) => {
    if (r.state !== 'LOCAL_VALIDATING') throw new UserInputError(`run-finish pushes a run in LOCAL_VALIDATING; ${r.run_id} is in ${r.state}`);
  };
  const run = app.service.getRun(input.run_id);
  assertFinishable(run);
  assertInsideRoot(app, run);
  const workspace = resolve(run.workspace_dir);
  if (!existsSync(workspace) || !statSync(workspace).isDirectory()) {
    throw new UserInputError(`workspace ${workspace} of ${run.run_id} does not exist; run run-prepare first`);
  }
  // The worker ran in this clone: .git as run-prepare left it before any git of ours (a replaced or
  // redirected .git is refused here, before the attempt starts).
  const guard = await guardClone(app.config.home, run.run_id, workspace);
  const gitWarnings = describeGitGuard(guard);
  if (gitWarnings.length) app.logger.warn({ run_id: run.run_id, git: gitWarnings }, 'run-finish put back git settings the worker changed');
  // An iteration's push is recorded with its size: the changes finish is about to commit.
  const iterationDiff = run.pr_number ? await computeDiffStats(workspace).then((d) => ({ changed_files: d.changed_files, added_lines: d.added_lines, deleted_lines: d.deleted_lines }), () => undefined) : undefined;
  const script = forgeScriptPath('finish', app.env);
  const args = [input.changes, input.project ?? '', input.title ?? ''];
  while (args.length > 1 && args[args.length - 1] === '') args.pop();
  const metadata = { script, args, cwd: workspace, ...(gitWarnings.length ? { git_warnings: gitWarnings } : {}) };
  const attempt = app.service.startAttempt(run.run_id, 'finish', { ...attemptOwnerMetadata(), ...metadata }, { guard: assertFinishable });
  let r: ScriptResult;
  try {
    r = await runScript({ script, args, cwd: workspace, env: { ...app.env, ...(guard.origin_url ? { AGENTPR_FORGE_PUSH_URL: guard.origin_url } : {}) }, logBase: logBase(app, run.run_id, 'finish', attempt.attempt_no), timeoutSec: input.timeout_sec ?? DEFAULT_SCRIPT_TIMEOUT_SEC, signal });
  } catch (err) {
    app.service.finishAttempt(attempt.attempt_id, { status: 'failed', reason_code: 'script_failed', metadata: { error: errorMessage(err) } });
    throw err;
  }
  let okEvent: { event_type: string; payload: Record<string, unknown> } | null = null;
  if (r.exitCode === 0 && !r.timedOut) {
    // finish's own git set the branch's upstream (push -u): that is agentpr's, kept from now on.
    try {
      recordGitBaseline(app.config.home, run.run_id, workspace);
    } catch (err) {
      app.logger.warn({ run_id: run.run_id, err: errorMessage(err) }, 'could not record the git settings after finish');
    }
    if (!r.outputs.branch) {
      // The script said ok but named no branch: treat as a failure rather than guess.
      r = { ...r, exitCode: r.exitCode === 0 ? 1 : r.exitCode, stderr: `${r.stderr}\nfinish.sh printed no AGENTPR_BRANCH line\n` };
    } else {
      okEvent = {
        event_type: 'worker.push.completed',
        payload: { branch: r.outputs.branch, ...(r.outputs.head_sha ? { head_sha: r.outputs.head_sha } : {}), ...(r.outputs.title ? { title: r.outputs.title } : {}) },
      };
    }
  }
  // An iteration pushes onto the PR that is already open: the approval covered opening it, so with
  // policy github.iteration_push auto the run goes straight back to CI_WAIT with its new head.
  const relink =
    okEvent && run.pr_number && app.policy.github.iteration_push === 'auto'
      ? {
          event_type: 'command.pr.linked',
          payload: { pr_number: run.pr_number, iteration_push: true, ...(r.outputs.head_sha ? { head_sha: r.outputs.head_sha } : {}), ...(iterationDiff ? { diff: iterationDiff } : {}) },
          idempotency_key: `command.pr.linked:${run.run_id}:pr:${run.pr_number}:push:${r.outputs.head_sha ?? `finish-${attempt.attempt_no}`}`,
        }
      : undefined;
  const s = settle(app, attempt, r, okEvent, 'finish', { ...metadata, ...(r.outputs.branch ? { branch: r.outputs.branch, head_sha: r.outputs.head_sha } : {}) }, relink);
  return outcome('finish', attempt, r, s, gitWarnings);
}
