import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { ConfigurationError } from '../core/errors.js';

/**
 * How a worker is started so that every process it starts can be found and killed:
 *
 * - `pidns`: `unshare --user --pid --fork --kill-child --mount-proc` (util-linux). The worker is
 *   PID 1 of a namespace of its own; when it dies, or unshare is killed, the kernel ends every
 *   process inside, daemons started with setsid included.
 * - `session`: its own session and process group, plus a marker in its environment that a `/proc`
 *   sweep finds in descendants that left the group (setsid, double fork).
 *
 * In both modes `setpriv --pdeathsig KILL` makes the kernel kill the worker (and so, in pidns
 * mode, its namespace) when agentpr dies, even by kill -9. A cgroup v2 leaf is not used yet.
 */
export type ContainmentMode = 'pidns' | 'session';

export interface Containment {
  mode: ContainmentMode;
  /** argv put before the worker's own: [file, ...args]; empty when nothing wraps it. */
  prefix: string[];
  /** Whether setpriv --pdeathsig is in the prefix (the worker dies with agentpr). */
  diesWithParent: boolean;
  /** Why this mode (what was probed). */
  detail: string;
}

export const MARKER_VAR = 'AGENTPR_WORKER_ID';

function works(argv: string[]): boolean {
  try {
    const r = spawnSync(argv[0]!, [...argv.slice(1), '--', 'true'], { stdio: 'ignore', timeout: 5_000 });
    return r.status === 0;
  } catch {
    return false;
  }
}

function helpHas(bin: string, flag: string): boolean {
  try {
    const r = spawnSync(bin, ['--help'], { encoding: 'utf8', timeout: 5_000 });
    return `${r.stdout}${r.stderr}`.includes(flag);
  } catch {
    return false;
  }
}

const cache = new Map<string, Containment>();

/**
 * The containment in force: AGENTPR_WORKER_CONTAINMENT (auto | pidns | session; default auto,
 * the strongest this kernel allows). Probed once per process and setting.
 */
export function detectContainment(env: NodeJS.ProcessEnv = process.env): Containment {
  const wanted = (env.AGENTPR_WORKER_CONTAINMENT ?? 'auto').trim() || 'auto';
  if (!['auto', 'pidns', 'session'].includes(wanted)) {
    throw new ConfigurationError(`AGENTPR_WORKER_CONTAINMENT=${wanted} is not one of auto, pidns, session; fix or unset it (auto picks the strongest the kernel allows)`);
  }
  const hit = cache.get(wanted);
  if (hit) return hit;
  const linux = process.platform === 'linux';
  const pdeath = linux && works(['setpriv', '--pdeathsig', 'KILL']) ? ['setpriv', '--pdeathsig', 'KILL', '--'] : [];
  let result: Containment | undefined;
  if (linux && wanted !== 'session') {
    const ns = ['unshare', '--user', ...(helpHas('unshare', '--map-current-user') ? ['--map-current-user'] : []), '--pid', '--fork', '--kill-child', '--mount-proc'];
    if (works(ns)) {
      result = { mode: 'pidns', prefix: [...pdeath, ...ns, '--'], diesWithParent: pdeath.length > 0, detail: `PID namespace via ${ns.join(' ')}` };
    } else if (wanted === 'pidns') {
      throw new ConfigurationError(
        'AGENTPR_WORKER_CONTAINMENT=pidns but this kernel refuses unprivileged user and PID namespaces (unshare --user --pid failed); allow them (sysctl kernel.unprivileged_userns_clone=1, or an AppArmor profile for unshare) or set it to auto',
      );
    }
  }
  result ??= {
    mode: 'session',
    prefix: pdeath,
    diesWithParent: pdeath.length > 0,
    detail: linux ? `own session and process group, /proc sweep by ${MARKER_VAR}${wanted === 'auto' ? '; unshare --user --pid is not allowed here' : ''}` : 'own process group (no /proc here)',
  };
  cache.set(wanted, result);
  return result;
}

/** Pids (other than this process) whose environment carries MARKER_VAR=token. Linux only. */
export function markedPids(token: string): number[] {
  if (!existsSync('/proc/self/environ')) return [];
  const needle = `\0${MARKER_VAR}=${token}\0`;
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(entry) || Number(entry) === process.pid) continue;
    let text: string;
    try {
      text = `\0${readFileSync(`/proc/${entry}/environ`, 'latin1')}`;
    } catch {
      continue;
    }
    if (text.includes(needle)) out.push(Number(entry));
  }
  return out;
}

/** Signals the worker's group and every marked descendant; returns how many were signalled. */
export function signalTree(pid: number | null, token: string, sig: NodeJS.Signals): number {
  let n = 0;
  if (pid !== null) {
    try {
      process.kill(-pid, sig);
      n++;
    } catch {
      try {
        process.kill(pid, sig);
        n++;
      } catch {
        // gone
      }
    }
  }
  for (const p of markedPids(token)) {
    try {
      process.kill(p, sig);
      n++;
    } catch {
      // gone meanwhile
    }
  }
  return n;
}
