import { existsSync, rmSync, statSync } from 'node:fs';
import { relative, resolve, sep, isAbsolute } from 'node:path';
import type { App } from '../app.js';
import { isTerminal } from '../core/states.js';
import { checkWorkspaceInsideRoot } from './preflight.js';

export interface WorkspaceCleanup {
  run_id: string;
  state: string;
  workspace_dir: string;
  action: 'removed' | 'would_remove' | 'kept';
  why: string;
}

function within(parent: string, child: string): boolean {
  const rel = relative(parent, child);
  return rel === '' || (!rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel));
}

/**
 * Removes the trees of runs in a terminal state (DONE, SKIPPED, FAILED_TERMINAL) last updated
 * more than `olderThanDays` ago. A tree is kept when it lies outside the workspace root, when a
 * run that is not terminal uses it (or a tree inside or around it: the old shared `<root>/<repo>`
 * layout), or when a step of its run holds the lease.
 */
export function cleanupWorkspaces(app: App, opts: { olderThanDays: number; dryRun: boolean; now?: number }): WorkspaceCleanup[] {
  const now = opts.now ?? Date.now();
  const cutoff = new Date(now - opts.olderThanDays * 86_400_000).toISOString();
  const all: Array<{ run_id: string; state: string; workspace_dir: string; updated_at: string }> = [];
  for (let offset = 0; ; offset += 500) {
    const page = app.service.listRuns({ limit: 500, offset }).runs;
    for (const r of page) all.push({ run_id: r.run_id, state: r.state, workspace_dir: resolve(r.workspace_dir), updated_at: r.updated_at });
    if (page.length < 500) break;
  }
  const liveDirs = all.filter((r) => !isTerminal(r.state as never)).map((r) => r.workspace_dir);
  const out: WorkspaceCleanup[] = [];
  for (const r of all) {
    if (!isTerminal(r.state as never) || r.updated_at > cutoff) continue;
    if (!existsSync(r.workspace_dir) || !statSync(r.workspace_dir).isDirectory()) continue;
    const base = { run_id: r.run_id, state: r.state, workspace_dir: r.workspace_dir };
    const inside = checkWorkspaceInsideRoot(r.workspace_dir, app.config.workspaceRoot);
    if (!inside.ok) {
      out.push({ ...base, action: 'kept', why: inside.message });
      continue;
    }
    const shared = liveDirs.find((d) => within(r.workspace_dir, d) || within(d, r.workspace_dir));
    if (shared) {
      out.push({ ...base, action: 'kept', why: `a run that is not finished uses ${shared}` });
      continue;
    }
    const lease = app.service.leases.get(r.run_id);
    if (lease) {
      out.push({ ...base, action: 'kept', why: `its ${lease.step} step holds the run's lease` });
      continue;
    }
    if (!opts.dryRun) rmSync(r.workspace_dir, { recursive: true, force: true });
    out.push({ ...base, action: opts.dryRun ? 'would_remove' : 'removed', why: `${r.state} since ${r.updated_at}` });
  }
  return out;
}
