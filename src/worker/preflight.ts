import { accessSync, constants, existsSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, delimiter, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { loadExeca } from '../exec.js';
import { errorMessage } from '../core/errors.js';
import { ignoredRepoOverrides } from './env.js';
import { safeGitEnv } from './git-safety.js';

/**
 * Repository preflight: can a worker run in this clone?
 *
 *   workspace_inside_root  realpath of the workspace is strictly inside realpath(workspace root)
 *   repo_present           the workspace is the top of a git work tree
 *   git_writable           a file can be created in the .git directory and no index.lock is left
 *   clean_worktree         `git status` shows nothing outside .agentpr_runtime/ (untracked files count:
 *                          finish.sh would commit them)
 *   toolchain              the tools the repo's files call for are on PATH (see TOOLCHAIN_RULES)
 *   deps_installable       heuristic: dependency installs write inside the clone (node_modules, .venv,
 *                          target/) and the isolated caches under .agentpr_runtime/, so both must be
 *                          writable; a package-manager offline switch without a lockfile is a failure.
 *                          The registry itself is not contacted (that would make preflight slow and
 *                          flaky); network trouble shows up as a transient worker failure instead.
 */
export const PREFLIGHT_CHECKS = ['workspace_inside_root', 'repo_present', 'git_writable', 'clean_worktree', 'toolchain', 'deps_installable'] as const;
export type PreflightCheckName = (typeof PREFLIGHT_CHECKS)[number];

export interface PreflightCheck {
  name: PreflightCheckName;
  ok: boolean;
  /** What was found (kept as `message`: the verdict's preflight summary reads it). */
  message: string;
  fix: string | null;
}

export interface PreflightReport {
  schema: 'agentpr.preflight_report.v1';
  ok: boolean;
  repo_dir: string;
  workspace_root: string;
  checked_at: string;
  /** Tools the repository's files call for, e.g. ["node", "npm", "make"]. */
  toolchain: string[];
  checks: PreflightCheck[];
  failed: PreflightCheckName[];
  /** Findings that do not fail preflight but the operator should know (a repository overrides file agentpr ignores). */
  warnings: string[];
  duration_ms: number;
}

export const RUNTIME_DIR = '.agentpr_runtime';

const ok = (name: PreflightCheckName, message: string): PreflightCheck => ({ name, ok: true, message, fix: null });
const bad = (name: PreflightCheckName, message: string, fix: string): PreflightCheck => ({ name, ok: false, message, fix });

/** realpath of the path, or of its nearest existing ancestor with the rest appended (for a clone not made yet). */
export function realpathLoose(p: string): string {
  let cur = resolve(p);
  const rest: string[] = [];
  for (;;) {
    try {
      return join(realpathSync(cur), ...rest.reverse());
    } catch {
      const parent = dirname(cur);
      if (parent === cur) return resolve(p);
      rest.push(basename(cur));
      cur = parent;
    }
  }
}

/** The workspace must be strictly inside the configured root, symlinks resolved. */
export function checkWorkspaceInsideRoot(repoDir: string, workspaceRoot: string): PreflightCheck {
  const real = realpathLoose(repoDir);
  const root = realpathLoose(workspaceRoot);
  const rel = relative(root, real);
  if (rel && !rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel)) {
    return ok('workspace_inside_root', `${real} is inside ${root}`);
  }
  return bad(
    'workspace_inside_root',
    `workspace ${repoDir}${real !== resolve(repoDir) ? ` (really ${real})` : ''} is ${rel === '' ? 'the workspace root itself' : 'outside the workspace root'} ${root}`,
    `create the run with a workspace_dir under ${root} (the default <root>/<owner>/<repo>/<run_id>), or set AGENTPR_WORKSPACE_ROOT to a directory that contains it`,
  );
}

async function git(repoDir: string, args: string[], env?: NodeJS.ProcessEnv) {
  return (await loadExeca()).execa('git', args, { cwd: repoDir, env: { ...safeGitEnv(env ?? process.env), LC_ALL: 'C' }, extendEnv: false, reject: false, stdin: 'ignore', timeout: 30_000 });
}

async function checkRepoPresent(repoDir: string, env?: NodeJS.ProcessEnv): Promise<PreflightCheck> {
  if (!existsSync(repoDir)) {
    return bad('repo_present', `workspace ${repoDir} does not exist`, 'run run-prepare first (it clones the repository there)');
  }
  const r = await git(repoDir, ['rev-parse', '--show-toplevel'], env);
  if (r.exitCode !== 0) return bad('repo_present', `${repoDir} is not a git clone: ${String(r.stderr).trim()}`, 'run run-prepare to clone the repository there, or move the directory away');
  const top = realpathLoose(String(r.stdout).trim());
  if (top !== realpathLoose(repoDir)) {
    return bad('repo_present', `${repoDir} is inside the git repository ${top}, not a clone of its own`, 'use a workspace that is the top of its own clone');
  }
  return ok('repo_present', `git clone at ${top}`);
}

async function checkGitWritable(repoDir: string, env?: NodeJS.ProcessEnv): Promise<PreflightCheck> {
  const r = await git(repoDir, ['rev-parse', '--absolute-git-dir'], env);
  if (r.exitCode !== 0) return bad('git_writable', `cannot find the .git directory: ${String(r.stderr).trim()}`, 'run run-prepare to make a fresh clone');
  const gitDir = String(r.stdout).trim();
  const lock = join(gitDir, 'index.lock');
  if (existsSync(lock)) {
    return bad('git_writable', `${lock} exists: another git process is running or one crashed`, `make sure no git command runs in ${repoDir}, then delete ${lock}`);
  }
  const probe = join(gitDir, `.agentpr-preflight-${process.pid}`);
  try {
    writeFileSync(probe, 'probe');
    rmSync(probe, { force: true });
  } catch (err) {
    return bad('git_writable', `cannot write in ${gitDir}: ${errorMessage(err)} (permission denied or read-only file system)`, `make ${gitDir} writable by this user (check ownership and mount options)`);
  }
  return ok('git_writable', `${gitDir} is writable`);
}

/** Paths `git status` reports, minus .agentpr_runtime/. */
export async function dirtyPaths(repoDir: string, env?: NodeJS.ProcessEnv): Promise<string[]> {
  const r = await git(repoDir, ['status', '--porcelain=v1', '--untracked-files=all', '-z'], env);
  if (r.exitCode !== 0) throw new Error(`git status failed in ${repoDir}: ${String(r.stderr).trim()}`);
  const entries = String(r.stdout).split('\0').filter(Boolean);
  const paths: string[] = [];
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i] ?? '';
    const status = e.slice(0, 2);
    const path = e.slice(3);
    if (status[0] === 'R' || status[0] === 'C') i++; // the next entry is the rename source
    if (path === RUNTIME_DIR || path.startsWith(`${RUNTIME_DIR}/`)) continue;
    paths.push(`${status.trim() || '??'} ${path}`);
  }
  return paths;
}

export async function checkCleanWorktree(repoDir: string, env?: NodeJS.ProcessEnv): Promise<PreflightCheck> {
  try {
    const dirty = await dirtyPaths(repoDir, env);
    if (dirty.length === 0) return ok('clean_worktree', 'no uncommitted changes (outside .agentpr_runtime/)');
    const shown = dirty.slice(0, 10).join(', ');
    return bad(
      'clean_worktree',
      `${dirty.length} uncommitted change${dirty.length === 1 ? '' : 's'} in ${repoDir}: ${shown}${dirty.length > 10 ? ', ...' : ''}`,
      'commit, stash or discard them (git stash -u / git checkout -- . && git clean -fd) before a worker runs; a worker must start from a clean tree',
    );
  } catch (err) {
    return bad('clean_worktree', errorMessage(err), 'check the clone with git status');
  }
}

interface ToolchainRule {
  /** Any of these files at the repository root. */
  files: string[];
  /** Tools needed when a file matches. */
  tools: string[];
}

/** Repository file -> tools it calls for. Lockfiles name the package manager. */
export const TOOLCHAIN_RULES: readonly ToolchainRule[] = [
  { files: ['package.json'], tools: ['node'] },
  { files: ['package-lock.json', 'npm-shrinkwrap.json'], tools: ['npm'] },
  { files: ['pnpm-lock.yaml'], tools: ['pnpm'] },
  { files: ['yarn.lock'], tools: ['yarn'] },
  { files: ['bun.lockb', 'bun.lock'], tools: ['bun'] },
  { files: ['pyproject.toml', 'requirements.txt', 'setup.py', 'setup.cfg', 'Pipfile'], tools: ['python3'] },
  { files: ['uv.lock'], tools: ['uv'] },
  { files: ['poetry.lock'], tools: ['poetry'] },
  { files: ['go.mod'], tools: ['go'] },
  { files: ['Cargo.toml'], tools: ['cargo'] },
  { files: ['Makefile', 'makefile', 'GNUmakefile'], tools: ['make'] },
  { files: ['Gemfile'], tools: ['ruby', 'bundle'] },
  { files: ['pom.xml'], tools: ['mvn'] },
  { files: ['composer.json'], tools: ['php', 'composer'] },
];

export function detectToolchain(repoDir: string): { tools: string[]; because: Record<string, string> } {
  const tools: string[] = [];
  const because: Record<string, string> = {};
  for (const rule of TOOLCHAIN_RULES) {
    const file = rule.files.find((f) => existsSync(join(repoDir, f)));
    if (!file) continue;
    for (const t of rule.tools) {
      if (!tools.includes(t)) {
        tools.push(t);
        because[t] = file;
      }
    }
  }
  // package.json without a lockfile of another manager: npm installs it.
  if (tools.includes('node') && !['npm', 'pnpm', 'yarn', 'bun'].some((t) => tools.includes(t))) {
    tools.push('npm');
    because.npm = 'package.json';
  }
  return { tools, because };
}

/** First executable named `name` on PATH (no process is started). */
export function whichSync(name: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, name);
    try {
      if (statSync(p).isFile()) {
        accessSync(p, constants.X_OK);
        return p;
      }
    } catch {
      // keep looking
    }
  }
  return undefined;
}

export function checkToolchain(repoDir: string, env: NodeJS.ProcessEnv = process.env): { check: PreflightCheck; tools: string[] } {
  const { tools, because } = detectToolchain(repoDir);
  if (tools.length === 0) return { check: ok('toolchain', 'no toolchain files found (nothing to check)'), tools };
  const missing = tools.filter((t) => !whichSync(t, env));
  if (missing.length === 0) return { check: ok('toolchain', `on PATH: ${tools.join(', ')}`), tools };
  return {
    check: bad(
      'toolchain',
      `missing from PATH: ${missing.map((t) => `${t} (needed for ${because[t]})`).join(', ')}`,
      `install ${missing.join(', ')} (or add it to PATH for the agentpr process), then run preflight again`,
    ),
    tools,
  };
}

function writableDir(dir: string): string | null {
  const probe = join(dir, `.agentpr-preflight-${process.pid}`);
  try {
    writeFileSync(probe, 'probe');
    rmSync(probe, { force: true });
    return null;
  } catch (err) {
    return errorMessage(err);
  }
}

const OFFLINE_SWITCHES: Array<{ env: string; when: (v: string) => boolean; tool: string; lockfiles: string[] }> = [
  { env: 'npm_config_offline', when: (v) => v === 'true' || v === '1', tool: 'npm', lockfiles: ['package-lock.json', 'npm-shrinkwrap.json'] },
  { env: 'PIP_NO_INDEX', when: (v) => v !== '' && v !== '0' && v.toLowerCase() !== 'false', tool: 'python3', lockfiles: [] },
  { env: 'UV_OFFLINE', when: (v) => v !== '' && v !== '0' && v.toLowerCase() !== 'false', tool: 'uv', lockfiles: ['uv.lock'] },
];

export function checkDepsInstallable(repoDir: string, tools: string[], env: NodeJS.ProcessEnv = process.env): PreflightCheck {
  if (!existsSync(repoDir)) return bad('deps_installable', `workspace ${repoDir} does not exist`, 'run run-prepare first');
  const repoErr = writableDir(repoDir);
  if (repoErr) {
    return bad('deps_installable', `cannot write in ${repoDir} (dependencies install there): ${repoErr}`, `make ${repoDir} writable by this user`);
  }
  const rt = join(repoDir, RUNTIME_DIR);
  if (existsSync(rt)) {
    const rtErr = writableDir(rt);
    if (rtErr) return bad('deps_installable', `cannot write in ${rt} (the isolated caches): ${rtErr}`, `make ${rt} writable or delete it`);
  }
  for (const sw of OFFLINE_SWITCHES) {
    const v = env[sw.env];
    if (v === undefined || !sw.when(v) || !tools.includes(sw.tool)) continue;
    if (sw.lockfiles.length === 0 || !sw.lockfiles.some((f) => existsSync(join(repoDir, f)))) {
      return bad('deps_installable', `${sw.env}=${v} forbids downloads and there is no lockfile for ${sw.tool} to install from a cache`, `unset ${sw.env} for agentpr, or prefill the cache`);
    }
  }
  return ok('deps_installable', `${repoDir}${existsSync(rt) ? ` and ${rt}` : ''} writable${tools.length ? `; installs by ${tools.join(', ')} can land there` : ''}`);
}

/** All checks, in order; later ones are skipped (reported failed with a pointer) when the clone is missing. */
export async function runPreflight(opts: { repoDir: string; workspaceRoot: string; env?: NodeJS.ProcessEnv }): Promise<PreflightReport> {
  const started = Date.now();
  const repoDir = resolve(opts.repoDir);
  const env = opts.env ?? process.env;
  const checks: PreflightCheck[] = [checkWorkspaceInsideRoot(repoDir, opts.workspaceRoot)];
  const present = await checkRepoPresent(repoDir, env);
  checks.push(present);
  let tools: string[] = [];
  if (present.ok) {
    checks.push(await checkGitWritable(repoDir, env));
    checks.push(await checkCleanWorktree(repoDir, env));
    const tc = checkToolchain(repoDir, env);
    tools = tc.tools;
    checks.push(tc.check);
    checks.push(checkDepsInstallable(repoDir, tools, env));
  } else {
    for (const name of ['git_writable', 'clean_worktree', 'toolchain', 'deps_installable'] as const) {
      checks.push(bad(name, 'not checked: no git clone in the workspace', 'run run-prepare first'));
    }
  }
  const failed = checks.filter((c) => !c.ok).map((c) => c.name);
  const warnings: string[] = [];
  const repoOverrides = ignoredRepoOverrides(repoDir);
  if (repoOverrides) {
    warnings.push(
      `${repoOverrides} is ignored: worker environment overrides come only from the operator (AGENTPR_RUNTIME_ENV_OVERRIDES or runtime_env_overrides.json in the agentpr home)`,
    );
  }
  return {
    schema: 'agentpr.preflight_report.v1',
    ok: failed.length === 0,
    repo_dir: repoDir,
    workspace_root: realpathLoose(opts.workspaceRoot),
    checked_at: new Date().toISOString(),
    toolchain: tools,
    checks,
    failed,
    warnings,
    duration_ms: Date.now() - started,
  };
}
