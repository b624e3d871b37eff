import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, realpathSync, rmSync, statSync, statfsSync, writeFileSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import type { App } from '../app.js';
import { iterationContext, iterationPromptSection, materializeIterationPacket } from '../github/iteration-packet.js';
import { defaultIdempotencyKey } from '../core/events.js';
import { UserInputError, errorMessage } from '../core/errors.js';
import type { ApplyResult, AttemptView, RunView } from '../core/models.js';
import { canTransition, type RunState } from '../core/states.js';
import { agentPolicyFor, type RunAgentStepPolicy } from '../policy.js';
import { RefusedError, type ProgressUpdate } from '../registry.js';
import type { ArtifactInput } from '../service.js';
import {
  StreamAccumulator,
  analyzeParsed,
  computeDiffStats,
  digestToJson,
  stampLine,
  type AttemptAnalysis,
  type DiffStats,
  type PreflightSummary,
  type UsageTotals,
} from '../analysis/index.js';
import { activeSteps, type ActiveAgentStep } from './active.js';
import { detectContainment } from './contain.js';
import { buildRuntimeEnv, excludeRuntimeDir, loadEnvOverrides, type LoadedEnvOverrides } from './env.js';
import { artifactFor, readDigestFile } from './inspect.js';
import { attemptOwnerMetadata, procStart } from './reconcile.js';
import { buildAgentArgs, checkCallArgs, checkExtraArgs, probeAgent, type AgentProbe } from './agents/codex.js';
import { compareRepo, snapshotRepo, type RepoSnapshot } from './repo-state.js';
import { readTail } from './file-tail.js';
import { describeGitGuard, guardClone, guardGitDir, hasGitEntry, nestedRepoProblems, type GitGuardResult } from './git-guard.js';
import {
  assertRunnableSandbox,
  composePrompt,
  lastMessagePath,
  resolveCodexBin,
  runProcess,
  safetyContract,
  type RunProcessResult,
  type Sandbox,
} from './runner.js';
import { checkWorkspaceInsideRoot, dirtyPaths, runPreflight } from './preflight.js';
import {
  TASK_PACKET_SCHEMA,
  TaskPacketSchema,
  buildTaskPacket,
  installedSkillsDir,
  materializeContract,
  missingSkills,
  readSkills,
  skillsEnvelope,
  stageSkillPlan,
  writeTaskPacket,
} from './skills.js';

/** States a worker step may start from (QUEUED is first moved to DISCOVERY). */
export const AGENT_STEP_STATES: readonly RunState[] = ['DISCOVERY', 'IMPLEMENTING', 'LOCAL_VALIDATING', 'ITERATING'];

/** The longest prompt accepted (it travels on the worker's stdin, never in argv). */
export const MAX_PROMPT_CHARS = 100_000;
const MAX_PROMPT_FILE_BYTES = 256 * 1024;
const PROGRESS_INTERVAL_MS = 2_000;
const PROGRESS_MIN_GAP_MS = 250;
const STDERR_TAIL_BYTES = 8 * 1024;

export interface AgentStepRequest {
  run_id: string;
  prompt?: string;
  prompt_file?: string;
  max_agent_seconds?: number;
  sandbox?: Sandbox;
  model?: string;
  allowed_read_only_roots?: string[];
  /** Extra codex exec flags for this call, after the policy's codex_extra_args; flags agentpr owns are refused. */
  codex_args?: string[];
  /** Per-call overrides of the run's policy and checks; each one given is recorded on the attempt. */
  success_state?: RunAgentStepPolicy['success_state'];
  on_retryable_state?: RunAgentStepPolicy['on_retryable_state'];
  on_human_review_state?: RunAgentStepPolicy['on_human_review_state'];
  min_test_commands?: number;
  max_changed_files?: number;
  max_added_lines?: number;
  skills_mode?: RunAgentStepPolicy['skills_mode'];
  /** Run in skills mode although skills of the stage's plan are not installed. */
  allow_missing_skills?: boolean;
  /** Run although the worktree has uncommitted changes (they then count in the diff budget). */
  allow_dirty_worktree?: boolean;
  /** Do not run the workspace preflight before the worker. */
  skip_preflight?: boolean;
  /**
   * Skills mode: an agentpr.task_packet.v1 file whose skills plan and contract are used instead of
   * the stage's; agentpr keeps its own run, attempt, limits and paths in the packet.
   */
  task_packet_file?: string;
  /** Kill grace after SIGTERM (tests shorten it). */
  kill_grace_ms?: number;
}

export interface AgentStepOutcome {
  run_id: string;
  attempt_no: number;
  status: 'running' | 'finished';
  state_before: RunState;
  state_after: RunState;
  grade: 'PASS' | 'RETRYABLE' | 'HUMAN_REVIEW' | null;
  reason_code: string | null;
  next_action: string | null;
  evidence: string[];
  exit_code: number | null;
  timed_out: boolean;
  duration_ms: number | null;
  event: { event_type: string; outcome: string; from_state: string; state: string } | null;
  /** Why no state change was applied although the verdict asked for one. */
  note: string | null;
  kept_event_stream: boolean | null;
  artifacts: Array<{ type: string; uri: string }>;
  reports_dir: string;
}

/** Everything fixed before the attempt starts. */
interface Plan {
  run: RunView;
  /** State when the worker starts (after the QUEUED -> DISCOVERY move). */
  stage: RunState;
  policy: RunAgentStepPolicy;
  sandbox: Sandbox;
  model: string | undefined;
  maxAgentSeconds: number;
  readOnlyRoots: string[];
  prompt: string;
  promptSource: string;
  /** The iteration packet given to a worker in ITERATING (its Markdown and the stored JSON file). */
  iteration?: { markdown: string; artifact: { uri: string } };
  repoDir: string;
  codexBin: string;
  /** What `codex --version` and `codex exec --help` said. */
  probe: AgentProbe;
  /** The worker's argv (the prompt is not in it: it goes on stdin). */
  args: string[];
  /** Operator flags in args (policy codex_extra_args + the call's codex_args). */
  extraArgs: string[];
  skillsPlan: string[];
  killGraceMs: number;
  envOverrides: LoadedEnvOverrides;
  /** The per-call overrides given (names and values), recorded on the attempt. */
  overrides: Record<string, unknown>;
  skipPreflight: boolean;
  /** From task_packet_file: the contract to hand the worker instead of the run's. */
  packetContract: string | null;
  /** What the git guard found (and put back) in .git before this step: left by an earlier worker. */
  gitBefore: GitGuardResult;
}

/** Reads and checks a task_packet_file; returns its skills plan and contract path. */
function readTaskPacketFile(file: string, skillsMode: string): { plan: string[]; contract: string | null } {
  if (skillsMode !== 'agentpr') throw new UserInputError(`task_packet_file needs skills mode (policy skills_mode or the skills_mode input 'agentpr'); it is '${skillsMode}'`);
  const path = resolve(file);
  let size: number;
  try {
    size = statSync(path).size;
  } catch {
    throw new UserInputError(`task_packet_file ${path} does not exist; give the path of an ${TASK_PACKET_SCHEMA} JSON file`);
  }
  if (size > MAX_PROMPT_FILE_BYTES) throw new UserInputError(`task_packet_file ${path} is ${size} bytes; the limit is ${MAX_PROMPT_FILE_BYTES}`);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new UserInputError(`task_packet_file ${path} is not valid JSON (${errorMessage(err)})`);
  }
  const parsed = TaskPacketSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new UserInputError(`task_packet_file ${path} is not an ${TASK_PACKET_SCHEMA} packet: ${issue?.path.join('.') || '(root)'}: ${issue?.message ?? 'invalid'}`);
  }
  const names = parsed.data.skills.plan.map((p) => p.name);
  const bad = names.find((n) => !/^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/.test(n));
  if (bad !== undefined) throw new UserInputError(`task_packet_file ${path}: skill name '${bad}' is not a skill directory name (letters, digits, . _ -)`);
  // The contract is copied where the worker reads it: only a file next to the packet (or below) may be named.
  let contract: string | null = null;
  if (parsed.data.contract) {
    const base = dirname(realpathSync(path));
    const src = resolve(base, parsed.data.contract.source);
    let real: string;
    try {
      real = realpathSync(src);
    } catch {
      throw new UserInputError(`task_packet_file ${path}: contract.source ${src} does not exist`);
    }
    if (!real.startsWith(`${base}/`) || !statSync(real).isFile()) {
      throw new UserInputError(`task_packet_file ${path}: contract.source must be a file in ${base} or below (got ${real}); put the contract next to the packet`);
    }
    contract = real;
  }
  return { plan: names, contract };
}

/** Request fields that override the policy for one call. */
const POLICY_OVERRIDES = ['success_state', 'on_retryable_state', 'on_human_review_state', 'min_test_commands', 'max_changed_files', 'max_added_lines', 'skills_mode'] as const;
/** Request fields that relax a check for one call. */
const CHECK_OVERRIDES = ['allow_missing_skills', 'allow_dirty_worktree', 'skip_preflight', 'task_packet_file'] as const;

function callOverrides(req: AgentStepRequest): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of [...POLICY_OVERRIDES, ...CHECK_OVERRIDES]) if (req[k] !== undefined) out[k] = req[k];
  return out;
}

// ---- checks that refuse (nothing changes) ---------------------------------------------------------

/** Fail fast when the run's workspace is not a directory inside the configured root. */
export function checkWorkspace(app: App, run: RunView): string {
  const ws = resolve(run.workspace_dir);
  const inside = checkWorkspaceInsideRoot(ws, app.config.workspaceRoot);
  if (!inside.ok) {
    throw new RefusedError(`workspace_outside_root: run ${run.run_id}: ${inside.message}; nothing was changed. Fix: ${inside.fix}.`);
  }
  if (!existsSync(ws) || !statSync(ws).isDirectory()) {
    throw new RefusedError(`workspace_missing: workspace ${ws} of run ${run.run_id} does not exist; nothing was changed. Run run-prepare first to clone the repository.`);
  }
  return ws;
}

/** The least free space a step starts with on the clone's disk: git, the worker and its tests write there. */
export const MIN_FREE_BYTES = 1024 * 1024;

/**
 * Refuse a step on a disk that is already full. git status can still succeed on a full disk (its
 * index refresh is best-effort), so its failure alone cannot tell a full disk from a broken clone.
 */
function checkFreeSpace(repoDir: string): void {
  let free: number;
  try {
    const s = statfsSync(repoDir);
    free = Number(s.bavail) * Number(s.bsize);
  } catch {
    return; // a filesystem that cannot say; git's own errors still classify a full disk below
  }
  if (free < MIN_FREE_BYTES) {
    throw new RefusedError(
      `disk_full: checking ${repoDir} failed: its disk has ${Math.floor(free / 1024)} KiB free, a step needs at least ${MIN_FREE_BYTES / 1024} KiB; nothing was changed. Free space on that disk and call again.`,
    );
  }
}

/** Uncommitted changes ("XY path" entries); the runtime dir is excluded through .git/info/exclude. */
async function uncommitted(repoDir: string): Promise<string[]> {
  let paths: string[];
  try {
    paths = await dirtyPaths(repoDir);
  } catch (err) {
    // git fails the same way on a full disk; say which it is.
    if (/No space left on device|ENOSPC|Disk quota exceeded|Out of diskspace/i.test(errorMessage(err))) {
      throw new RefusedError(`disk_full: checking ${repoDir} failed: ${errorMessage(err)}; nothing was changed. Free space on that disk and call again.`);
    }
    throw new RefusedError(`workspace_not_a_git_repo: ${errorMessage(err)}; nothing was changed. Run run-prepare to clone the repository.`);
  }
  return paths;
}

function readPrompt(req: AgentStepRequest): { prompt: string; source: string } {
  if ((req.prompt === undefined) === (req.prompt_file === undefined)) {
    throw new UserInputError('give exactly one of prompt (the task text) or prompt_file (a path to a text file with it)');
  }
  let prompt: string;
  let source: string;
  if (req.prompt !== undefined) {
    prompt = req.prompt;
    source = 'input';
  } else {
    const path = resolve(req.prompt_file!);
    let size: number;
    try {
      size = statSync(path).size;
    } catch {
      throw new UserInputError(`prompt_file ${path} does not exist; give the path of a text file with the task`);
    }
    if (size > MAX_PROMPT_FILE_BYTES) throw new UserInputError(`prompt_file ${path} is ${size} bytes; the limit is ${MAX_PROMPT_FILE_BYTES}`);
    prompt = readFileSync(path, 'utf8');
    source = path;
  }
  if (!prompt.trim()) throw new UserInputError(`the prompt (from ${source}) is empty; say what the worker should do`);
  if (prompt.length > MAX_PROMPT_CHARS) {
    throw new UserInputError(`the prompt (from ${source}) has ${prompt.length} characters; the limit is ${MAX_PROMPT_CHARS}. Put details in a file in the repository and refer to it.`);
  }
  return { prompt, source };
}

/** AGENTPR_KILL_GRACE_MS: how long a timed-out worker gets between SIGTERM and SIGKILL (default 5000). */
function killGraceFromEnv(env: NodeJS.ProcessEnv): number | undefined {
  if (!env.AGENTPR_KILL_GRACE_MS) return undefined;
  const n = Number(env.AGENTPR_KILL_GRACE_MS);
  return Number.isInteger(n) && n >= 0 && n <= 600_000 ? n : undefined;
}

function budgetSeconds(run: RunView): number | undefined {
  const v = run.budget.max_agent_seconds;
  const n = typeof v === 'string' ? Number(v) : v;
  return typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= 86_400 ? n : undefined;
}

function runningAgentAttempt(app: App, runId: string): AttemptView | undefined {
  return app.service.listAttempts(runId, 'agent').find((a) => a.status === 'running');
}

function assertStartableState(run: RunView): void {
  if (run.state !== 'QUEUED' && !AGENT_STEP_STATES.includes(run.state)) {
    const hint =
      run.state === 'PLAN_READY'
        ? 'start-implementation first'
        : run.state === 'FAILED_RETRYABLE'
          ? 'retry (to DISCOVERY, IMPLEMENTING or ITERATING) first'
          : run.state === 'PAUSED'
            ? 'resume it first'
            : 'the run is past the worker stages';
    throw new RefusedError(
      `run-agent-step runs from QUEUED (moved to DISCOVERY), DISCOVERY, IMPLEMENTING, LOCAL_VALIDATING or ITERATING; run ${run.run_id} is in ${run.state}: ${hint}. Nothing was changed.`,
    );
  }
}

/** All refusals, in the documented order (the doctor ran before the handler). */
async function planStep(app: App, req: AgentStepRequest): Promise<Plan> {
  const run = app.service.getRun(req.run_id);
  assertStartableState(run);
  const overrides = callOverrides(req);
  const policy: RunAgentStepPolicy = { ...agentPolicyFor(app.policy, run.owner, run.repo) };
  for (const k of POLICY_OVERRIDES) if (req[k] !== undefined) (policy as Record<string, unknown>)[k] = req[k];
  const sandbox = req.sandbox ?? policy.codex_sandbox;
  assertRunnableSandbox(sandbox, req.sandbox ? 'the sandbox input' : `policy run_agent_step.codex_sandbox for ${run.owner}/${run.repo}`);
  const { prompt, source } = readPrompt(req);
  const roots = [...policy.allowed_read_only_roots, ...(req.allowed_read_only_roots ?? [])];
  const relativeRoot = roots.find((r) => !isAbsolute(r));
  if (relativeRoot !== undefined) throw new UserInputError(`allowed_read_only_roots must be absolute paths; got '${relativeRoot}'`);
  const repoDir = checkWorkspace(app, run);
  checkFreeSpace(repoDir);
  // Before agentpr's own git runs here: .git as run-prepare left it (a running step's worker is not disturbed).
  const gitBefore: GitGuardResult = hasGitEntry(repoDir)
    ? await guardClone(app.config.home, run.run_id, repoDir, { restore: !activeSteps(app).get(run.run_id) })
    : { changes: [], dangerous_keys: [], restored: [], origin_url: null, recorded_by: 'first-use' };
  const dirty = await uncommitted(repoDir);
  if (dirty.length && !req.allow_dirty_worktree) {
    throw new RefusedError(
      `dirty_workspace_before_agent: ${repoDir} has ${dirty.length} uncommitted change(s) (${dirty.slice(0, 5).join(', ')}${dirty.length > 5 ? ', ...' : ''}); nothing was changed. Commit, stash or discard them (or re-run run-prepare) before the worker runs.`,
    );
  }
  const stage: RunState = run.state === 'QUEUED' ? 'DISCOVERY' : run.state;
  let skillsPlan: string[] = [];
  const fromPacket = req.task_packet_file !== undefined ? readTaskPacketFile(req.task_packet_file, policy.skills_mode) : null;
  if (policy.skills_mode === 'agentpr') {
    skillsPlan = fromPacket ? fromPacket.plan : stageSkillPlan(stage, policy);
    const missing = missingSkills(skillsPlan, app.env);
    if (missing.length && !req.allow_missing_skills) {
      throw new RefusedError(
        `skills_missing: skills mode needs ${missing.join(', ')} in ${installedSkillsDir(app.env)} for ${stage}; nothing was changed. Run install-skills (and check skills-status).`,
      );
    }
  }
  const codexBin = resolveCodexBin(app.env);
  const policyExtra = policy.codex_extra_args;
  checkExtraArgs(policyExtra, `policy run_agent_step.codex_extra_args for ${run.owner}/${run.repo}`);
  checkCallArgs(req.codex_args ?? [], 'codex_args');
  const extraArgs = [...policyExtra, ...(req.codex_args ?? [])];
  const model = req.model ?? policy.codex_model;
  const probe = await probeAgent(codexBin, app.env);
  const args = buildAgentArgs(probe, { sandbox, model, lastMessagePath: lastMessagePath(repoDir), extraArgs });
  const envOverrides = loadEnvOverrides(repoDir, app.config.home, app.env, app.policy.security.env_override_allowlist);
  const active = activeSteps(app).get(run.run_id);
  if (active) {
    throw new RefusedError(`an agent step is already running for ${run.run_id} (attempt ${active.attempt_no}, since ${active.started_at}); wait for it or look at inspect-run.`);
  }
  const iteration = run.state === 'ITERATING' ? await iterationContext(app, run) : undefined;
  if (iteration?.stop) {
    // The loop is bounded: the run goes to a person instead of another round.
    app.service.applyEvent({
      run_id: run.run_id,
      event_type: 'worker.step.failed',
      payload: { step: 'agent', reason_code: iteration.stop.reason_code, error_message: iteration.stop.message, to_state: 'NEEDS_HUMAN_REVIEW' },
      idempotency_key: `worker.step.failed:${run.run_id}:${iteration.stop.reason_code}:${iteration.artifact.artifact_id}`,
    });
    throw new RefusedError(`${iteration.stop.reason_code}: ${iteration.stop.message}; the run is now NEEDS_HUMAN_REVIEW and no worker was started`);
  }
  return {
    iteration,
    run,
    stage,
    policy,
    sandbox,
    model,
    maxAgentSeconds: req.max_agent_seconds ?? budgetSeconds(run) ?? policy.max_agent_seconds,
    readOnlyRoots: [...new Set(roots.map((r) => resolve(r)))],
    prompt,
    promptSource: source,
    repoDir,
    codexBin,
    probe,
    args,
    extraArgs,
    skillsPlan,
    killGraceMs: req.kill_grace_ms ?? killGraceFromEnv(app.env) ?? 5000,
    envOverrides,
    overrides,
    skipPreflight: req.skip_preflight === true,
    packetContract: fromPacket?.contract ?? null,
    gitBefore,
  };
}

// ---- starting: one transaction ---------------------------------------------------------------------

function startAttempt(app: App, plan: Plan): { attempt: AttemptView; run: RunView } {
  return app.service.transaction(() => {
    // Re-read inside the write lock: the run may have moved while the checks ran.
    const run = app.service.getRun(plan.run.run_id);
    assertStartableState(run);
    if ((run.state === 'QUEUED' ? 'DISCOVERY' : run.state) !== plan.stage) {
      throw new RefusedError(`run ${run.run_id} moved from ${plan.run.state} to ${run.state} while the checks ran; nothing was started. Call run-agent-step again.`);
    }
    const running = runningAgentAttempt(app, run.run_id);
    if (running) {
      throw new RefusedError(
        `an agent step is already running for ${run.run_id} (attempt ${running.attempt_no}, since ${running.started_at}, pid ${String(running.metadata.owner_pid ?? '?')}); wait for it or look at inspect-run.`,
      );
    }
    if (run.state === 'QUEUED') {
      app.service.applyEvent({
        run_id: run.run_id,
        event_type: 'command.start.discovery',
        payload: { by: 'run-agent-step' },
        idempotency_key: defaultIdempotencyKey('command.start.discovery', run.run_id, { by: 'run-agent-step', after_event_id: app.service.lastEventId(run.run_id) }),
      });
    }
    const attempt = app.service.startAttempt(run.run_id, 'agent', {
      ...attemptOwnerMetadata(),
      stage: plan.stage,
      sandbox: plan.sandbox,
      model: plan.model ?? null,
      codex_version: plan.probe.version,
      codex_extra_args: plan.extraArgs,
      overrides: plan.overrides,
      max_agent_seconds: plan.maxAgentSeconds,
      skills_mode: plan.policy.skills_mode,
      prompt_source: plan.promptSource,
      prompt_chars: plan.prompt.length,
    });
    return { attempt, run: app.service.getRun(run.run_id) };
  });
}

// ---- running ---------------------------------------------------------------------------------------

function previousUsage(app: App, runId: string): (Partial<UsageTotals> & { thread_id?: string | null }) | null {
  const a = artifactFor(app, runId, 'run_digest');
  if (!a) return null;
  const { digest } = readDigestFile(a.uri);
  if (!digest?.usage) return null;
  const u = digest.usage;
  return {
    input_tokens: u.input_tokens,
    cached_input_tokens: u.cached_input_tokens,
    output_tokens: u.output_tokens,
    reasoning_output_tokens: u.reasoning_output_tokens,
    total_tokens: u.total_tokens,
    thread_id: u.thread_ids[u.thread_ids.length - 1] ?? null,
  };
}

/** The command a stream line started or finished, read cheaply (no full parse of big outputs). */
function commandOf(line: string): string | null {
  if (!line.includes('"command_execution"')) return null;
  if (line.length > 64 * 1024) {
    const m = /"command":"((?:[^"\\]|\\.){0,2000})"/.exec(line.slice(0, 8192));
    if (!m) return null;
    try {
      return JSON.parse(`"${m[1]}"`) as string;
    } catch {
      return null;
    }
  }
  try {
    const ev = JSON.parse(line) as { item?: { type?: string; command?: unknown } };
    return ev.item?.type === 'command_execution' && typeof ev.item.command === 'string' ? ev.item.command : null;
  } catch {
    return null;
  }
}

function shortCommand(cmd: string): string {
  const unwrapped = cmd.replace(/^\/bin\/(?:ba|z)?sh -lc /, '').replace(/^'(.*)'$/s, '$1');
  const one = unwrapped.replace(/\s+/g, ' ').trim();
  return one.length > 200 ? `${one.slice(0, 200)}…` : one;
}

function sha1(text: string): string {
  return createHash('sha1').update(text).digest('hex');
}

interface Execution {
  app: App;
  plan: Plan;
  /** The run after the attempt started (state = the stage). */
  run: RunView;
  attempt: AttemptView;
  reportsDir: string;
  progress?: (u: ProgressUpdate) => Promise<void>;
  active: ActiveAgentStep;
  abort: AbortController;
}

interface WorkerFacts {
  proc: RunProcessResult | null;
  preflight: PreflightSummary;
  acc: StreamAccumulator;
  eventsPath: string;
  stderrPath: string;
  lastMessageCopy: string | null;
  taskPacketPath: string | null;
  envApplied: Record<string, string | null>;
  /** Names of the variables the override files set or removed (their values are never written to reports). */
  envOverridden: string[];
  envOverrideFiles: string[];
  /** argv (the prompt is in prompt.txt and went on stdin). */
  args: string[];
  /** HEAD and refs before the worker ran. */
  repoBefore: RepoSnapshot | null;
  promptSha1: string;
  promptPath: string;
}

/** Preflight, task packet, prompt, then the worker process with live progress. */
async function runWorker(ex: Execution): Promise<WorkerFacts> {
  const { app, plan, attempt } = ex;
  const dir = ex.reportsDir;
  mkdirSync(dir, { recursive: true });
  const eventsPath = join(dir, 'events.jsonl');
  const stderrPath = join(dir, 'stderr.log');
  const acc = new StreamAccumulator();

  excludeRuntimeDir(plan.repoDir);
  const rtEnv = buildRuntimeEnv(plan.repoDir, { baseEnv: app.env, overrides: plan.envOverrides });
  const preflight: PreflightSummary = plan.skipPreflight
    ? { ok: true, checks: [{ name: 'preflight', ok: true, message: 'skipped for this call (skip_preflight)' }] }
    : await workerPreflight(app, plan.repoDir, rtEnv.env);

  let taskPacketPath: string | null = null;
  let body = plan.prompt;
  // The iteration packet inside the sandbox, where the worker (and the loop's skills) can read it.
  const iterationFiles = plan.iteration ? materializeIterationPacket(plan.repoDir, plan.iteration) : null;
  if (plan.policy.skills_mode === 'agentpr') {
    const contract = materializeContract(plan.repoDir, plan.packetContract ?? app.service.latestArtifact(ex.run.run_id, 'contract')?.uri);
    const packet = buildTaskPacket({
      run: ex.run,
      stage: plan.stage,
      attemptNo: attempt.attempt_no,
      plan: plan.skillsPlan,
      policy: plan.policy,
      sandbox: plan.sandbox,
      maxAgentSeconds: plan.maxAgentSeconds,
      contract,
      env: app.env,
      iterationPacket: iterationFiles,
    });
    writeTaskPacket(packet);
    taskPacketPath = join(dir, 'task_packet.json');
    writeFileSync(taskPacketPath, `${JSON.stringify(packet, null, 2)}\n`);
    body = skillsEnvelope(packet, plan.prompt);
  }
  // What CI and reviewers said about the PR's head, as untrusted data after the task.
  if (plan.iteration) body = `${body}\n${iterationPromptSection(plan.iteration.markdown)}`;
  const roots = plan.policy.skills_mode === 'agentpr' ? [...plan.readOnlyRoots, installedSkillsDir(app.env)] : plan.readOnlyRoots;
  const fullPrompt = composePrompt(safetyContract({ repoDir: plan.repoDir, readOnlyRoots: roots }), body);
  const lastMessage = lastMessagePath(plan.repoDir);
  rmSync(lastMessage, { force: true });
  const args = plan.args;
  const promptPath = join(dir, 'prompt.txt');
  writeFileSync(promptPath, fullPrompt);
  let repoBefore: RepoSnapshot | null = null;
  try {
    repoBefore = await snapshotRepo(plan.repoDir);
  } catch (err) {
    app.logger.warn({ run_id: ex.run.run_id, err: errorMessage(err) }, 'could not read the repository state before the worker');
  }

  let proc: RunProcessResult | null = null;
  if (!preflight.ok) {
    writeFileSync(eventsPath, '');
  } else {
    const started = Date.now();
    let lastSent = 0;
    let lastValue = 0;
    const send = (force: boolean) => {
      if (!ex.progress) return;
      const now = Date.now();
      if (!force && now - lastSent < PROGRESS_MIN_GAP_MS) return;
      lastSent = now;
      // Progress must grow with every notification: elapsed seconds, nudged when two land in the same tick.
      const value = Math.max(Math.round(lastValue * 1000 + 1) / 1000, Math.round((now - started) / 100) / 10);
      lastValue = value;
      const cmd = ex.active.latest_command;
      const message = `agent#${attempt.attempt_no}: ${Math.round((now - started) / 1000)} s, ${ex.active.lines} events${cmd ? `; latest command: ${cmd}` : ''}`;
      ex.progress({ progress: value, total: plan.maxAgentSeconds, message }).catch(() => undefined);
    };
    send(true);
    const timer = setInterval(() => send(true), PROGRESS_INTERVAL_MS);
    try {
      proc = await runProcess({
        bin: plan.codexBin,
        args,
        cwd: plan.repoDir,
        env: rtEnv.env,
        eventsPath,
        stderrPath,
        timeoutMs: plan.maxAgentSeconds * 1000,
        killGraceMs: plan.killGraceMs,
        stdinFile: promptPath,
        stamp: stampLine,
        signal: ex.abort.signal,
        containment: detectContainment(app.env),
        maxLineBytes: plan.policy.max_line_bytes,
        maxStreamBytes: plan.policy.max_stream_bytes,
        limits: plan.policy.worker_limits,
        onSpawn: (pid, marker) => {
          ex.active.pid = pid;
          // If this process dies (kill -9), the next start finds the worker's group by these and ends it.
          try {
            const start = procStart(pid);
            app.service.updateAttemptMetadata(attempt.attempt_id, { worker_pid: pid, worker_marker: marker, ...(start ? { worker_proc_start: start } : {}) });
          } catch (err) {
            app.logger.warn({ run_id: ex.run.run_id, attempt_no: attempt.attempt_no, err: errorMessage(err) }, 'could not record the worker pid on the attempt');
          }
        },
        onLine: (line, stored) => {
          acc.pushLine(stored);
          ex.active.lines++;
          const cmd = commandOf(line);
          if (cmd) {
            ex.active.latest_command = shortCommand(cmd);
            send(false);
          }
        },
      });
    } finally {
      clearInterval(timer);
    }
    send(true);
  }
  let lastMessageCopy: string | null = null;
  if (existsSync(lastMessage) && statSync(lastMessage).size > 0) {
    lastMessageCopy = join(dir, 'last_message.txt');
    copyFileSync(lastMessage, lastMessageCopy);
  } else {
    // codex leaves the -o file empty (or absent) after a failed or killed turn: keep the last agent_message instead.
    const fallback = acc.result().final_message;
    if (fallback) {
      lastMessageCopy = join(dir, 'last_message.txt');
      writeFileSync(lastMessageCopy, fallback);
    }
  }
  return {
    proc,
    preflight,
    acc,
    eventsPath,
    stderrPath,
    lastMessageCopy,
    taskPacketPath,
    envApplied: rtEnv.applied,
    envOverridden: [...new Set(plan.envOverrides.overrides.flatMap((o) => Object.keys(o.env)))].sort(),
    envOverrideFiles: rtEnv.overrideFiles,
    args,
    repoBefore,
    promptSha1: sha1(fullPrompt),
    promptPath,
  };
}

async function workerPreflight(app: App, repoDir: string, env: NodeJS.ProcessEnv): Promise<PreflightSummary> {
  try {
    const r = await runPreflight({ repoDir, workspaceRoot: app.config.workspaceRoot, env });
    return { ok: r.ok, checks: r.checks.map((c) => ({ name: c.name, ok: c.ok, message: c.ok ? c.message : `${c.message} (fix: ${c.fix ?? 'see preflight'})` })) };
  } catch (err) {
    return { ok: false, error: `preflight could not run: ${errorMessage(err)}` };
  }
}

// ---- finishing: analysis, files, one transaction -----------------------------------------------------

type EventPlan = { event_type: string; payload: Record<string, unknown> } | null;

/** The event that carries the verdict's state change. */
function eventForTarget(target: RunState | 'UNCHANGED', a: AttemptAnalysis, attemptNo: number): EventPlan {
  const v = a.verdict;
  const base = { attempt_no: attemptNo, grade: v.grade, reason_code: v.reason_code };
  switch (target) {
    case 'UNCHANGED':
      return null;
    case 'LOCAL_VALIDATING':
      return { event_type: 'command.local.validation.passed', payload: { ...base, by: 'run-agent-step' } };
    case 'FAILED_RETRYABLE':
    case 'NEEDS_HUMAN_REVIEW':
    case 'FAILED_TERMINAL': {
      const message = v.evidence.slice(0, 3).join('; ');
      return {
        event_type: 'worker.step.failed',
        payload: { ...base, step: 'agent', error_message: message.length > 2000 ? `${message.slice(0, 2000)}…` : message, to_state: target },
      };
    }
    case 'PAUSED':
      return { event_type: 'command.pause', payload: { ...base, by: 'run-agent-step' } };
    default:
      return null;
  }
}

function attemptStatus(facts: WorkerFacts, a: AttemptAnalysis): 'succeeded' | 'failed' | 'timed_out' {
  if (facts.proc?.timedOut) return 'timed_out';
  return a.verdict.grade === 'PASS' ? 'succeeded' : 'failed';
}

async function finishStep(ex: Execution, facts: WorkerFacts): Promise<AgentStepOutcome> {
  const { app, plan, attempt } = ex;
  const runId = ex.run.run_id;
  const proc = facts.proc;
  const timedOut = proc?.timedOut ?? false;
  // A failed write of the stream (a full disk) ends the step like a cancellation, with its reason.
  const ioReason = proc?.writeError ? ioReasonCode(proc.writeError.code) : null;
  const aborted = (proc?.aborted ?? false) || ioReason !== null;
  const exitCode = proc ? proc.exitCode : null;
  const durationMs = proc ? proc.durationMs : Date.now() - Date.parse(attempt.started_at);
  // The worker could write .git: put back what run-prepare recorded before agentpr's own git looks.
  let gitAfter: GitGuardResult | null = null;
  let gitRefused: string | null = null;
  try {
    gitAfter = guardGitDir(app.config.home, runId, plan.repoDir);
    const nested = await nestedRepoProblems(plan.repoDir);
    if (nested.length) gitRefused = `nested_git_config: ${nested.join('; ')}`;
  } catch (err) {
    gitRefused = errorMessage(err);
  }
  const gitTamper = gitRefused ? [gitRefused] : gitAfter?.dangerous_keys.length ? describeGitGuard(gitAfter) : [];
  if (gitTamper.length) app.logger.warn({ run_id: runId, attempt_no: attempt.attempt_no, git: gitTamper }, 'the worker changed git settings in the clone');
  let diffStats: DiffStats | null = null;
  try {
    // Against HEAD before the worker: what a sub-agent committed is still the change.
    if (!gitRefused) diffStats = await computeDiffStats(plan.repoDir, facts.repoBefore?.head ?? null);
  } catch (err) {
    app.logger.warn({ run_id: runId, err: errorMessage(err) }, 'diff stats unavailable');
  }
  let repoChanges: string[] = [];
  if (facts.repoBefore && proc && !gitRefused) {
    try {
      repoChanges = (await compareRepo(plan.repoDir, facts.repoBefore, await snapshotRepo(plan.repoDir))).map((c) => c.detail);
    } catch (err) {
      app.logger.warn({ run_id: runId, err: errorMessage(err) }, 'could not compare the repository state after the worker');
    }
  }
  const stderrTail = (existsSync(facts.stderrPath) ? readTail(facts.stderrPath, STDERR_TAIL_BYTES) : '') + (proc?.spawnError ? `\n${proc.spawnError}` : '');
  const paths = {
    events: facts.eventsPath,
    stderr: facts.stderrPath,
    prompt: facts.promptPath,
    last_message: facts.lastMessageCopy,
    task_packet: facts.taskPacketPath,
    runtime_report: join(ex.reportsDir, 'runtime_report.json'),
    digest: join(ex.reportsDir, 'digest.json'),
    insight: join(ex.reportsDir, 'insight.md'),
  };
  const installed = plan.policy.skills_mode === 'agentpr' ? readSkills(installedSkillsDir(app.env)).map((s) => s.name) : null;
  const analysisInput = {
    exitCode,
    stateBefore: plan.stage,
    attemptNo: attempt.attempt_no,
    runId,
    policy: plan.policy,
    owner: ex.run.owner,
    repo: ex.run.repo,
    step: 'agent',
    diffStats,
    preflight: facts.preflight,
    skills: {
      mode: plan.policy.skills_mode,
      required: plan.skillsPlan,
      available: installed,
      missing: installed ? plan.skillsPlan.filter((s) => !installed.includes(s)) : null,
    },
    attempts: app.service.listAttempts(runId),
    previousUsage: previousUsage(app, runId),
    durationMs,
    timedOut,
    stderrTail,
    repoChanges,
    gitTamper,
    artifacts: paths,
  } as const;
  let analysis = analyzeParsed(facts.acc.result(), analysisInput);
  // Timeouts and cancellations move the run by their own event, whatever the verdict says.
  const forcedTarget: RunState | null = timedOut || aborted ? 'FAILED_RETRYABLE' : null;
  if (forcedTarget) analysis = analyzeParsed(facts.acc.result(), { ...analysisInput, stateAfter: forcedTarget });
  const keepStream = analysis.keepStream;
  if (!keepStream) rmSync(facts.eventsPath, { force: true });
  const capture = proc ? captureNote(proc) : null;
  const digest = { ...analysis.digest, artifacts: { ...analysis.digest.artifacts, events: keepStream ? facts.eventsPath : null }, ...(capture ? { capture } : {}) };
  writeFileSync(paths.digest, digestToJson(digest));
  writeFileSync(paths.insight, analysis.insightMarkdown);
  const runtimeReport = {
    schema: 'agentpr.agent_runtime_report.v1',
    run_id: runId,
    attempt_no: attempt.attempt_no,
    stage: plan.stage,
    command: { bin: plan.codexBin, args: facts.args, prompt_path: facts.promptPath, prompt_sha1: facts.promptSha1, prompt_source: plan.promptSource },
    cwd: plan.repoDir,
    sandbox: plan.sandbox,
    model: plan.model ?? null,
    max_agent_seconds: plan.maxAgentSeconds,
    codex_version: plan.probe.version,
    // Override values may be secrets: names only. The template's entries are agentpr's own paths.
    env: {
      applied: Object.fromEntries(Object.entries(facts.envApplied).filter(([k]) => !facts.envOverridden.includes(k))),
      overridden: facts.envOverridden,
      override_files: facts.envOverrideFiles,
    },
    repo_changes: repoChanges,
    git_guard: {
      before: describeGitGuard(plan.gitBefore),
      after: gitRefused ? [gitRefused] : gitAfter ? describeGitGuard(gitAfter) : [],
      restored: gitAfter?.restored ?? [],
    },
    read_only_roots: plan.readOnlyRoots,
    preflight: facts.preflight,
    process: proc ?? { skipped: 'preflight failed' },
    stderr_tail: stderrTail.slice(-2000),
    verdict: analysis.verdict,
    target_state: forcedTarget ?? analysis.targetState,
    keep_event_stream: keepStream,
    paths,
  };
  writeFileSync(paths.runtime_report, `${JSON.stringify(runtimeReport, null, 2)}\n`);

  const v = analysis.verdict;
  const meta = { step: 'agent', attempt_no: attempt.attempt_no, grade: v.grade, reason_code: v.reason_code, stage: plan.stage };
  const artifacts: ArtifactInput[] = [];
  if (keepStream) artifacts.push({ type: 'agent_event_stream', uri: facts.eventsPath, metadata: { ...meta, lines: proc?.lineCount ?? 0 } });
  artifacts.push({ type: 'agent_runtime_report', uri: paths.runtime_report, metadata: meta });
  if (facts.lastMessageCopy) artifacts.push({ type: 'agent_last_message', uri: facts.lastMessageCopy, metadata: meta });
  if (facts.taskPacketPath) artifacts.push({ type: 'task_packet', uri: facts.taskPacketPath, metadata: { ...meta, schema: 'agentpr.task_packet.v1' } });
  artifacts.push({ type: 'run_digest', uri: paths.digest, metadata: { ...meta, next_action: v.next_action } });
  artifacts.push({ type: 'manager_insight', uri: paths.insight, metadata: meta });

  let eventPlan: EventPlan;
  if (timedOut) eventPlan = { event_type: 'timer.timeout', payload: { step: 'agent', attempt_no: attempt.attempt_no, max_agent_seconds: plan.maxAgentSeconds } };
  else if (aborted) {
    eventPlan = {
      event_type: 'worker.step.failed',
      payload: {
        step: 'agent',
        attempt_no: attempt.attempt_no,
        reason_code: ioReason ?? 'cancelled',
        error_message: ioReason ? (proc?.writeError?.message ?? ioReason) : ex.abort.signal.reason ? String(ex.abort.signal.reason) : 'the worker was stopped',
        to_state: 'FAILED_RETRYABLE',
      },
    };
  } else eventPlan = eventForTarget(analysis.targetState, analysis, attempt.attempt_no);

  const status = aborted ? 'failed' : attemptStatus(facts, analysis);
  const reasonCode = timedOut ? 'timeout' : aborted ? (ioReason ?? 'cancelled') : v.reason_code;
  let note: string | null = null;
  let applied: ApplyResult | null = null;
  app.service.transaction(() => {
    const current = app.service.getRun(runId);
    app.service.finishAttempt(attempt.attempt_id, {
      status,
      exit_code: exitCode,
      reason_code: reasonCode,
      stdout_log: keepStream ? facts.eventsPath : null,
      stderr_log: facts.stderrPath,
      duration_ms: durationMs,
      metadata: {
        grade: v.grade,
        verdict_reason_code: v.reason_code,
        next_action: v.next_action,
        timed_out: timedOut,
        cancelled: aborted,
        pid: proc?.pid ?? null,
        group_signals: proc?.groupSignals ?? [],
        lines: proc?.lineCount ?? 0,
        keep_event_stream: keepStream,
        containment: proc?.containment ?? null,
        ...(capture ? { capture } : {}),
      },
    });
    for (const a of artifacts) app.service.addArtifact(runId, a);
    if (!eventPlan) return;
    if (current.state !== plan.stage) {
      note = `the run moved to ${current.state} while the worker ran; ${eventPlan.event_type} not applied`;
      return;
    }
    const target = (eventPlan.payload.to_state as RunState | undefined) ?? forcedTarget ?? (analysis.targetState === 'UNCHANGED' ? undefined : analysis.targetState);
    if (target && !canTransition(current.state, target)) {
      note = `${current.state} -> ${target} is not a transition; state left unchanged`;
      return;
    }
    applied = app.service.applyEvent({
      run_id: runId,
      event_type: eventPlan.event_type,
      payload: eventPlan.payload,
      idempotency_key: `run-agent-step:${runId}:agent:${attempt.attempt_no}:${eventPlan.event_type}`,
    });
  });
  const after = app.service.getRun(runId);
  const ev = applied as ApplyResult | null;
  app.logger.info(
    { run_id: runId, attempt_no: attempt.attempt_no, grade: v.grade, reason_code: v.reason_code, timed_out: timedOut, state: after.state },
    'agent step finished',
  );
  return {
    run_id: runId,
    attempt_no: attempt.attempt_no,
    status: 'finished',
    state_before: plan.stage,
    state_after: after.state,
    grade: v.grade,
    reason_code: reasonCode,
    next_action: v.next_action,
    evidence: timedOut ? [`killed after max_agent_seconds ${plan.maxAgentSeconds}`, ...v.evidence] : v.evidence,
    exit_code: exitCode,
    timed_out: timedOut,
    duration_ms: durationMs,
    event: ev ? { event_type: ev.event_type, outcome: ev.outcome, from_state: ev.from_state, state: ev.state } : null,
    note,
    kept_event_stream: keepStream,
    artifacts: artifacts.map((a) => ({ type: a.type, uri: a.uri })),
    reports_dir: ex.reportsDir,
  };
}

/** disk_full for a full disk or quota, io_error for other failed writes; null for anything else. */
function ioReasonCode(code: string | undefined): 'disk_full' | 'io_error' | null {
  if (code === 'ENOSPC' || code === 'EDQUOT') return 'disk_full';
  if (code === 'EIO' || code === 'EROFS' || code === 'EFBIG') return 'io_error';
  return null;
}

/** What the capture left out, for the digest and the attempt; null when it kept everything. */
function captureNote(proc: RunProcessResult): Record<string, unknown> | null {
  if (!proc.oversizedLines && !proc.droppedLines && !proc.writeError) return null;
  return {
    oversized_lines: proc.oversizedLines,
    stored_bytes: proc.storedBytes,
    dropped_lines: proc.droppedLines,
    ...(proc.droppedLines && !proc.writeError ? { note: `the stored stream reached max_stream_bytes; ${proc.droppedLines} later line(s) were counted but not stored` } : {}),
    ...(proc.writeError ? { write_error: proc.writeError } : {}),
  };
}

/** Last resort when the step itself broke (disk full, a bug): close the attempt so the run never stays stuck. */
function recordCrash(ex: Execution, err: unknown): AgentStepOutcome {
  const { app, attempt } = ex;
  const runId = ex.run.run_id;
  const message = `agent step failed inside agentpr: ${errorMessage(err)}`;
  const crashReason = ioReasonCode((err as NodeJS.ErrnoException | undefined)?.code) ?? 'orchestrator_error';
  app.logger.error({ run_id: runId, attempt_no: attempt.attempt_no, err }, 'agent step crashed');
  let ev: ApplyResult | null = null;
  try {
    app.service.transaction(() => {
      if (app.service.attemptById(attempt.attempt_id).status === 'running') {
        app.service.finishAttempt(attempt.attempt_id, {
          status: 'failed',
          reason_code: crashReason,
          duration_ms: Date.now() - Date.parse(attempt.started_at),
          metadata: { error: message.slice(0, 2000) },
        });
      }
      const run = app.service.getRun(runId);
      if (run.state === ex.plan.stage && canTransition(run.state, 'FAILED_RETRYABLE')) {
        ev = app.service.applyEvent({
          run_id: runId,
          event_type: 'worker.step.failed',
          payload: { step: 'agent', attempt_no: attempt.attempt_no, reason_code: crashReason, error_message: message.slice(0, 2000), to_state: 'FAILED_RETRYABLE' },
          idempotency_key: `run-agent-step:${runId}:agent:${attempt.attempt_no}:crash`,
        });
      }
    });
  } catch (inner) {
    app.logger.error({ run_id: runId, err: inner }, 'could not record the agent step failure');
  }
  const after = app.service.findRun(runId);
  const e = ev as ApplyResult | null;
  return {
    run_id: runId,
    attempt_no: attempt.attempt_no,
    status: 'finished',
    state_before: ex.plan.stage,
    state_after: after?.state ?? ex.plan.stage,
    grade: null,
    reason_code: crashReason,
    next_action: null,
    evidence: [message],
    exit_code: null,
    timed_out: false,
    duration_ms: Date.now() - Date.parse(attempt.started_at),
    event: e ? { event_type: e.event_type, outcome: e.outcome, from_state: e.from_state, state: e.state } : null,
    note: null,
    kept_event_stream: null,
    artifacts: [],
    reports_dir: ex.reportsDir,
  };
}

// ---- entry point -----------------------------------------------------------------------------------

export interface StartOptions {
  /** Report progress (MCP progress token); only used while the caller waits. */
  progress?: (u: ProgressUpdate) => Promise<void>;
  /**
   * The caller's request signal (wait: true). When it aborts (a client timeout or cancel), the
   * caller only stops waiting: the step continues in the server, like wait: false. MCP clients
   * time out long calls, and a 15-minute worker must not die with them.
   */
  signal?: AbortSignal;
  /**
   * When the caller's signal aborts while it still waits, stop the worker (an MCP client that
   * cancels its call) instead of letting the step go on.
   */
  stopOnCallerAbort?: boolean;
}

export interface StartedStep {
  run_id: string;
  attempt_no: number;
  state: RunState;
  reports_dir: string;
  /** Settles when the step is recorded; never rejects. */
  done: Promise<AgentStepOutcome>;
  /** The caller stops waiting: no more progress, and its signal no longer stops the worker. */
  detach: () => void;
}

/**
 * Checks (refusing without changes), then starts the attempt and the worker. The returned `done`
 * resolves when verdict, artifacts, attempt and event are stored; failures inside are recorded on
 * the attempt and the run, never thrown.
 */
export async function startAgentStep(app: App, req: AgentStepRequest, opts: StartOptions = {}): Promise<StartedStep> {
  const plan = await planStep(app, req);
  const steps = activeSteps(app);
  // Synchronous from here to the map entry: no other call of this process can slip in between.
  if (steps.has(plan.run.run_id)) throw new RefusedError(`an agent step is already running for ${plan.run.run_id}; wait for it or look at inspect-run.`);
  const { attempt, run } = startAttempt(app, plan);
  const abort = new AbortController();
  let resolveDone!: () => void;
  const doneSignal = new Promise<void>((r) => (resolveDone = r));
  const active: ActiveAgentStep = {
    run_id: run.run_id,
    attempt_no: attempt.attempt_no,
    attempt_id: attempt.attempt_id,
    started_at: attempt.started_at,
    pid: null,
    latest_command: null,
    lines: 0,
    abort: (reason) => abort.abort(reason),
    done: doneSignal,
  };
  steps.set(run.run_id, active);
  const ex: Execution = {
    app,
    plan,
    run,
    attempt,
    reportsDir: join(app.config.reportsDir, run.run_id, 'agent', String(attempt.attempt_no)),
    progress: opts.progress,
    active,
    abort,
  };
  const onCallerAbort = () => {
    ex.progress = undefined;
    if (opts.stopOnCallerAbort) {
      app.logger.info({ run_id: run.run_id, attempt_no: attempt.attempt_no }, 'caller cancelled; stopping the agent step');
      abort.abort('the caller cancelled the call');
      return;
    }
    app.logger.info({ run_id: run.run_id, attempt_no: attempt.attempt_no }, 'caller stopped waiting; the agent step continues in the server');
  };
  opts.signal?.addEventListener('abort', onCallerAbort, { once: true });
  // Pausing (or otherwise moving) the run while its worker runs stops the worker.
  const onEvent = (r: ApplyResult) => {
    if (r.run_id !== run.run_id || r.duplicate || r.outcome === 'ignored' || r.state === plan.stage) return;
    abort.abort(`the run moved to ${r.state} (${r.event_type}) while the worker ran`);
  };
  app.service.on('event', onEvent);
  const done = (async (): Promise<AgentStepOutcome> => {
    try {
      const facts = await runWorker(ex);
      app.service.off('event', onEvent);
      return await finishStep(ex, facts);
    } catch (err) {
      return recordCrash(ex, err);
    } finally {
      opts.signal?.removeEventListener('abort', onCallerAbort);
      app.service.off('event', onEvent);
      steps.delete(run.run_id);
      resolveDone();
    }
  })();
  const detach = () => {
    ex.progress = undefined;
    opts.signal?.removeEventListener('abort', onCallerAbort);
  };
  return { run_id: run.run_id, attempt_no: attempt.attempt_no, state: run.state, reports_dir: ex.reportsDir, done, detach };
}
