import { chmodSync, existsSync, lstatSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { createHash } from 'node:crypto';
import { RefusedError } from '../registry.js';
import { loadExeca } from '../exec.js';
import { safeGitEnv } from './git-safety.js';

/**
 * agentpr owns the clone's `.git` control files. The worker (sandboxed with workspace-write) can
 * write anywhere in the clone, `.git/` included, and agentpr later runs its own git there outside
 * the sandbox: a `[filter] clean`, `[diff] textconv`, `remote.*.receivepack`, `core.sshCommand`,
 * `url.*.insteadOf`, `include.path`, `core.attributesFile` ... in `.git/config` would make that git
 * run the worker's commands as the operator, or push somewhere else.
 *
 * So prepare records the control files it left (the baseline, stored in the data home, outside
 * every clone), and before agentpr's own git runs after a worker:
 *   - `.git` must still be the directory prepare made: not a gitfile (`gitdir: /elsewhere`), not a
 *     symlink, not missing, with no symlinked `info/` or `objects/` inside -> else `git_dir_replaced`;
 *   - files that point git at another repository's objects or config (`commondir`,
 *     `objects/info/alternates`, `objects/info/http-alternates`) must be as recorded -> else
 *     `git_dir_redirected` (removing them could lose objects the worker's commits need);
 *   - `config`, `config.worktree`, `info/attributes` and `info/grafts` are put back as recorded,
 *     and what differed is reported.
 * A clone without a baseline (prepared by an older agentpr, or by hand) is accepted once if its
 * config holds only the plain keys a clone has (core format keys, remotes' url/fetch, branch
 * tracking, user identity, agentpr.base); it then becomes the baseline. Anything else is
 * `git_config_untrusted`.
 */

/** Files git reads as configuration or attributes: restored to the baseline. */
const RESTORED_FILES = ['config', 'config.worktree', 'info/attributes', 'info/grafts'] as const;
/** Files that send git to another directory's objects or config: refused when changed. */
const REDIRECT_FILES = ['commondir', 'objects/info/alternates', 'objects/info/http-alternates'] as const;
/** Directories inside .git that git and agentpr read or write through; never symlinks. */
const REAL_DIRS = ['info', 'objects', 'objects/info', 'refs', 'hooks'] as const;
const TRACKED = [...RESTORED_FILES, ...REDIRECT_FILES];

export const GIT_GUARD_REASONS = ['git_dir_replaced', 'git_dir_redirected', 'git_config_untrusted', 'nested_git_config'] as const;

export interface GitBaseline {
  schema: 'agentpr.git_baseline.v1';
  run_id: string;
  workspace: string;
  recorded_at: string;
  /** run-prepare, or first-use for a clone agentpr did not prepare (only plain keys then). */
  recorded_by: 'run-prepare' | 'first-use';
  /** Path inside .git -> its content (utf8), or null when the file did not exist. */
  files: Record<string, string | null>;
  /** remote.origin.url as prepare left it: where a push goes. */
  origin_url: string | null;
}

export interface GitGuardResult {
  /** One line per control file the worker (or anyone) changed since the baseline; empty when none. */
  changes: string[];
  /** Of those, the config keys that can run a command or send git elsewhere (filter.*, include.path, remote.*.pushurl, ...). */
  dangerous_keys: string[];
  /** Files put back as recorded. */
  restored: string[];
  /** Where the push goes (the baseline's remote.origin.url). */
  origin_url: string | null;
  recorded_by: GitBaseline['recorded_by'];
}

export function gitBaselinePath(home: string, runId: string): string {
  if (!/^[A-Za-z0-9_.-]+$/.test(runId) || runId.startsWith('.')) throw new Error(`not a run id: ${runId}`);
  return join(home, 'git-baselines', `${runId}.json`);
}

function sha(text: string | null): string {
  return text === null ? 'absent' : createHash('sha256').update(text).digest('hex').slice(0, 12);
}

/** Whether the clone has a `.git` entry of any kind (a missing one is the clone checks' business before a worker ran). */
export function hasGitEntry(workspace: string): boolean {
  try {
    lstatSync(join(resolve(workspace), '.git'));
    return true;
  } catch {
    return false;
  }
}

/** The shape check: `.git` is a real directory with real subdirectories. Returns the problem, or null. */
export function gitDirProblem(workspace: string): string | null {
  const gitDir = join(workspace, '.git');
  let st;
  try {
    st = lstatSync(gitDir);
  } catch {
    return `${gitDir} is missing (git would look for a repository in the directories above the clone)`;
  }
  if (st.isSymbolicLink()) return `${gitDir} is a symlink, not the directory run-prepare made`;
  if (st.isFile()) {
    let first = '';
    try {
      first = readFileSync(gitDir, 'utf8').split('\n')[0]?.slice(0, 200) ?? '';
    } catch {
      /* unreadable: the message says it is a file */
    }
    return `${gitDir} is a file${first ? ` ("${first}")` : ''}, not the directory run-prepare made`;
  }
  if (!st.isDirectory()) return `${gitDir} is not a directory`;
  for (const d of REAL_DIRS) {
    const p = join(gitDir, d);
    try {
      if (lstatSync(p).isSymbolicLink()) return `${p} is a symlink; git would read and write another directory through it`;
    } catch {
      /* absent is fine: git recreates what it needs */
    }
  }
  return null;
}

/** A control file's content, or null when absent. A symlink or a directory in its place counts as content that differs. */
function readControl(gitDir: string, rel: string): string | null {
  const p = join(gitDir, rel);
  let st;
  try {
    st = lstatSync(p);
  } catch {
    return null;
  }
  if (st.isSymbolicLink()) return `<symlink>`;
  if (!st.isFile()) return `<not a file>`;
  return readFileSync(p, 'utf8');
}

function readControls(workspace: string): Record<string, string | null> {
  const gitDir = join(workspace, '.git');
  return Object.fromEntries(TRACKED.map((rel) => [rel, readControl(gitDir, rel)]));
}

/**
 * The keys of a git config text, lower-cased as git does for section and key (subsection kept),
 * with their values. A small parser on purpose: running git on a hostile config is what this
 * module avoids. It reads sections, subsections and key = value lines; includes are not followed
 * (an include is itself a key here).
 */
export function configEntries(text: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  let section = '';
  for (const raw of text.split('\n')) {
    let line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith(';')) continue;
    const sec = /^\[\s*([A-Za-z0-9.-]+)(?:\s+"((?:[^"\\]|\\.)*)")?\s*\](.*)$/.exec(line);
    if (sec) {
      const name = sec[1]!.toLowerCase();
      // [section.sub] is the old spelling of [section "sub"]
      section = sec[2] !== undefined ? `${name}.${sec[2]}` : name;
      line = sec[3]!.trim();
      if (!line || line.startsWith('#') || line.startsWith(';')) continue;
    }
    const kv = /^([A-Za-z][A-Za-z0-9-]*)\s*(?:=\s*(.*))?$/.exec(line);
    const key = kv ? kv[1]!.toLowerCase() : line.split(/[\s=]/)[0]!.toLowerCase();
    out.push([`${section}.${key}`, kv?.[2]?.trim() ?? 'true']);
  }
  return out;
}

/** Keys a plain clone has; anything else in a clone without a baseline is refused. */
const PLAIN_KEY = [
  /^core\.(repositoryformatversion|filemode|bare|logallrefupdates|ignorecase|precomposeunicode|symlinks|autocrlf|safecrlf|eol)$/,
  /^remote\..+\.(url|fetch|tagopt|prune)$/,
  /^branch\..+\.(remote|merge|rebase)$/,
  /^user\.(name|email)$/,
  /^agentpr\.base$/,
  /^extensions\.objectformat$/,
];

/**
 * Keys a worker may change without it meaning anything to agentpr's git (a commit identity, a
 * branch's tracking). Every other changed key (filters, includes, remotes, insteadOf, pager, ...)
 * counts as tampering: it is an allowlist, so a key nobody thought of is not waved through.
 */
const HARMLESS_KEY = [
  /^user\.(name|email)$/,
  /^branch\..+\.(remote|merge|rebase|description)$/,
  /^core\.(repositoryformatversion|filemode|bare|logallrefupdates|ignorecase|precomposeunicode|symlinks)$/,
];

function keysDiff(before: string | null, after: string | null): { keys: string[]; dangerous: string[] } {
  const a = new Set(configEntries(before ?? '').map(([k, v]) => `${k}\u0000${v}`));
  const b = new Set(configEntries(after ?? '').map(([k, v]) => `${k}\u0000${v}`));
  const keys = new Set<string>();
  for (const e of a) if (!b.has(e)) keys.add(e.split('\u0000')[0]!);
  for (const e of b) if (!a.has(e)) keys.add(e.split('\u0000')[0]!);
  const sorted = [...keys].sort();
  // Text that differs with no key that differs (a continuation line, a comment trick): not harmless either.
  if (!sorted.length && (before ?? '') !== (after ?? '')) return { keys: [], dangerous: ['(a change the parser could not name)'] };
  return { keys: sorted, dangerous: sorted.filter((k) => !HARMLESS_KEY.some((re) => re.test(k))) };
}

function originUrlOf(config: string | null): string | null {
  const urls = configEntries(config ?? '').filter(([k]) => k === 'remote.origin.url');
  return urls.length === 1 ? urls[0]![1] : null;
}

function writeBaseline(home: string, baseline: GitBaseline): void {
  const path = gitBaselinePath(home, baseline.run_id);
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(baseline, null, 2)}\n`, { mode: 0o600 });
  renameSync(tmp, path);
}

export function readGitBaseline(home: string, runId: string): GitBaseline | null {
  const path = gitBaselinePath(home, runId);
  if (!existsSync(path)) return null;
  const b = JSON.parse(readFileSync(path, 'utf8')) as GitBaseline;
  if (b.schema !== 'agentpr.git_baseline.v1' || typeof b.files !== 'object' || b.files === null) {
    throw new RefusedError(`git_config_untrusted: the recorded git state ${path} is not one agentpr wrote; nothing was changed. Delete it and run run-prepare again.`);
  }
  return b;
}

/** After prepare.sh succeeded: what it left in .git becomes the baseline. */
export function recordGitBaseline(home: string, runId: string, workspace: string, by: GitBaseline['recorded_by'] = 'run-prepare'): GitBaseline {
  const ws = resolve(workspace);
  const problem = gitDirProblem(ws);
  if (problem) throw new RefusedError(`git_dir_replaced: ${problem}; nothing was recorded. Move the workspace away and run run-prepare again.`);
  const files = readControls(ws);
  const baseline: GitBaseline = { schema: 'agentpr.git_baseline.v1', run_id: runId, workspace: ws, recorded_at: new Date().toISOString(), recorded_by: by, files, origin_url: originUrlOf(files.config ?? null) };
  writeBaseline(home, baseline);
  return baseline;
}

function refuse(reason: (typeof GIT_GUARD_REASONS)[number], what: string, fix: string): never {
  throw new RefusedError(`${reason}: ${what}; nothing was changed. ${fix}`);
}

/**
 * Before agentpr's own git runs in a clone a worker may have written: check `.git`, refuse what
 * cannot be put back, restore the rest to the baseline (`restore: false` only reports). Throws
 * RefusedError with git_dir_replaced / git_dir_redirected / git_config_untrusted.
 */
export function guardGitDir(home: string, runId: string, workspace: string, opts: { restore?: boolean } = {}): GitGuardResult {
  const ws = resolve(workspace);
  const problem = gitDirProblem(ws);
  const fix = `The worker (or someone) changed ${ws}/.git; look at it, then move the workspace away and run run-prepare again for a fresh clone.`;
  if (problem) refuse('git_dir_replaced', problem, fix);
  const now = readControls(ws);
  let baseline = readGitBaseline(home, runId);
  if (!baseline) {
    for (const rel of REDIRECT_FILES) if (now[rel] !== null) refuse('git_dir_redirected', `${ws}/.git/${rel} exists and agentpr has no record of it`, fix);
    const odd = [...new Set(configEntries(now.config ?? '').map(([k]) => k).filter((k) => !PLAIN_KEY.some((re) => re.test(k))))];
    if (odd.length) {
      refuse(
        'git_config_untrusted',
        `${ws}/.git/config has keys a plain clone does not (${odd.slice(0, 10).join(', ')}${odd.length > 10 ? ', ...' : ''}) and agentpr recorded no config for run ${runId}`,
        `Remove those keys by hand (git config --unset) if you trust them to go, or move the workspace away and run run-prepare again; run-prepare records the config agentpr will keep.`,
      );
    }
    if (opts.restore === false) return { changes: [], dangerous_keys: [], restored: [], origin_url: originUrlOf(now.config ?? null), recorded_by: 'first-use' };
    baseline = recordGitBaseline(home, runId, ws, 'first-use');
    return { changes: [], dangerous_keys: [], restored: [], origin_url: baseline.origin_url, recorded_by: 'first-use' };
  }
  for (const rel of REDIRECT_FILES) {
    const was = baseline.files[rel] ?? null;
    if (now[rel] !== was) refuse('git_dir_redirected', `${ws}/.git/${rel} ${was === null ? 'was written' : now[rel] === null ? 'was removed' : 'was changed'} since run-prepare (it points git at another repository's ${rel === 'commondir' ? 'config and refs' : 'objects'})`, fix);
  }
  const changes: string[] = [];
  const dangerous = new Set<string>();
  const restored: string[] = [];
  const gitDir = join(ws, '.git');
  for (const rel of RESTORED_FILES) {
    const was = baseline.files[rel] ?? null;
    const is = now[rel] ?? null;
    if (is === was) continue;
    if (rel === 'config' || rel === 'config.worktree') {
      const d = keysDiff(was, is?.startsWith('<') ? '' : is);
      for (const k of d.dangerous) dangerous.add(k);
      changes.push(`.git/${rel} changed since run-prepare${d.keys.length ? ` (keys: ${d.keys.slice(0, 12).join(', ')}${d.keys.length > 12 ? ', ...' : ''})` : ''}`);
      if (!d.keys.length && is !== null && is.startsWith('<')) dangerous.add(`.git/${rel} replaced by ${is}`);
    } else {
      changes.push(`.git/${rel} ${was === null ? 'was written' : is === null ? 'was removed' : 'changed'} since run-prepare (${sha(was)} -> ${sha(is)})`);
      if (is !== null) dangerous.add(`.git/${rel}`);
    }
    if (opts.restore === false) continue;
    const p = join(gitDir, rel);
    // rm first: a symlink or a directory in the file's place goes, it is never written through.
    rmSync(p, { recursive: true, force: true });
    if (was !== null) {
      mkdirSync(dirname(p), { recursive: true });
      const tmp = `${p}.agentpr-${process.pid}.tmp`;
      rmSync(tmp, { recursive: true, force: true });
      writeFileSync(tmp, was, { flag: 'wx' });
      renameSync(tmp, p);
      try {
        chmodSync(p, 0o644);
      } catch {
        /* best effort */
      }
    }
    restored.push(`.git/${rel}`);
  }
  return { changes, dangerous_keys: [...dangerous].sort(), restored, origin_url: baseline.origin_url, recorded_by: baseline.recorded_by };
}

/** One line for reports: what was changed and put back. */
export function describeGitGuard(r: GitGuardResult): string[] {
  if (!r.changes.length) return [];
  return [...r.changes.map((c) => `${c}${r.restored.length ? '; agentpr put back what run-prepare recorded' : ''}`), ...(r.dangerous_keys.length ? [`git settings that run commands or redirect git were written: ${r.dangerous_keys.join(', ')}`] : [])];
}

/** Keys that make a git process started in a nested repository run a command. */
const EXEC_KEY = [
  /^filter\./,
  /^diff\..*\.(textconv|command)$/,
  /^diff\.external$/,
  /^merge\..*\.driver$/,
  /^include\.path$/,
  /^includeif\./,
  /^core\.(pager|sshcommand|editor|askpass|attributesfile|fsmonitor|hookspath|gitproxy|worktree|alternaterefscommand)$/,
  /^sequence\.editor$/,
  /^credential\./,
  /^(receive|uploadpack|gpg)\./,
  /^remote\..+\.(receivepack|uploadpack)$/,
];

async function lsFiles(ws: string, args: string[]): Promise<string[]> {
  const r = await (await loadExeca()).execa('git', ['-C', ws, 'ls-files', '-z', ...args], { reject: false, stdin: 'ignore', env: { ...safeGitEnv(process.env), GIT_OPTIONAL_LOCKS: '0' }, extendEnv: false, timeout: 60_000 });
  if (r.exitCode !== 0) return [];
  return String(r.stdout).split('\0').filter(Boolean);
}

/** The git directory of a nested repository at `dir` (a `.git` directory or gitfile), or a problem. */
function nestedGitDir(ws: string, dir: string): { gitDir: string } | { problem: string } | null {
  const dotGit = join(dir, '.git');
  let st;
  try {
    st = lstatSync(dotGit);
  } catch {
    return null;
  }
  if (st.isSymbolicLink()) return { problem: `${dotGit} is a symlink` };
  if (st.isDirectory()) return { gitDir: dotGit };
  if (!st.isFile()) return { problem: `${dotGit} is not a file or directory` };
  const m = /^gitdir:\s*(.+?)\s*$/m.exec(readFileSync(dotGit, 'utf8'));
  if (!m) return { problem: `${dotGit} is a file without a gitdir: line` };
  const target = resolve(dir, m[1]!);
  const rel = relative(ws, target);
  if (rel.startsWith(`..${sep}`) || rel === '..' || isAbsolute(rel)) return { problem: `${dotGit} points outside the clone (${target})` };
  return { gitDir: target };
}

/**
 * A repository inside the clone (a submodule the worker checked out, or one it made): agentpr's
 * git status/diff/add in the clone runs git in it too, with its own config. Its config may not
 * hold keys that run commands, and it may not send git elsewhere (commondir, alternates).
 * Returns the problems found (empty: fine). Reads only: `git ls-files` of the (restored) clone.
 */
export async function nestedRepoProblems(workspace: string): Promise<string[]> {
  const ws = resolve(workspace);
  const gitlinks = (await lsFiles(ws, ['--stage'])).filter((l) => l.startsWith('160000 ')).map((l) => l.slice(l.indexOf('\t') + 1));
  const untrackedDirs = (await lsFiles(ws, ['--others', '--directory', '--exclude-standard'])).filter((p) => p.endsWith('/')).map((p) => p.slice(0, -1));
  const problems: string[] = [];
  for (const path of [...new Set([...gitlinks, ...untrackedDirs])].sort()) {
    const found = nestedGitDir(ws, join(ws, path));
    if (!found) continue;
    if ('problem' in found) {
      problems.push(found.problem);
      continue;
    }
    for (const rel of ['commondir', 'objects/info/alternates']) {
      if (existsSync(join(found.gitDir, rel))) problems.push(`${join(found.gitDir, rel)} sends the repository at ${path} elsewhere`);
    }
    const config = readControl(found.gitDir, 'config');
    if (config !== null && config.startsWith('<')) problems.push(`${join(found.gitDir, 'config')} is ${config}`);
    const keys = [...new Set(configEntries(config ?? '').map(([k]) => k).filter((k) => EXEC_KEY.some((re) => re.test(k))))];
    if (keys.length) problems.push(`the repository at ${path} has git settings that run commands (${keys.slice(0, 8).join(', ')}) in ${join(found.gitDir, 'config')}`);
    if (problems.length >= 10) break;
  }
  return problems;
}

/** guardGitDir, then the nested repositories: what every agentpr git call after a worker goes through. */
export async function guardClone(home: string, runId: string, workspace: string, opts: { restore?: boolean } = {}): Promise<GitGuardResult> {
  const r = guardGitDir(home, runId, workspace, opts);
  const problems = await nestedRepoProblems(workspace);
  if (problems.length) {
    refuse('nested_git_config', problems.join('; '), `agentpr's git in the clone would run git in that repository with those settings. Remove the nested repository (or its settings) by hand, or move the workspace away and run run-prepare again.`);
  }
  return r;
}
