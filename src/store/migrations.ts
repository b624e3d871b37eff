/**
 * Numbered schema migrations. Each runs once, in its own transaction, and is recorded in
 * `schema_migrations`. Never edit a shipped migration: add the next number.
 */
import { LEASE_MIGRATIONS } from './migrations-leases.js';
import { EVENT_STATE_MIGRATIONS } from './migrations-events.js';
import { WEBHOOK_MIGRATIONS } from './migrations-webhook.js';

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const MIGRATIONS: Migration[] = [
  {
    version: 1,
    name: 'core: runs, states, events, attempts, artifacts, webhook deliveries',
    sql: `
CREATE TABLE runs (
  run_id TEXT PRIMARY KEY,
  owner TEXT NOT NULL,
  repo TEXT NOT NULL,
  prompt_version TEXT NOT NULL,
  mode TEXT NOT NULL DEFAULT 'push_only',
  budget_json TEXT NOT NULL DEFAULT '{}',
  workspace_dir TEXT NOT NULL,
  pr_number INTEGER,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE INDEX runs_repo ON runs(owner, repo);

CREATE TABLE run_states (
  run_id TEXT PRIMARY KEY REFERENCES runs(run_id) ON DELETE CASCADE,
  current_state TEXT NOT NULL,
  last_error TEXT,
  updated_at TEXT NOT NULL
);
CREATE INDEX run_states_state ON run_states(current_state);

CREATE TABLE events (
  event_id INTEGER PRIMARY KEY AUTOINCREMENT,
  run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
  event_type TEXT NOT NULL,
  idempotency_key TEXT NOT NULL,
  payload_json TEXT NOT NULL,
  from_state TEXT,
  to_state TEXT NOT NULL,
  outcome TEXT NOT NULL,
  note TEXT,
  created_at TEXT NOT NULL,
  UNIQUE (run_id, idempotency_key)
);
CREATE INDEX events_run ON events(run_id, event_id);

CREATE TABLE step_attempts (
  attempt_id INTEGER PRIMARY KEY AUTOINCREMENT,
  run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
  step TEXT NOT NULL,
  attempt_no INTEGER NOT NULL,
  status TEXT NOT NULL DEFAULT 'running',
  exit_code INTEGER,
  reason_code TEXT,
  stdout_log TEXT,
  stderr_log TEXT,
  duration_ms INTEGER,
  metadata_json TEXT NOT NULL DEFAULT '{}',
  started_at TEXT NOT NULL,
  finished_at TEXT,
  UNIQUE (run_id, step, attempt_no)
);
CREATE INDEX step_attempts_status ON step_attempts(status);

CREATE TABLE artifacts (
  artifact_id INTEGER PRIMARY KEY AUTOINCREMENT,
  run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
  artifact_type TEXT NOT NULL CHECK (artifact_type IN (
    'contract','branch','task_packet','agent_last_message','agent_event_stream','agent_runtime_report',
    'run_digest','manager_insight','preflight_report','pr_open_request','pr_url')),
  uri TEXT NOT NULL,
  metadata_json TEXT NOT NULL DEFAULT '{}',
  created_at TEXT NOT NULL
);
CREATE INDEX artifacts_run ON artifacts(run_id, artifact_type, artifact_id);

CREATE TABLE webhook_deliveries (
  source TEXT NOT NULL,
  delivery_id TEXT NOT NULL,
  event_type TEXT NOT NULL,
  payload_sha256 TEXT NOT NULL,
  received_at TEXT NOT NULL,
  outcome TEXT NOT NULL,
  PRIMARY KEY (source, delivery_id)
);
`,
  },
  {
    version: 3,
    name: 'github: PR approval records, runs by PR number, ledger without rowid',
    sql: `
CREATE TABLE pr_approvals (
  approval_id INTEGER PRIMARY KEY AUTOINCREMENT,
  run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
  request_id TEXT NOT NULL,
  approved_by TEXT NOT NULL,
  entry TEXT NOT NULL,
  approved_at TEXT NOT NULL,
  head_sha TEXT,
  gate_ok INTEGER NOT NULL,
  gate_json TEXT NOT NULL,
  bypass INTEGER NOT NULL DEFAULT 0,
  pr_number INTEGER NOT NULL,
  pr_url TEXT NOT NULL,
  pr_existing INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX pr_approvals_run ON pr_approvals(run_id, approval_id);
-- The webhook finds runs by PR number on every delivery.
CREATE INDEX runs_pr_number ON runs(pr_number) WHERE pr_number IS NOT NULL;
-- The delivery ledger is written twice per delivery (reserve, finish); without a rowid each write
-- touches one B-tree instead of the table plus its primary-key index.
CREATE TABLE webhook_deliveries_v3 (
  source TEXT NOT NULL,
  delivery_id TEXT NOT NULL,
  event_type TEXT NOT NULL,
  payload_sha256 TEXT NOT NULL,
  received_at TEXT NOT NULL,
  outcome TEXT NOT NULL,
  PRIMARY KEY (source, delivery_id)
) WITHOUT ROWID;
INSERT INTO webhook_deliveries_v3 SELECT source, delivery_id, event_type, payload_sha256, received_at, outcome FROM webhook_deliveries;
DROP TABLE webhook_deliveries;
ALTER TABLE webhook_deliveries_v3 RENAME TO webhook_deliveries;
`,
  },
  {
    version: 4,
    name: 'telegram: processed updates (dedup by bot + update_id)',
    sql: `
CREATE TABLE telegram_updates (
  bot_id INTEGER NOT NULL,
  update_id INTEGER NOT NULL,
  chat_id INTEGER,
  user_id INTEGER,
  status TEXT NOT NULL CHECK (status IN ('claimed', 'done')),
  claimed_by TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 1,
  outcome TEXT,
  received_at TEXT NOT NULL,
  finished_at TEXT,
  PRIMARY KEY (bot_id, update_id)
);
CREATE INDEX telegram_updates_received ON telegram_updates(received_at);
`,
  },
  {
    version: 5,
    name: 'manager: decision records of every tick',
    sql: `
CREATE TABLE manager_decisions (
  decision_id INTEGER PRIMARY KEY AUTOINCREMENT,
  tick_id TEXT NOT NULL,
  run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
  mode TEXT NOT NULL CHECK (mode IN ('rules', 'llm', 'hybrid')),
  dry_run INTEGER NOT NULL DEFAULT 0,
  state TEXT NOT NULL,
  action TEXT NOT NULL,
  tool TEXT,
  args_json TEXT NOT NULL DEFAULT '{}',
  reason TEXT NOT NULL,
  priority TEXT NOT NULL,
  source TEXT NOT NULL CHECK (source IN ('rules', 'model')),
  model_proposal_json TEXT,
  disagreement INTEGER NOT NULL DEFAULT 0,
  executed INTEGER NOT NULL DEFAULT 0,
  outcome TEXT NOT NULL,
  error TEXT,
  created_at TEXT NOT NULL
);
CREATE INDEX manager_decisions_run ON manager_decisions(run_id, decision_id);
CREATE INDEX manager_decisions_tick ON manager_decisions(tick_id);
`,
  },
  ...LEASE_MIGRATIONS,
  {
    // Numbered after the issue that added it, leaving room for parallel branches' migrations.
    version: 15,
    name: 'github: run heads, PR state, pending observations, follow-up queue',
    sql: `
-- Every head the run's PR had (push, link, sync), newest last: checks and statuses are matched by head SHA.
CREATE TABLE run_heads (
  head_id INTEGER PRIMARY KEY AUTOINCREMENT,
  run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
  head_sha TEXT NOT NULL,
  head_owner TEXT,
  head_repo TEXT,
  source TEXT NOT NULL,
  recorded_at TEXT NOT NULL
);
CREATE INDEX run_heads_run ON run_heads(run_id, head_id);
CREATE INDEX run_heads_sha ON run_heads(head_sha);
-- The last time GitHub told us anything about the run's PR (webhook or sync), and the PR's state.
CREATE TABLE run_github (
  run_id TEXT PRIMARY KEY REFERENCES runs(run_id) ON DELETE CASCADE,
  last_observed_at TEXT NOT NULL,
  pr_state TEXT,
  merge_sha TEXT
);
-- GitHub observations that arrived while they did not fit the run's state; applied when they do.
CREATE TABLE pending_observations (
  pending_id INTEGER PRIMARY KEY AUTOINCREMENT,
  run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
  event_type TEXT NOT NULL,
  idempotency_key TEXT NOT NULL,
  payload_json TEXT NOT NULL,
  head_sha TEXT,
  arrived_state TEXT NOT NULL,
  received_at TEXT NOT NULL,
  resolved_at TEXT,
  resolution TEXT,
  UNIQUE (run_id, idempotency_key)
);
CREATE INDEX pending_observations_open ON pending_observations(run_id) WHERE resolved_at IS NULL;
-- Work a webhook delivery asked for (the sync after a green check), done after the answer.
CREATE TABLE github_followups (
  followup_id INTEGER PRIMARY KEY AUTOINCREMENT,
  run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
  kind TEXT NOT NULL CHECK (kind IN ('sync')),
  reason TEXT NOT NULL,
  delivery_id TEXT,
  status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed')),
  attempts INTEGER NOT NULL DEFAULT 0,
  next_at TEXT NOT NULL,
  claimed_by TEXT,
  claimed_at TEXT,
  last_error TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE UNIQUE INDEX github_followups_one_queued ON github_followups(run_id, kind) WHERE status = 'queued';
CREATE INDEX github_followups_due ON github_followups(status, next_at);
`,
  },
  {
    version: 16,
    name: 'artifacts: iteration_packet (what a run iterates on: failed checks, logs, review comments)',
    sql: `
CREATE TABLE artifacts_v16 (
  artifact_id INTEGER PRIMARY KEY AUTOINCREMENT,
  run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
  artifact_type TEXT NOT NULL CHECK (artifact_type IN (
    'contract','branch','task_packet','agent_last_message','agent_event_stream','agent_runtime_report',
    'run_digest','manager_insight','preflight_report','pr_open_request','pr_url','iteration_packet')),
  uri TEXT NOT NULL,
  metadata_json TEXT NOT NULL DEFAULT '{}',
  created_at TEXT NOT NULL
);
INSERT INTO artifacts_v16 SELECT artifact_id, run_id, artifact_type, uri, metadata_json, created_at FROM artifacts;
DROP TABLE artifacts;
ALTER TABLE artifacts_v16 RENAME TO artifacts;
CREATE INDEX artifacts_run ON artifacts(run_id, artifact_type, artifact_id);
`,
  },
  ...EVENT_STATE_MIGRATIONS,
  ...WEBHOOK_MIGRATIONS,
];
