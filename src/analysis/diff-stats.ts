import { open } from 'node:fs/promises';
import { safeGitEnv } from '../worker/git-safety.js';
import { join } from 'node:path';
import { loadExeca } from '../exec.js';
import { UserInputError } from '../core/errors.js';

/** What the agent changed in the worktree, for the diff budget and the PR gate. */
export interface DiffStats {
  changed_files: number;
  added_lines: number;
  deleted_lines: number;
  files: Array<{ path: string; added: number; deleted: number; binary: boolean; untracked: boolean }>;
  /** Changed paths left out because they are runtime or cache paths. */
  ignored_files: number;
  /** The commit the diff is against; null in a repository without commits. */
  head_sha: string | null;
}

/** Path segments that are never the agent's work: runtime dir, virtualenvs, dependencies, test/lint caches. */
export const DIFF_IGNORED_SEGMENTS: ReadonlySet<string> = new Set([
  '.agentpr_runtime',
  '.venv',
  'venv',
  'node_modules',
  '__pycache__',
  '.pytest_cache',
  '.mypy_cache',
  '.ruff_cache',
  '.tox',
  '.nox',
  '.cache',
  '.hypothesis',
  '.eslintcache',
  '.coverage',
  'htmlcov',
  '.turbo',
  '.parcel-cache',
  '.gradle',
]);

export function isIgnoredDiffPath(path: string): boolean {
  return path.split('/').some((seg) => DIFF_IGNORED_SEGMENTS.has(seg));
}

const EMPTY_TREE = '4b825dc642cb6eb9a060e54bf8d69288fbee4904';
const MAX_FILES_LISTED = 200;

async function git(dir: string, args: string[]): Promise<string> {
  const r = await (await loadExeca()).execa('git', ['-C', dir, ...args], { reject: false, stripFinalNewline: false, env: { ...safeGitEnv(process.env), GIT_OPTIONAL_LOCKS: '0' }, extendEnv: false });
  if (r.exitCode !== 0) {
    throw new UserInputError(`git ${args.join(' ')} failed in ${dir} (exit ${r.exitCode}): ${String(r.stderr).trim() || 'no message'}; is it a git worktree?`);
  }
  return String(r.stdout);
}

/** The worktree's HEAD commit, or null when the repository has no commits yet. */
export async function readHeadSha(dir: string): Promise<string | null> {
  const r = await (await loadExeca()).execa('git', ['-C', dir, 'rev-parse', '--verify', '-q', 'HEAD'], { reject: false, env: safeGitEnv(process.env), extendEnv: false });
  if (r.exitCode === 0) return String(r.stdout).trim();
  const inside = await (await loadExeca()).execa('git', ['-C', dir, 'rev-parse', '--is-inside-work-tree'], { reject: false, env: safeGitEnv(process.env), extendEnv: false });
  if (inside.exitCode !== 0) throw new UserInputError(`not a git worktree: ${dir}; the diff budget needs the run's clone`);
  return null;
}

/**
 * Tracked changes against HEAD, or against `base` when given (staged and unstaged) plus untracked files (their lines count as
 * added), without runtime and cache paths. Reads git only; changes nothing.
 */
export async function computeDiffStats(dir: string, base?: string | null): Promise<DiffStats> {
  const head = await readHeadSha(dir);
  const stats: DiffStats = { changed_files: 0, added_lines: 0, deleted_lines: 0, files: [], ignored_files: 0, head_sha: head };
  const add = (path: string, added: number, deleted: number, binary: boolean, untracked: boolean): void => {
    if (isIgnoredDiffPath(path)) {
      stats.ignored_files++;
      return;
    }
    stats.changed_files++;
    stats.added_lines += added;
    stats.deleted_lines += deleted;
    if (stats.files.length < MAX_FILES_LISTED) stats.files.push({ path, added, deleted, binary, untracked });
  };

  // With a base (HEAD before the worker ran), commits made since count as changes too.
  const numstat = await git(dir, ['diff', '--numstat', '-z', '--no-renames', '--no-ext-diff', '--no-textconv', base ?? head ?? EMPTY_TREE, '--']);
  for (const rec of numstat.split('\0')) {
    if (!rec) continue;
    const m = /^(-|\d+)\t(-|\d+)\t([\s\S]*)$/.exec(rec);
    if (!m) continue;
    const binary = m[1] === '-';
    add(m[3]!, binary ? 0 : Number(m[1]), binary ? 0 : Number(m[2]), binary, false);
  }

  const untracked = await git(dir, ['ls-files', '--others', '--exclude-standard', '-z']);
  for (const path of untracked.split('\0')) {
    if (!path) continue;
    if (isIgnoredDiffPath(path)) {
      stats.ignored_files++;
      continue;
    }
    const { lines, binary } = await countLines(join(dir, path));
    add(path, lines, 0, binary, true);
  }
  return stats;
}

async function countLines(path: string): Promise<{ lines: number; binary: boolean }> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch {
    return { lines: 0, binary: false };
  }
  try {
    const buf = Buffer.allocUnsafe(64 * 1024);
    let lines = 0;
    let first = true;
    let last = 10;
    let total = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      const chunk = buf.subarray(0, bytesRead);
      if (first && chunk.subarray(0, 8000).includes(0)) return { lines: 0, binary: true };
      first = false;
      total += bytesRead;
      let pos = chunk.indexOf(10);
      while (pos !== -1) {
        lines++;
        pos = chunk.indexOf(10, pos + 1);
      }
      last = chunk[bytesRead - 1]!;
    }
    // A last line without a newline still counts, as git counts it.
    if (total > 0 && last !== 10) lines++;
    return { lines, binary: false };
  } finally {
    await handle.close();
  }
}
