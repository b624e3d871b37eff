import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';

/**
 * Who a process is, durably enough to tell later whether it is still there: host, kernel boot
 * id, pid and the pid's start time (so a reused pid is not mistaken for the holder).
 */
export interface Holder {
  host: string;
  /** Linux: /proc/sys/kernel/random/boot_id; null elsewhere. */
  boot_id: string | null;
  pid: number;
  /** Linux: the process start time in clock ticks since boot (/proc/<pid>/stat field 22). */
  proc_start: string | null;
}

function readBootId(): string | null {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || null;
  } catch {
    return null;
  }
}

/** Linux: the process start time in clock ticks since boot (/proc/<pid>/stat field 22); else undefined. */
export function procStart(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 2 (comm) may contain spaces and parentheses: split after the last ')'.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return rest[19]; // field 22 overall = index 19 after pid and comm
  } catch {
    return undefined;
  }
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the pid exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

let me: Holder | undefined;

/** This process as a holder (computed once). */
export function currentHolder(): Holder {
  me ??= { host: hostname(), boot_id: readBootId(), pid: process.pid, proc_start: procStart(process.pid) ?? null };
  return { ...me };
}

export function sameHolder(a: Holder, b: Holder): boolean {
  return a.host === b.host && a.pid === b.pid && a.boot_id === b.boot_id && a.proc_start === b.proc_start;
}

export function describeHolder(h: Holder): string {
  return `pid ${h.pid} on ${h.host}`;
}

/**
 * Why a holder is gone, or null when it may still be working. On this host the process itself
 * is checked (a reboot, a dead pid, a pid now used by another process); a holder on another host
 * is gone only once its heartbeat expired.
 */
export function holderGone(h: Holder, expiresAt: string, now = Date.now()): string | null {
  const self = currentHolder();
  if (h.host === self.host) {
    if (h.boot_id && self.boot_id && h.boot_id !== self.boot_id) return `owner pid ${h.pid} ran before the machine rebooted`;
    if (!pidAlive(h.pid)) return `owner pid ${h.pid} is gone`;
    if (h.proc_start) {
      const start = procStart(h.pid);
      if (start !== undefined && start !== h.proc_start) return `pid ${h.pid} now belongs to another process`;
    }
    return null;
  }
  const exp = Date.parse(expiresAt);
  if (Number.isFinite(exp) && exp < now) return `holder ${describeHolder(h)} stopped its heartbeat (expired ${expiresAt})`;
  return null;
}
