import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/**
 * Real git repositories for tests: a bare "upstream" with one commit and a bare "fork" cloned
 * from it, both local, so prepare.sh / finish.sh / the worker run against real remotes.
 */

/** A fixed identity and no user config, so tests behave the same on every machine. */
export const GIT_TEST_ENV: NodeJS.ProcessEnv = {
  GIT_AUTHOR_NAME: 'Test Author',
  GIT_AUTHOR_EMAIL: 'author@example.test',
  GIT_COMMITTER_NAME: 'Test Author',
  GIT_COMMITTER_EMAIL: 'author@example.test',
  GIT_CONFIG_NOSYSTEM: '1',
  GIT_TERMINAL_PROMPT: '0',
};

/** Runs git and returns trimmed stdout; throws with git's stderr on failure. */
export function git(cwd: string, args: string[], env: NodeJS.ProcessEnv = {}): string {
  try {
    return execFileSync('git', args, { cwd, env: { ...process.env, ...GIT_TEST_ENV, ...env }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`git ${args.join(' ')} (in ${cwd}) failed: ${e.stderr?.trim() || e.message}`);
  }
}

export function writeFiles(dir: string, files: Record<string, string>): void {
  for (const [rel, content] of Object.entries(files)) {
    const p = join(dir, rel);
    mkdirSync(dirname(p), { recursive: true });
    writeFileSync(p, content);
  }
}

export interface UpstreamAndFork {
  /** Bare repositories (use as remote URLs). */
  upstreamDir: string;
  forkDir: string;
  upstreamUrl: string;
  forkUrl: string;
  /** The upstream's default branch. */
  defaultBranch: string;
  /** sha of the initial commit on the default branch. */
  initialSha: string;
}

/**
 * In `tmp`: `upstream.git` (bare) whose default branch (`main` unless given) holds one commit
 * with `files`, and `fork.git`, a bare clone of it. Returns their paths/URLs.
 */
export function makeUpstreamAndFork(
  tmp: string,
  files: Record<string, string> = { 'README.md': '# demo\n' },
  opts: { defaultBranch?: string; name?: string } = {},
): UpstreamAndFork {
  const branch = opts.defaultBranch ?? 'main';
  const name = opts.name ?? 'upstream';
  const seed = join(tmp, `${name}-seed`);
  mkdirSync(seed, { recursive: true });
  git(seed, ['init', '-q', '-b', branch]);
  writeFiles(seed, files);
  git(seed, ['add', '-A']);
  git(seed, ['commit', '-q', '-m', 'initial commit']);
  const initialSha = git(seed, ['rev-parse', 'HEAD']);
  const upstreamDir = join(tmp, `${name}.git`);
  const forkDir = join(tmp, `${name}-fork.git`);
  git(tmp, ['clone', '-q', '--bare', seed, upstreamDir]);
  git(tmp, ['clone', '-q', '--bare', upstreamDir, forkDir]);
  return { upstreamDir, forkDir, upstreamUrl: upstreamDir, forkUrl: forkDir, defaultBranch: branch, initialSha };
}

/** Adds a commit to a bare repository's branch (through a temporary clone). Returns its sha. */
export function commitToBare(bareDir: string, branch: string, files: Record<string, string>, message = 'upstream change'): string {
  const work = `${bareDir}-work-${Date.now()}-${Math.random().toString(16).slice(2)}`;
  git(dirname(bareDir), ['clone', '-q', '-b', branch, bareDir, work]);
  writeFiles(work, files);
  git(work, ['add', '-A']);
  git(work, ['commit', '-q', '-m', message]);
  git(work, ['push', '-q', 'origin', branch]);
  return git(work, ['rev-parse', 'HEAD']);
}

/** `git log --format=%H %s` of a branch in a (bare) repository, newest first. */
export function logOf(repoDir: string, ref: string): Array<{ sha: string; subject: string }> {
  const out = git(repoDir, ['log', '--format=%H %s', ref]);
  return out ? out.split('\n').map((l) => ({ sha: l.slice(0, 40), subject: l.slice(41) })) : [];
}
