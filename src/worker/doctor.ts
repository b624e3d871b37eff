import { detectContainment } from './contain.js';
import { accessSync, constants, existsSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { loadExeca } from '../exec.js';
import type { App, PreCallHook } from '../app.js';
import { canonicalJson } from '../core/events.js';
import { errorMessage } from '../core/errors.js';
import { loadPolicyWithSource } from '../policy-file.js';
import { RefusedError } from '../registry.js';
import { resolveCodexBin } from './runner.js';
import { agentPolicyFor } from '../policy.js';
import { CODEX_VERSIONS_RUN, buildAgentArgs, checkAccepted, checkExtraArgs, probeAgent, type AgentProbe } from './agents/codex.js';

/**
 * The startup doctor: are the prerequisites of a mutating call in
 * place? Each check says what it found and, when it fails, how to fix it. `doctorGate` runs the
 * required subset before every write/admin tool.
 */
export const DOCTOR_CHECKS = ['git', 'codex', 'containment', 'database', 'policy', 'workspace_root', 'github_token', 'telegram_token', 'manager_llm_key', 'webhook_secret'] as const;
export type DoctorCheckName = (typeof DOCTOR_CHECKS)[number];

/** Optional features whose credentials the doctor checks when the caller says they are used. */
export const DOCTOR_FEATURES = ['github_sync', 'telegram', 'manager_llm', 'webhook'] as const;
export type DoctorFeature = (typeof DOCTOR_FEATURES)[number];

const FEATURE_CHECK: Record<DoctorFeature, DoctorCheckName> = {
  github_sync: 'github_token',
  telegram: 'telegram_token',
  manager_llm: 'manager_llm_key',
  webhook: 'webhook_secret',
};

export interface DoctorCheck {
  name: DoctorCheckName;
  ok: boolean;
  detail: string;
  /** What to do when it fails; null when ok. */
  fix: string | null;
}

export interface DoctorReport {
  ok: boolean;
  checks: DoctorCheck[];
  failed: DoctorCheckName[];
}

const VERSION_TIMEOUT_MS = 10_000;

function firstLine(text: unknown): string {
  return String(text ?? '').split('\n').find((l) => l.trim())?.trim() ?? '';
}

function pass(name: DoctorCheckName, detail: string): DoctorCheck {
  return { name, ok: true, detail, fix: null };
}

function fail(name: DoctorCheckName, detail: string, fix: string): DoctorCheck {
  return { name, ok: false, detail, fix };
}

/** How workers are contained (pidns or session), and whether they die with agentpr. */
function checkContainment(env: NodeJS.ProcessEnv): DoctorCheck {
  try {
    const c = detectContainment(env);
    return pass('containment', `${c.mode}: ${c.detail}; workers ${c.diesWithParent ? 'die with agentpr (setpriv --pdeathsig)' : 'may outlive agentpr until the next start (no setpriv)'}`);
  } catch (err) {
    return fail('containment', errorMessage(err), 'set AGENTPR_WORKER_CONTAINMENT=auto (or session), or allow unprivileged user namespaces');
  }
}

async function checkGit(env: NodeJS.ProcessEnv): Promise<DoctorCheck> {
  try {
    const r = await (await loadExeca()).execa('git', ['--version'], { env, extendEnv: false, timeout: VERSION_TIMEOUT_MS, reject: false, stdin: 'ignore' });
    if (r.exitCode === 0) return pass('git', firstLine(r.stdout));
    return fail('git', `git --version exited ${r.exitCode ?? r.signal}: ${firstLine(r.stderr) || firstLine(r.message)}`, 'install git and make sure it is on PATH');
  } catch (err) {
    return fail('git', `git cannot be run: ${errorMessage(err)}`, 'install git and make sure it is on PATH');
  }
}

async function checkCodex(app: App): Promise<DoctorCheck> {
  const env = app.env;
  let bin: string;
  try {
    bin = resolveCodexBin(env);
  } catch (err) {
    return fail(
      'codex',
      errorMessage(err),
      env.AGENTPR_CODEX_BIN?.trim()
        ? `point AGENTPR_CODEX_BIN at an executable codex binary, or unset it to use codex from PATH`
        : 'install the Codex CLI (npm i -g @openai/codex) or set AGENTPR_CODEX_BIN to its path',
    );
  }
  const upgrade = `install a Codex CLI agentpr supports (npm i -g @openai/codex@${CODEX_VERSIONS_RUN[CODEX_VERSIONS_RUN.length - 1]}) or point AGENTPR_CODEX_BIN at one`;
  let probe: AgentProbe;
  try {
    probe = await probeAgent(bin, env);
  } catch (err) {
    return fail('codex', errorMessage(err), `check that ${bin} is the Codex CLI and runs (try '${bin} --version' in a shell), or set AGENTPR_CODEX_BIN`);
  }
  const version = probe.version ? `codex ${probe.version}` : probe.versionLine || 'codex (unknown version)';
  // The command line a run-agent-step with the default policy would run, parsed by codex itself.
  const policy = agentPolicyFor(app.policy);
  let args: string[];
  try {
    checkExtraArgs(policy.codex_extra_args, 'policy run_agent_step.codex_extra_args');
    args = buildAgentArgs(probe, { sandbox: policy.codex_sandbox, model: policy.codex_model, lastMessagePath: '/tmp/agentpr-doctor-last-message.txt', extraArgs: policy.codex_extra_args });
  } catch (err) {
    return fail('codex', `${bin}: ${version}: ${errorMessage(err)}`, upgrade);
  }
  const accepted = await checkAccepted(bin, args, env);
  if (!accepted.ok) {
    return fail('codex', `${bin}: ${version} refuses the worker command line 'codex ${args.join(' ')}' (${accepted.detail})`, `${upgrade}, or fix run_agent_step.codex_extra_args in the policy`);
  }
  const tested = probe.version && (CODEX_VERSIONS_RUN as readonly string[]).includes(probe.version) ? '' : ` (agentpr is tested with ${CODEX_VERSIONS_RUN.join(', ')})`;
  return pass('codex', `${bin}: ${version}; accepts 'codex ${args.join(' ')}'${tested}`);
}

function writable(path: string): boolean {
  try {
    accessSync(path, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

function checkDatabase(app: App): DoctorCheck {
  const path = app.config.dbPath;
  const fix = `make ${path} and its directory writable by this user, or point AGENTPR_DB / --db at a writable location`;
  if (!app.db.open) return fail('database', `database ${path} is closed`, 'restart agentpr');
  if (app.db.readonly) return fail('database', `database ${path} is open read-only`, fix);
  // WAL mode writes <db>-wal and <db>-shm next to the file, so the directory must be writable too.
  if (existsSync(path) && !writable(path)) return fail('database', `database file ${path} is not writable`, fix);
  if (!writable(dirname(path))) return fail('database', `directory ${dirname(path)} of the database is not writable`, fix);
  try {
    app.db.prepare('SELECT COUNT(*) FROM schema_migrations').get();
  } catch (err) {
    return fail('database', `database ${path} cannot be read: ${errorMessage(err)}`, `check the file; move it away to start a fresh database`);
  }
  return pass('database', `${path} (writable)`);
}

function checkPolicy(app: App): DoctorCheck {
  try {
    const { policy, source } = loadPolicyWithSource(app.config.policyFile);
    const changed = canonicalJson(policy) !== canonicalJson(app.policy);
    return pass('policy', `${source ?? 'built-in defaults'} is valid${changed ? ' (the file changed since startup; restart agentpr to apply it)' : ''}`);
  } catch (err) {
    return fail('policy', errorMessage(err), 'fix the named key in the policy file (see policies/manager_policy.json for the defaults), or unset AGENTPR_POLICY_FILE / --policy-file');
  }
}

function checkWorkspaceRoot(app: App): DoctorCheck {
  const root = app.config.workspaceRoot;
  const fix = `create ${root} and make it writable, or set AGENTPR_WORKSPACE_ROOT to a writable directory`;
  try {
    if (!statSync(root).isDirectory()) return fail('workspace_root', `${root} is not a directory`, fix);
  } catch {
    return fail('workspace_root', `workspace root ${root} does not exist`, fix);
  }
  if (!writable(root)) return fail('workspace_root', `workspace root ${root} is not writable`, fix);
  return pass('workspace_root', `${root} (writable)`);
}

function checkEnv(name: DoctorCheckName, env: NodeJS.ProcessEnv, vars: string[], what: string): DoctorCheck {
  const found = vars.find((v) => env[v]?.trim());
  if (found) return pass(name, `${what} from ${found}`);
  return fail(name, `no ${what}: none of ${vars.join(', ')} is set`, `set ${vars[0]} (or leave the feature off)`);
}

export async function runCheck(app: App, name: DoctorCheckName): Promise<DoctorCheck> {
  const env = app.env;
  switch (name) {
    case 'git':
      return checkGit(env);
    case 'codex':
      return checkCodex(app);
    case 'containment':
      return checkContainment(env);
    case 'database':
      return checkDatabase(app);
    case 'policy':
      return checkPolicy(app);
    case 'workspace_root':
      return checkWorkspaceRoot(app);
    case 'github_token':
      return checkEnv(name, env, ['AGENTPR_GITHUB_TOKEN', 'GITHUB_TOKEN', 'GH_TOKEN'], 'GitHub token');
    case 'telegram_token':
      return checkEnv(name, env, ['AGENTPR_TELEGRAM_BOT_TOKEN'], 'Telegram bot token');
    case 'manager_llm_key':
      return checkEnv(name, env, ['AGENTPR_MANAGER_API_KEY', 'OPENAI_API_KEY'], 'manager LLM API key');
    case 'webhook_secret':
      return checkEnv(name, env, ['AGENTPR_GITHUB_WEBHOOK_SECRET'], 'GitHub webhook secret');
  }
}

export interface DoctorOptions {
  /** Which checks; default git, database, policy, workspace_root, plus codex unless worker=false. */
  checks?: readonly DoctorCheckName[];
  worker?: boolean;
  features?: readonly DoctorFeature[];
  /** Reuse passing results younger than the cache TTL (the gate does; the doctor tool does not). */
  useCache?: boolean;
}

/** Passing results are kept this long; failures are never cached, so a fix shows at once. */
export const DOCTOR_CACHE_MS = 30_000;
const cache = new WeakMap<App, Map<DoctorCheckName, { at: number; check: DoctorCheck }>>();

export function clearDoctorCache(app: App): void {
  cache.delete(app);
}

export function checksFor(opts: Pick<DoctorOptions, 'checks' | 'worker' | 'features'>): DoctorCheckName[] {
  const names = new Set<DoctorCheckName>(opts.checks ?? ['git', 'database', 'policy', 'workspace_root', ...(opts.worker === false ? [] : (['codex', 'containment'] as const))]);
  for (const f of opts.features ?? []) names.add(FEATURE_CHECK[f]);
  return DOCTOR_CHECKS.filter((n) => names.has(n));
}

export async function runDoctor(app: App, opts: DoctorOptions = {}): Promise<DoctorReport> {
  const names = checksFor(opts);
  let perApp = cache.get(app);
  if (!perApp) cache.set(app, (perApp = new Map()));
  const now = Date.now();
  const checks = await Promise.all(
    names.map(async (name) => {
      const hit = opts.useCache ? perApp.get(name) : undefined;
      if (hit && now - hit.at < DOCTOR_CACHE_MS) return hit.check;
      const check = await runCheck(app, name);
      if (check.ok) perApp.set(name, { at: Date.now(), check });
      else perApp.delete(name);
      return check;
    }),
  );
  const failed = checks.filter((c) => !c.ok).map((c) => c.name);
  return { ok: failed.length === 0, checks, failed };
}

/** Checks every write/admin tool needs; tools that start the codex worker also need codex. */
export const GATE_BASE_CHECKS: readonly DoctorCheckName[] = ['git', 'database', 'policy'];
export const GATE_EXTRA_CHECKS: Readonly<Record<string, readonly DoctorCheckName[]>> = {
  'run-agent-step': ['codex', 'containment', 'workspace_root'],
  'manager-tick': ['codex', 'workspace_root'],
  'run-prepare': ['workspace_root'],
  'run-finish': ['workspace_root'],
  'run-preflight': ['workspace_root'],
};

export function gateChecksFor(toolName: string, args: Record<string, unknown> = {}): DoctorCheckName[] {
  // A dry run decides and reports but starts nothing, so it does not need the codex binary.
  const extra = (GATE_EXTRA_CHECKS[toolName] ?? []).filter((c) => !(c === 'codex' && args.dry_run === true));
  return checksFor({ checks: [...GATE_BASE_CHECKS, ...extra] });
}

export function formatRefusal(toolName: string, report: DoctorReport): string {
  const lines = report.checks.filter((c) => !c.ok).map((c) => `- ${c.name}: ${c.detail}\n  fix: ${c.fix}`);
  return `${toolName} refused by the startup doctor; nothing was changed. Failed checks:\n${lines.join('\n')}\nFix these (run the doctor tool to re-check), or pass skip_doctor=true / --skip-doctor to bypass.`;
}

/** The pre-call hook: refuses a write/admin call while a required check fails. */
export function doctorGate(app: App): PreCallHook {
  return async (tool, args, ctx) => {
    if (ctx.skipDoctor) return;
    const report = await runDoctor(app, { checks: gateChecksFor(tool.name, args), useCache: true });
    if (!report.ok) {
      app.logger.warn({ tool: tool.name, failed: report.failed }, 'startup doctor refused a call');
      throw new RefusedError(formatRefusal(tool.name, report));
    }
  };
}
