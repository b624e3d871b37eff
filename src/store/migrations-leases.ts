import type { Migration } from './migrations.js';

/**
 * Run leases: at most one active step per run, across processes. Kept in a file of its own so
 * other migrations can be added beside it without touching it.
 */
export const LEASE_MIGRATIONS: Migration[] = [
  {
    version: 14,
    name: 'leases: one active step per run (holder, heartbeat, expiry)',
    sql: `
CREATE TABLE run_leases (
  run_id TEXT PRIMARY KEY REFERENCES runs(run_id) ON DELETE CASCADE,
  step TEXT NOT NULL,
  attempt_id INTEGER NOT NULL REFERENCES step_attempts(attempt_id) ON DELETE CASCADE,
  holder_host TEXT NOT NULL,
  holder_boot_id TEXT,
  holder_pid INTEGER NOT NULL,
  holder_proc_start TEXT,
  acquired_at TEXT NOT NULL,
  heartbeat_at TEXT NOT NULL,
  expires_at TEXT NOT NULL
);
CREATE UNIQUE INDEX run_leases_attempt ON run_leases(attempt_id);
CREATE INDEX run_leases_holder ON run_leases(holder_host, holder_pid);
`,
  },
];
