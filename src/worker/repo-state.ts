import { loadExeca } from '../exec.js';
import { safeGitEnv } from './git-safety.js';

/**
 * The worker's repository judged by git, not by what the stream says: codex sub-agents run
 * commands and edit files that never appear in the parent's `--json` stream, so a commit or a push
 * is seen by comparing HEAD and every ref before and after the step. Reads git only.
 */
export interface RepoSnapshot {
  head: string | null;
  /** Symbolic name of HEAD (`refs/heads/x`), or null when detached. */
  branch: string | null;
  /** refname -> object id, local branches, remote-tracking refs and tags. */
  refs: Record<string, string>;
}

async function git(dir: string, args: string[]): Promise<{ ok: boolean; out: string }> {
  const r = await (await loadExeca()).execa('git', ['-C', dir, ...args], {
    reject: false,
    stdin: 'ignore',
    // Reading must not take locks or run the user's fsmonitor; no agentpr secrets in its environment.
    env: { ...safeGitEnv(process.env), GIT_OPTIONAL_LOCKS: '0' },
    extendEnv: false,
  });
  return { ok: r.exitCode === 0, out: String(r.stdout ?? '') };
}

export async function snapshotRepo(dir: string): Promise<RepoSnapshot> {
  const head = await git(dir, ['rev-parse', '--verify', '-q', 'HEAD']);
  const branch = await git(dir, ['symbolic-ref', '-q', 'HEAD']);
  const refs: Record<string, string> = {};
  const list = await git(dir, ['for-each-ref', '--format=%(objectname) %(refname)']);
  for (const line of list.out.split('\n')) {
    const sp = line.indexOf(' ');
    if (sp > 0) refs[line.slice(sp + 1)] = line.slice(0, sp);
  }
  return { head: head.ok ? head.out.trim() : null, branch: branch.ok ? branch.out.trim() : null, refs };
}

export interface RepoChange {
  kind: 'commit' | 'push' | 'ref';
  detail: string;
}

/** What moved between two snapshots: new commits on HEAD, remote-tracking refs (a push), other refs. */
export async function compareRepo(dir: string, before: RepoSnapshot, after: RepoSnapshot): Promise<RepoChange[]> {
  const changes: RepoChange[] = [];
  if (before.head !== after.head) {
    let detail = `HEAD moved from ${before.head?.slice(0, 12) ?? '(no commit)'} to ${after.head?.slice(0, 12) ?? '(no commit)'}`;
    if (before.head && after.head) {
      const log = await git(dir, ['log', '--format=%h %an: %s', '-n', '5', `${before.head}..${after.head}`]);
      const lines = log.out.split('\n').filter(Boolean);
      if (lines.length) detail += ` (${lines.join('; ')})`;
    }
    changes.push({ kind: 'commit', detail });
  }
  if (before.branch !== after.branch) changes.push({ kind: 'ref', detail: `HEAD switched from ${before.branch ?? 'a detached HEAD'} to ${after.branch ?? 'a detached HEAD'}` });
  const names = new Set([...Object.keys(before.refs), ...Object.keys(after.refs)]);
  for (const name of [...names].sort()) {
    const a = before.refs[name];
    const b = after.refs[name];
    if (a === b) continue;
    // The branch HEAD points at moved with HEAD: already reported as a commit.
    if (name === before.branch && name === after.branch && before.head !== after.head) continue;
    const what = a === undefined ? 'created' : b === undefined ? 'deleted' : `moved ${a.slice(0, 12)} -> ${b.slice(0, 12)}`;
    changes.push({ kind: name.startsWith('refs/remotes/') ? 'push' : 'ref', detail: `${name} ${what}` });
  }
  return changes;
}
