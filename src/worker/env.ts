import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { ConfigurationError } from '../core/errors.js';
import { SECRET_ENV_VARS, SECRET_LIST_ENV_VARS } from '../logger.js';

/**
 * Worker isolation: caches, data and temp files of everything the agent runs land under
 * `<repo>/.agentpr_runtime/` instead of the operator's home. Decisions:
 * - HOME and CODEX_HOME stay the operator's: codex reads its auth and config from there.
 * - XDG_CONFIG_HOME stays too: git (identity), gh (token) and codex-adjacent tools read config
 *   from it, and a run must not lose them. Only cache/data/state move.
 * - Build outputs with a global default (GOCACHE, CARGO_TARGET_DIR) move; the module/registry
 *   download caches that are pure caches (GOMODCACHE, npm, pip, uv, ...) move as well.
 *   CARGO_HOME does not: it also holds installed binaries and credentials.
 * The runtime directory is added to `.git/info/exclude`, so it never shows as a change or gets
 * committed by finish.sh. Overrides come from the operator only (see loadEnvOverrides).
 */
export const RUNTIME_DIR_NAME = '.agentpr_runtime';

/** Template: variable -> path relative to the runtime dir. */
export const RUNTIME_ENV_TEMPLATE: Readonly<Record<string, string>> = {
  XDG_CACHE_HOME: 'cache',
  XDG_DATA_HOME: 'data',
  XDG_STATE_HOME: 'state',
  TMPDIR: 'tmp',
  TMP: 'tmp',
  TEMP: 'tmp',
  npm_config_cache: 'cache/npm',
  PNPM_STORE_DIR: 'cache/pnpm-store',
  YARN_CACHE_FOLDER: 'cache/yarn',
  BUN_INSTALL_CACHE_DIR: 'cache/bun',
  PIP_CACHE_DIR: 'cache/pip',
  UV_CACHE_DIR: 'cache/uv',
  POETRY_CACHE_DIR: 'cache/poetry',
  PRE_COMMIT_HOME: 'cache/pre-commit',
  RUFF_CACHE_DIR: 'cache/ruff',
  MYPY_CACHE_DIR: 'cache/mypy',
  PYTHONPYCACHEPREFIX: 'cache/pycache',
  GOCACHE: 'cache/go-build',
  GOMODCACHE: 'cache/go-mod',
  CARGO_TARGET_DIR: 'cargo-target',
};

export const RuntimeEnvOverridesSchema = z.strictObject({
  mode: z.enum(['extend', 'replace']).default('extend'),
  /** Values may use {repo} and {runtime}; null removes a variable. */
  env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'environment variable names are letters, digits and _'), z.string().max(8192).nullable()).default({}),
});
export type RuntimeEnvOverrides = z.infer<typeof RuntimeEnvOverridesSchema>;

export const RUNTIME_ENV_OVERRIDES_FILE = 'runtime_env_overrides.json';

/**
 * Credentials removed from the worker's environment: agentpr's own (MCP bearer token, webhook
 * secrets, GitHub token, Telegram bot token, manager/LLM keys) and the GitHub tokens. The agent runs
 * arbitrary commands whose output is kept under reports/ (an `env` would print them), and with a
 * GitHub or MCP token it could open or approve a pull request itself, around the double
 * confirmation. OPENAI_API_KEY stays: it is codex's own login. The operator's override file may name
 * one of these to set it again on purpose.
 */
export const WORKER_WITHHELD_ENV: readonly string[] = [...SECRET_ENV_VARS, ...SECRET_LIST_ENV_VARS].filter((k) => k !== 'OPENAI_API_KEY');

export function runtimeDir(repoDir: string): string {
  return join(resolve(repoDir), RUNTIME_DIR_NAME);
}

/** Reads and validates an overrides file; a bad file is a ConfigurationError naming it. */
export function readEnvOverrides(file: string): RuntimeEnvOverrides {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new ConfigurationError(`cannot read runtime env overrides ${file}: ${(err as Error).message}; fix the JSON or remove the file`);
  }
  const parsed = RuntimeEnvOverridesSchema.safeParse(raw);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join('.') || '(top level)'}: ${i.message}`).join('; ');
    throw new ConfigurationError(
      `invalid runtime env overrides ${file}: ${issues}; expected {"mode": "extend"|"replace", "env": {"NAME": "value or null"}}`,
    );
  }
  return parsed.data;
}

/**
 * Names that change how programs start, what they load or where they connect. An override file may
 * set one only when the operator's policy lists it in security.env_override_allowlist: a value
 * like NODE_OPTIONS=--require ... runs code in the codex launcher, OPENAI_BASE_URL sends the API key
 * elsewhere.
 */
const LAUNCH_ENV_EXACT = new Set([
  'PATH', 'HOME', 'SHELL', 'ENV', 'BASH_ENV', 'ZDOTDIR', 'PROMPT_COMMAND', 'IFS', 'CDPATH', 'GCONV_PATH', 'HOSTALIASES', 'LOCALDOMAIN', 'RESOLV_HOST_CONF',
  'CODEX_HOME', 'XDG_CONFIG_HOME', 'XDG_RUNTIME_DIR',
  'NODE_OPTIONS', 'NODE_PATH', 'NODE_EXTRA_CA_CERTS', 'NODE_TLS_REJECT_UNAUTHORIZED',
  'PYTHONSTARTUP', 'PYTHONPATH', 'PYTHONHOME', 'PYTHONINSPECT', 'PYTHONUSERBASE',
  'PERL5OPT', 'PERL5LIB', 'PERLLIB', 'RUBYOPT', 'RUBYLIB', 'JAVA_TOOL_OPTIONS', '_JAVA_OPTIONS', 'JDK_JAVA_OPTIONS',
  'SSL_CERT_FILE', 'SSL_CERT_DIR', 'REQUESTS_CA_BUNDLE', 'CURL_CA_BUNDLE', 'SSH_AUTH_SOCK', 'SSH_ASKPASS', 'EDITOR', 'VISUAL', 'PAGER',
]);
const LAUNCH_ENV_PATTERNS: readonly RegExp[] = [/^LD_/, /^DYLD_/, /^GIT_/, /^OPENAI_/, /^CODEX_/, /_BASE_URL$/, /_URL$/, /_PROXY$/i, /^NPM_CONFIG_/i, /^AGENTPR_/];

/** True for a name an override file may set only when the policy allowlists it. */
export function isLaunchEnvName(name: string): boolean {
  return LAUNCH_ENV_EXACT.has(name) || LAUNCH_ENV_PATTERNS.some((re) => re.test(name));
}

/**
 * The operator's override file: AGENTPR_RUNTIME_ENV_OVERRIDES, else
 * <agentpr home>/runtime_env_overrides.json. A file of that name in the clone is never read: the
 * upstream and the worker both write there.
 */
export function overrideFiles(home: string, env: NodeJS.ProcessEnv): string[] {
  const global = env.AGENTPR_RUNTIME_ENV_OVERRIDES ? resolve(env.AGENTPR_RUNTIME_ENV_OVERRIDES) : join(home, RUNTIME_ENV_OVERRIDES_FILE);
  if (env.AGENTPR_RUNTIME_ENV_OVERRIDES && !existsSync(global)) {
    throw new ConfigurationError(`AGENTPR_RUNTIME_ENV_OVERRIDES points at ${global}, which does not exist; fix the path or unset it`);
  }
  return existsSync(global) ? [global] : [];
}

/** A runtime_env_overrides.json in the clone, which agentpr ignores (preflight warns about it). */
export function ignoredRepoOverrides(repoDir: string): string | undefined {
  const local = join(resolve(repoDir), RUNTIME_ENV_OVERRIDES_FILE);
  return existsSync(local) ? local : undefined;
}

export interface LoadedEnvOverrides {
  files: string[];
  overrides: RuntimeEnvOverrides[];
  /** The clone's own overrides file, present and ignored. */
  ignored?: string;
}

/**
 * Finds and validates the operator's override file (a bad one is a ConfigurationError naming it).
 * A name that changes how programs start or connect is refused unless `allow` lists it.
 */
export function loadEnvOverrides(repoDir: string, home: string, env: NodeJS.ProcessEnv, allow: readonly string[] = []): LoadedEnvOverrides {
  const files = overrideFiles(home, env);
  const overrides = files.map(readEnvOverrides);
  files.forEach((file, i) => {
    const refused = Object.entries(overrides[i]!.env)
      .filter(([name, v]) => v !== null && isLaunchEnvName(name) && !allow.includes(name))
      .map(([name]) => name);
    if (refused.length) {
      throw new ConfigurationError(
        `runtime env overrides ${file} set ${refused.join(', ')}, which change how programs start or where they connect; remove them, or list them in the policy's security.env_override_allowlist if you mean it`,
      );
    }
  });
  return { files, overrides, ignored: ignoredRepoOverrides(repoDir) };
}

export interface RuntimeEnv {
  /** The full environment for the worker process. */
  env: Record<string, string>;
  /** Only the variables agentpr set or removed (for the runtime report). */
  applied: Record<string, string | null>;
  overrideFiles: string[];
  runtimeDir: string;
}

/**
 * The worker's environment: the parent environment, then the template (unless an override says
 * replace), then each override's variables in order. Creates the directories it names inside the
 * runtime dir.
 */
export function buildRuntimeEnv(repoDir: string, opts: { baseEnv: NodeJS.ProcessEnv; overrides?: LoadedEnvOverrides }): RuntimeEnv {
  const repo = resolve(repoDir);
  const rt = runtimeDir(repo);
  const { files, overrides } = opts.overrides ?? { files: [], overrides: [] };
  let applied: Record<string, string | null> = {};
  if (!overrides.some((o) => o.mode === 'replace')) {
    for (const [k, rel] of Object.entries(RUNTIME_ENV_TEMPLATE)) applied[k] = join(rt, rel);
  }
  for (const o of overrides) {
    if (o.mode === 'replace') applied = {};
    for (const [k, v] of Object.entries(o.env)) applied[k] = v === null ? null : v.replaceAll('{runtime}', rt).replaceAll('{repo}', repo);
  }
  for (const k of WORKER_WITHHELD_ENV) {
    if (opts.baseEnv[k] !== undefined && !overrides.some((o) => Object.hasOwn(o.env, k))) applied[k] = null;
  }
  applied.AGENTPR_RUNTIME_DIR = rt;
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(opts.baseEnv)) if (v !== undefined) env[k] = v;
  for (const [k, v] of Object.entries(applied)) {
    if (v === null) delete env[k];
    else env[k] = v;
  }
  mkdirSync(rt, { recursive: true });
  for (const v of Object.values(applied)) {
    if (v && (v === rt || v.startsWith(`${rt}/`))) mkdirSync(v, { recursive: true });
  }
  return { env, applied, overrideFiles: files, runtimeDir: rt };
}

/** Keeps `.agentpr_runtime/` out of `git status` and out of commits, without touching tracked files. */
export function excludeRuntimeDir(repoDir: string): void {
  const gitDir = join(resolve(repoDir), '.git');
  if (!existsSync(gitDir)) return;
  const infoDir = join(gitDir, 'info');
  const exclude = join(infoDir, 'exclude');
  const lines = [`/${RUNTIME_DIR_NAME}/`];
  try {
    mkdirSync(infoDir, { recursive: true });
    const current = existsSync(exclude) ? readFileSync(exclude, 'utf8') : '';
    const have = new Set(current.split('\n').map((l) => l.trim()));
    const missing = lines.filter((l) => !have.has(l));
    if (missing.length) appendFileSync(exclude, `${current && !current.endsWith('\n') ? '\n' : ''}# agentpr worker runtime\n${missing.join('\n')}\n`);
  } catch {
    // .git may be a file (worktree) or read-only; preflight reports that, the exclude is a nicety.
  }
}
