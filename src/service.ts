import { EventEmitter } from 'node:events';
import { scrubSecrets } from './logger.js';
import { join, resolve } from 'node:path';
import type { Statement } from 'better-sqlite3';
import type { DB } from './store/db.js';
import { decideEffect, defaultIdempotencyKey, validatePayload, type ArtifactType, type EventEffect, type EventType, type Payload, ARTIFACT_TYPES } from './core/events.js';
import { GitHubStore, sameSha, type PendingObservation } from './store/github-store.js';
import { NotFoundError, UserInputError } from './core/errors.js';
import { parseJsonObject } from './core/json.js';
import { newRunId, nowIso } from './core/ids.js';
import {
  OwnerSchema,
  RunIdSchema,
  RepoSchema,
  type ApplyResult,
  type ArtifactView,
  type AttemptView,
  type EventView,
  type RunView,
} from './core/models.js';
import { RunStateSchema, type RunState } from './core/states.js';
import { LeaseHeldError, SqliteLeaseStore, type LeaseStore } from './store/leases.js';
import { currentHolder, holderGone } from './store/holder.js';

/** How long a lease lives without a heartbeat (its holder renews it every third of this). */
export const DEFAULT_LEASE_TTL_MS = 5 * 60_000;

export interface StartAttemptOptions {
  /** Take the run's lease (default true): refused with LeaseHeldError while another step holds it. */
  lease?: boolean;
  /** Checked inside the write transaction before anything is written; throw to refuse. */
  guard?: (run: RunView) => void;
}

export interface CreateRunInput {
  owner: string;
  repo: string;
  prompt_version?: string;
  mode?: string;
  budget?: Record<string, unknown>;
  workspace_dir?: string;
  run_id?: string;
}

export interface ArtifactInput {
  type: ArtifactType;
  uri: string;
  metadata?: Record<string, unknown>;
}

export interface ApplyEventInput {
  run_id: string;
  event_type: string;
  payload?: Payload;
  idempotency_key?: string;
  /** Extra artifacts committed in the same transaction as the event. */
  artifacts?: ArtifactInput[];
}

export interface ListRunsFilter {
  state?: RunState | RunState[];
  owner?: string;
  repo?: string;
  limit?: number;
  offset?: number;
}

export interface FinishAttemptInput {
  status: 'succeeded' | 'failed' | 'timed_out';
  exit_code?: number | null;
  reason_code?: string | null;
  stdout_log?: string | null;
  stderr_log?: string | null;
  duration_ms?: number | null;
  metadata?: Record<string, unknown>;
}

interface RunRow {
  run_id: string;
  owner: string;
  repo: string;
  prompt_version: string;
  mode: string;
  budget_json: string;
  workspace_dir: string;
  pr_number: number | null;
  created_at: string;
  updated_at: string;
  current_state: string;
  last_error: string | null;
}

interface EventRow {
  event_id: number;
  run_id: string;
  event_type: string;
  idempotency_key: string;
  payload_json: string;
  from_state: string | null;
  to_state: string;
  outcome: string;
  note: string | null;
  created_at: string;
}

// updated_at comes from run_states (a view of each run's latest event: its to_state, last_error and
// state_at, the time the state or error last changed), so runs need no second write.
const RUN_SELECT = `SELECT r.run_id, r.owner, r.repo, r.prompt_version, r.mode, r.budget_json, r.workspace_dir, r.pr_number, r.created_at,
  s.updated_at, s.current_state, s.last_error FROM runs r JOIN run_states s ON s.run_id = r.run_id`;

const parseJson = parseJsonObject;

/** The run as the write path reads it: the latest event's state, last error and state_at. */
interface RunStateNow {
  run_id: string;
  state: RunState;
  last_error: string | null;
  state_at: string;
  /** Open GitHub observations wait for a state change (absent: not known, look). */
  has_pending?: boolean;
}

interface StateRow {
  current_state: string;
  last_error: string | null;
  state_at: string;
  dup_id: number | null;
  dup_type: string | null;
  has_pending: number;
}

/** A row whose metadata_json column becomes the view's `metadata` object. */
type WithMetadataJson<V extends { metadata: Record<string, unknown> }> = Omit<V, 'metadata'> & { metadata_json: string };

function withMetadata<V extends { metadata: Record<string, unknown> }>(row: WithMetadataJson<V>): V {
  const { metadata_json, ...rest } = row;
  return { ...rest, metadata: parseJson(metadata_json) } as unknown as V;
}

function toRunView(row: RunRow): RunView {
  return {
    run_id: row.run_id,
    owner: row.owner,
    repo: row.repo,
    state: RunStateSchema.parse(row.current_state),
    last_error: row.last_error,
    prompt_version: row.prompt_version,
    mode: row.mode,
    budget: parseJson(row.budget_json),
    workspace_dir: row.workspace_dir,
    pr_number: row.pr_number,
    created_at: row.created_at,
    updated_at: row.updated_at,
  };
}

function describePending(p: PendingObservation): string {
  const detail = p.event_type === 'github.check.completed' ? ` ${String(p.payload.conclusion)}` : p.event_type === 'github.review.submitted' ? ` ${String(p.payload.state)}` : '';
  return `${p.event_type}${detail} (arrived in ${p.arrived_state})`;
}

function toEventView(row: EventRow): EventView {
  return { ...row, payload: parseJson(row.payload_json) };
}

export interface TelegramUpdateClaimInput {
  bot_id: number;
  update_id: number;
  chat_id?: number;
  user_id?: number;
  /** Identifies this bot process, so its own in-flight claim is not mistaken for a crashed one. */
  claimer: string;
}

export type TelegramUpdateClaim =
  | { status: 'new' }
  | { status: 'duplicate'; outcome: string | null; previous_claimer: string }
  | { status: 'reclaimed'; previous_claimer: string; attempts: number };

export interface DeliveryInput {
  source: string;
  delivery_id: string;
  event_type: string;
  /** The body's fingerprint: `hmac-sha256:<hex>` (the verified signature) or `sha256:<hex>` (unsigned). */
  payload_digest: string;
}

export interface PrApprovalInput {
  request_id: string;
  approved_by: string;
  entry: string;
  approved_at: string;
  head_sha: string | null;
  gate_ok: boolean;
  gate: Record<string, unknown>;
  bypass: boolean;
  pr_url: string;
  pr_existing: boolean;
}

export interface LinkPrWithApprovalInput {
  run_id: string;
  pr_number: number;
  idempotency_key: string;
  pr_url_artifact: ArtifactInput;
  approval: PrApprovalInput;
  /** The PR's head commit and the repository it lives in, recorded as the run's head. */
  head?: { head_sha: string; head_owner: string | null; head_repo: string | null };
}

export interface PrApprovalView extends Omit<PrApprovalInput, 'gate'> {
  approval_id: number;
  run_id: string;
  pr_number: number;
  gate: Record<string, unknown>;
}

interface PrApprovalRow {
  approval_id: number;
  run_id: string;
  request_id: string;
  approved_by: string;
  entry: string;
  approved_at: string;
  head_sha: string | null;
  gate_ok: number;
  gate_json: string;
  bypass: number;
  pr_number: number;
  pr_url: string;
  pr_existing: number;
}

function toPrApprovalView(row: PrApprovalRow): PrApprovalView {
  return {
    approval_id: row.approval_id,
    run_id: row.run_id,
    request_id: row.request_id,
    approved_by: row.approved_by,
    entry: row.entry,
    approved_at: row.approved_at,
    head_sha: row.head_sha,
    gate_ok: row.gate_ok === 1,
    gate: parseJson(row.gate_json),
    bypass: row.bypass === 1,
    pr_number: row.pr_number,
    pr_url: row.pr_url,
    pr_existing: row.pr_existing === 1,
  };
}

/** One manager decision as stored (migration 5); `args` and `model_proposal` are JSON objects. */
export interface ManagerDecisionInput {
  tick_id: string;
  run_id: string;
  mode: 'rules' | 'llm' | 'hybrid';
  dry_run: boolean;
  state: string;
  action: string;
  tool: string | null;
  args: Record<string, unknown>;
  reason: string;
  priority: string;
  source: 'rules' | 'model';
  model_proposal: Record<string, unknown> | null;
  disagreement: boolean;
  executed: boolean;
  outcome: string;
  error: string | null;
}

export interface ManagerDecisionView extends ManagerDecisionInput {
  decision_id: number;
  created_at: string;
}

interface ManagerDecisionRow {
  decision_id: number;
  tick_id: string;
  run_id: string;
  mode: ManagerDecisionInput['mode'];
  dry_run: number;
  state: string;
  action: string;
  tool: string | null;
  args_json: string;
  reason: string;
  priority: string;
  source: ManagerDecisionInput['source'];
  model_proposal_json: string | null;
  disagreement: number;
  executed: number;
  outcome: string;
  error: string | null;
  created_at: string;
}

function toManagerDecisionView(row: ManagerDecisionRow): ManagerDecisionView {
  return {
    decision_id: row.decision_id,
    tick_id: row.tick_id,
    run_id: row.run_id,
    mode: row.mode,
    dry_run: row.dry_run === 1,
    state: row.state,
    action: row.action,
    tool: row.tool,
    args: parseJson(row.args_json),
    reason: row.reason,
    priority: row.priority,
    source: row.source,
    model_proposal: row.model_proposal_json === null ? null : parseJson(row.model_proposal_json),
    disagreement: row.disagreement === 1,
    executed: row.executed === 1,
    outcome: row.outcome,
    error: row.error,
    created_at: row.created_at,
  };
}

export type ServiceEvents = {
  event: [ApplyResult];
  artifact: [ArtifactView];
  run: [RunView];
};

/**
 * The only writer. Every write is one `BEGIN IMMEDIATE` transaction, so two processes sharing the
 * database file serialize on the write lock (waiting out the busy timeout) instead of interleaving.
 */
export class Service extends EventEmitter<ServiceEvents> {
  readonly db: DB;
  readonly workspaceRoot: string;
  /** Heads, PR state, pending observations and the follow-up queue of each run's pull request. */
  readonly github: GitHubStore;
  private readonly st: Record<string, Statement>;
  private readonly tx: { immediate: <T>(fn: () => T) => T };
  /** Run leases: one active step per run, across processes. */
  readonly leases: LeaseStore;
  readonly leaseTtlMs: number;
  private readonly heldAttempts = new Set<number>();
  /**
   * The state each run's latest event left, as this connection wrote or read it, with the
   * connection's data_version at the time: valid while no other connection has committed.
   */
  private readonly known = new Map<string, { state: RunState; last_error: string | null; state_at: string; has_pending: boolean; version: number }>();
  private heartbeatTimer: NodeJS.Timeout | undefined;

  constructor(db: DB, opts: { workspaceRoot: string; leaseTtlMs?: number }) {
    super();
    this.db = db;
    this.workspaceRoot = resolve(opts.workspaceRoot);
    this.github = new GitHubStore(db);
    this.leases = new SqliteLeaseStore(db);
    this.leaseTtlMs = opts.leaseTtlMs ?? DEFAULT_LEASE_TTL_MS;
    // One transaction wrapper made once; each write passes its body in.
    const wrapper = db.transaction((fn: () => unknown) => fn());
    this.tx = { immediate: <T>(fn: () => T) => wrapper.immediate(fn) as T };
    this.st = {
      // The run's latest event carries its state; the duplicate key and whether GitHub observations
      // wait for a state change come in the same read.
      stateAndDuplicate: db.prepare(`SELECT s.to_state AS current_state, s.last_error, COALESCE(s.state_at, s.created_at) AS state_at,
        d.event_id AS dup_id, d.event_type AS dup_type,
        EXISTS (SELECT 1 FROM pending_observations p WHERE p.run_id = s.run_id AND p.resolved_at IS NULL) AS has_pending
        FROM events s LEFT JOIN events d ON d.run_id = s.run_id AND d.idempotency_key = ?
        WHERE s.event_id = (SELECT MAX(x.event_id) FROM events x WHERE x.run_id = ?)`),
      getRun: db.prepare(`${RUN_SELECT} WHERE r.run_id = ?`),
      eventByKey: db.prepare(`SELECT event_id FROM events WHERE run_id = ? AND idempotency_key = ?`),
      dupByKey: db.prepare(`SELECT event_id, event_type FROM events WHERE run_id = ? AND idempotency_key = ?`),
      // Changes when another connection commits (this connection's own commits leave it alone).
      dataVersion: db.prepare('PRAGMA data_version').pluck(),
      insertRun: db.prepare(`INSERT INTO runs (run_id, owner, repo, prompt_version, mode, budget_json, workspace_dir, pr_number, created_at, updated_at)
        VALUES (@run_id, @owner, @repo, @prompt_version, @mode, @budget_json, @workspace_dir, NULL, @now, @now)`),
      insertEvent: db.prepare(`INSERT INTO events (run_id, event_type, idempotency_key, payload_json, from_state, to_state, outcome, note, created_at, last_error, state_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
      setPr: db.prepare(`UPDATE runs SET pr_number = ?, updated_at = ? WHERE run_id = ?`),
      insertArtifact: db.prepare(`INSERT INTO artifacts (run_id, artifact_type, uri, metadata_json, created_at) VALUES (?, ?, ?, ?, ?)`),
      getArtifact: db.prepare(`SELECT * FROM artifacts WHERE artifact_id = ?`),
      lastEventId: db.prepare(`SELECT MAX(event_id) AS id FROM events WHERE run_id = ?`),
      maxAttempt: db.prepare(`SELECT MAX(attempt_no) AS n FROM step_attempts WHERE run_id = ? AND step = ?`),
      insertAttempt: db.prepare(`INSERT INTO step_attempts (run_id, step, attempt_no, status, metadata_json, started_at) VALUES (?, ?, ?, 'running', ?, ?)`),
      getAttempt: db.prepare(`SELECT * FROM step_attempts WHERE attempt_id = ?`),
      finishAttempt: db.prepare(`UPDATE step_attempts SET status = @status, exit_code = @exit_code, reason_code = @reason_code,
        stdout_log = @stdout_log, stderr_log = @stderr_log, duration_ms = @duration_ms, metadata_json = @metadata_json, finished_at = @now
        WHERE attempt_id = @attempt_id`),
    };
  }

  private remember(run: RunStateNow, version: number): void {
    if (this.known.size >= 10_000 && !this.known.has(run.run_id)) this.known.clear();
    this.known.set(run.run_id, { state: run.state, last_error: run.last_error, state_at: run.state_at, has_pending: run.has_pending !== false, version });
  }

  /** Runs fn in one IMMEDIATE transaction (nested calls join the outer one). */
  transaction<T>(fn: () => T): T {
    if (this.db.inTransaction) return fn();
    return this.tx.immediate(fn);
  }

  // ---- runs ---------------------------------------------------------------------------------

  createRun(input: CreateRunInput): RunView {
    const owner = OwnerSchema.parse(input.owner);
    const repo = RepoSchema.parse(input.repo);
    const runId = input.run_id !== undefined ? RunIdSchema.parse(input.run_id) : newRunId();
    // Each run has its own tree: two owners with the same repo name, or two runs of one repository,
    // never share a clone. Runs created before keep the workspace they recorded.
    const workspace = resolve(input.workspace_dir ?? join(this.workspaceRoot, owner, repo, runId));
    const now = nowIso();
    const view = this.transaction(() => {
      if (this.st.getRun.get(runId)) throw new UserInputError(`run ${runId} already exists`);
      this.st.insertRun.run({
        run_id: runId,
        owner,
        repo,
        prompt_version: input.prompt_version ?? 'v1',
        mode: input.mode ?? 'push_only',
        budget_json: JSON.stringify(input.budget ?? {}),
        workspace_dir: workspace,
        now,
      });
      const payload = { owner, repo, prompt_version: input.prompt_version ?? 'v1', mode: input.mode ?? 'push_only' };
      // The first event is the run's first state (QUEUED).
      this.st.insertEvent.run(runId, 'command.run.create', defaultIdempotencyKey('command.run.create', runId, payload), JSON.stringify(payload), null, 'QUEUED', 'applied', null, now, null, now);
      return this.getRun(runId);
    });
    this.emit('run', view);
    return view;
  }

  getRun(runId: string): RunView {
    const row = this.st.getRun.get(runId) as RunRow | undefined;
    if (!row) throw new NotFoundError(`unknown run '${runId}'; list runs with list-runs`);
    return toRunView(row);
  }

  findRun(runId: string): RunView | undefined {
    const row = this.st.getRun.get(runId) as RunRow | undefined;
    return row ? toRunView(row) : undefined;
  }

  listRuns(filter: ListRunsFilter = {}): { runs: RunView[]; total: number } {
    const where: string[] = [];
    const params: unknown[] = [];
    const states = filter.state === undefined ? [] : Array.isArray(filter.state) ? filter.state : [filter.state];
    if (states.length) {
      where.push(`s.current_state IN (${states.map(() => '?').join(',')})`);
      params.push(...states);
    }
    if (filter.owner) {
      where.push('lower(r.owner) = lower(?)');
      params.push(filter.owner);
    }
    if (filter.repo) {
      where.push('lower(r.repo) = lower(?)');
      params.push(filter.repo);
    }
    const clause = where.length ? ` WHERE ${where.join(' AND ')}` : '';
    const total = (this.db.prepare(`SELECT COUNT(*) AS n FROM runs r JOIN run_states s ON s.run_id = r.run_id${clause}`).get(...params) as { n: number }).n;
    const rows = this.db
      .prepare(`${RUN_SELECT}${clause} ORDER BY r.created_at DESC, r.rowid DESC LIMIT ? OFFSET ?`)
      .all(...params, filter.limit ?? 50, filter.offset ?? 0) as RunRow[];
    return { runs: rows.map(toRunView), total };
  }

  // ---- events -------------------------------------------------------------------------------

  /** Id of the run's latest event, used by command tools to key a command on what the caller saw. */
  lastEventId(runId: string): number {
    return ((this.st.lastEventId.get(runId) as { id: number | null }).id ?? 0);
  }

  /** The run's latest event row (type, key and stored payload), or undefined for a run without events. */
  lastEvent(runId: string): { event_id: number; event_type: string; idempotency_key: string; payload: Record<string, unknown> } | undefined {
    const row = this.db
      .prepare(`SELECT event_id, event_type, idempotency_key, payload_json FROM events WHERE run_id = ? ORDER BY event_id DESC LIMIT 1`)
      .get(runId) as { event_id: number; event_type: string; idempotency_key: string; payload_json: string } | undefined;
    if (!row) return undefined;
    return { event_id: row.event_id, event_type: row.event_type, idempotency_key: row.idempotency_key, payload: JSON.parse(row.payload_json) as Record<string, unknown> };
  }

  applyEvent(input: ApplyEventInput): ApplyResult {
    const { type, payload } = validatePayload(input.event_type, input.payload);
    if (input.idempotency_key !== undefined && (input.idempotency_key.length === 0 || input.idempotency_key.length > 512)) {
      throw new UserInputError('idempotency_key must be 1 to 512 characters');
    }
    for (const a of input.artifacts ?? []) {
      if (!ARTIFACT_TYPES.includes(a.type)) throw new UserInputError(`unknown artifact type '${a.type}'; allowed: ${ARTIFACT_TYPES.join(', ')}`);
    }
    const key = input.idempotency_key ?? defaultIdempotencyKey(type, input.run_id, payload);
    const newArtifacts: ArtifactView[] = [];
    const drained: ApplyResult[] = [];
    // Inside a caller's transaction (which may still roll back) the state is always read and the
    // remembered state of the run is forgotten; on its own, the write may use what it remembers.
    const outer = this.db.inTransaction;
    if (outer) this.known.delete(input.run_id);
    const after = { state_at: '' };
    let version = 0;
    const result = this.transaction((): ApplyResult => {
      let run: RunStateNow;
      let dup: { dup_id: number; dup_type: string } | undefined;
      version = outer ? 0 : (this.st.dataVersion.get() as number);
      const known = outer ? undefined : this.known.get(input.run_id);
      if (known && known.version === version) {
        // No other connection committed since this one wrote the run's latest event (the write lock
        // is held now, so none can): its state is the one remembered. Only the key is looked up.
        run = { run_id: input.run_id, state: known.state, last_error: known.last_error, state_at: known.state_at, has_pending: known.has_pending };
        const d = this.st.dupByKey.get(input.run_id, key) as { event_id: number; event_type: string } | undefined;
        if (d) dup = { dup_id: d.event_id, dup_type: d.event_type };
      } else {
        // The state and the duplicate check in one statement.
        const current = this.st.stateAndDuplicate.get(key, input.run_id) as StateRow | undefined;
        if (!current) throw new NotFoundError(`unknown run '${input.run_id}'; list runs with list-runs`);
        run = { run_id: input.run_id, state: current.current_state as RunState, last_error: current.last_error, state_at: current.state_at, has_pending: current.has_pending === 1 };
        if (current.dup_id !== null) dup = { dup_id: current.dup_id, dup_type: current.dup_type ?? type };
        after.state_at = run.state_at;
        if (!outer) this.remember(run, version);
      }
      if (dup) {
        return {
          run_id: run.run_id,
          event_id: dup.dup_id,
          event_type: dup.dup_type,
          idempotency_key: key,
          duplicate: true,
          outcome: 'duplicate',
          from_state: run.state,
          state: run.state,
          last_error: run.last_error,
          note: `duplicate of event ${dup.dup_id}; nothing changed`,
        };
      }
      return this.insertEffect(run, type, payload, key, input.artifacts ?? [], newArtifacts, drained, true, after);
    });
    if (!outer && !result.duplicate) {
      // Committed: remember the state this write left, unless GitHub observations wait (or were
      // applied) for the run, which the next write must read.
      const simple = result.idempotency_key === key && drained.length === 0;
      const prev = this.known.get(input.run_id);
      if (simple && prev && prev.version === version && !prev.has_pending) {
        this.remember({ run_id: input.run_id, state: result.state, last_error: result.last_error, state_at: after.state_at, has_pending: false }, version);
      } else this.known.delete(input.run_id);
    }
    this.emit('event', result);
    for (const r of drained) this.emit('event', r);
    for (const a of newArtifacts) this.emit('artifact', a);
    return result;
  }

  /** What applying the event would do now, without writing anything (sync-github --dry-run). */
  previewEvent(input: { run_id: string; event_type: string; payload: Payload; idempotency_key: string }): { outcome: ApplyResult['outcome']; from_state: RunState; to_state: RunState; note: string | null } {
    const { type, payload } = validatePayload(input.event_type, input.payload);
    const current = this.st.stateAndDuplicate.get(input.idempotency_key, input.run_id) as StateRow | undefined;
    if (!current) throw new NotFoundError(`unknown run '${input.run_id}'; list runs with list-runs`);
    const from = current.current_state as RunState;
    if (current.dup_id !== null) return { outcome: 'duplicate', from_state: from, to_state: from, note: `already applied as event ${current.dup_id}` };
    const eff = this.olderHead(input.run_id, type, payload) ?? decideEffect(from, type, payload, current.last_error);
    return { outcome: eff.outcome, from_state: from, to_state: eff.outcome === 'ignored' ? from : eff.to, note: eff.note ?? null };
  }

  /**
   * Decides and records one event for a run whose state was just read (inside the caller's
   * transaction): the event row, the state, the artifacts, the PR head it names, and, when the
   * state moved, the pending GitHub observations that now fit.
   */
  private insertEffect(
    run: RunStateNow,
    type: EventType,
    payload: Payload,
    key: string,
    extraArtifacts: ArtifactInput[],
    newArtifacts: ArtifactView[],
    drained: ApplyResult[],
    drain: boolean,
    /** Receives the state_at the event recorded (drainPending carries it to the next event). */
    after?: { state_at: string },
  ): ApplyResult {
    const effect = this.olderHead(run.run_id, type, payload) ?? decideEffect(run.state, type, payload, run.last_error);
    let storedKey = key;
    if (effect.pending) {
      // Stored under its own key, so the observation applied later (under `key`) is not a duplicate of this record.
      storedKey = `${key}:pending:${run.state}`;
      const seen = this.st.eventByKey.get(run.run_id, storedKey) as { event_id: number } | undefined;
      if (seen) {
        return { run_id: run.run_id, event_id: seen.event_id, event_type: type, idempotency_key: storedKey, duplicate: true, outcome: 'duplicate', from_state: run.state, state: run.state, last_error: run.last_error, note: `duplicate of event ${seen.event_id} (still pending); nothing changed` };
      }
      this.github.addPending(run.run_id, type, key, payload, run.state);
    }
    const now = nowIso();
    let lastError = run.last_error;
    // last_error is shown everywhere (Telegram, MCP, the manager model): never a credential.
    if (effect.outcome !== 'ignored' && effect.lastError !== undefined) lastError = effect.lastError === null ? null : scrubSecrets(effect.lastError);
    const state = effect.outcome === 'ignored' ? run.state : effect.to;
    const stateAt = effect.outcome !== 'ignored' && (state !== run.state || lastError !== run.last_error || effect.prNumber !== undefined) ? now : run.state_at;
    // The event row is the run's new state: to_state (the state it leaves the run in; an ignored
    // event's is the state it found), the last error, and when either last changed.
    const info = this.st.insertEvent.run(run.run_id, type, storedKey, JSON.stringify(payload), run.state, state, effect.outcome, effect.note ?? null, now, lastError, stateAt);
    if (after) after.state_at = stateAt;
    if (type.startsWith('github.')) {
      const merged = type === 'github.pr.merged';
      this.github.touchObserved(run.run_id, merged || type === 'github.pr.closed' || type === 'github.pr.reopened'
        ? { pr_state: merged ? 'merged' : type === 'github.pr.closed' ? 'closed' : 'open', merge_sha: merged && typeof payload.merge_sha === 'string' ? payload.merge_sha : null }
        : undefined);
    }
    if (effect.outcome !== 'ignored') {
      if (effect.prNumber !== undefined) this.st.setPr.run(effect.prNumber, now, run.run_id);
      const artifacts = [...(effect.artifact ? [effect.artifact] : []), ...extraArtifacts];
      for (const a of artifacts) newArtifacts.push(this.insertArtifact(run.run_id, a));
      this.recordHeadOf(run.run_id, type, payload);
    }
    let note = effect.note ?? null;
    if (drain && state !== run.state && run.has_pending !== false) {
      const shown = this.drainPending({ run_id: run.run_id, state, last_error: lastError, state_at: stateAt }, run.state === 'PAUSED', newArtifacts, drained);
      if (shown) note = note ? `${note}; ${shown}` : shown;
    }
    const last = drained.at(-1);
    return {
      run_id: run.run_id,
      event_id: Number(info.lastInsertRowid),
      event_type: type,
      idempotency_key: storedKey,
      duplicate: false,
      outcome: effect.outcome,
      from_state: run.state,
      state: last ? last.state : state,
      last_error: last ? last.last_error : lastError,
      note,
    };
  }

  /** A check result for a commit that is no longer the run's head moves nothing. */
  private olderHead(runId: string, type: EventType, payload: Payload): EventEffect | undefined {
    if (type !== 'github.check.completed' || typeof payload.head_sha !== 'string' || !payload.head_sha) return undefined;
    const head = this.github.currentHead(runId);
    if (!head || sameSha(head.head_sha, payload.head_sha)) return undefined;
    const state = (this.st.getRun.get(runId) as RunRow).current_state as RunState;
    return { outcome: 'ignored', to: state, note: `result for ${payload.head_sha.slice(0, 12)}, an older head (the PR head is ${head.head_sha.slice(0, 12)})` };
  }

  /** Pushes and links name the PR's head: the commit later checks are matched against. */
  private recordHeadOf(runId: string, type: EventType, payload: Payload): void {
    const sha = typeof payload.head_sha === 'string' && payload.head_sha ? payload.head_sha : undefined;
    if (type === 'worker.push.completed' && sha) this.github.recordHead(runId, sha, 'push');
    if (type === 'command.pr.linked') {
      const owner = typeof payload.head_owner === 'string' ? payload.head_owner : null;
      const repo = typeof payload.head_repo === 'string' ? payload.head_repo : null;
      const known = sha ?? this.github.currentHead(runId)?.head_sha;
      if (known) this.github.recordHead(runId, known, 'link', owner, repo);
    }
  }

  /**
   * Applies the run's pending GitHub observations that fit its new state, oldest first, each under
   * its own key (a check for a head that is no longer current is dropped). Returns what to show.
   */
  private drainPending(
    start: RunStateNow,
    fromPause: boolean,
    newArtifacts: ArtifactView[],
    drained: ApplyResult[],
  ): string | undefined {
    const shown: string[] = [];
    let cur = { ...start };
    for (let progressed = true; progressed; ) {
      progressed = false;
      for (const p of this.github.openPending(cur.run_id)) {
        const what = describePending(p);
        const head = this.github.currentHead(cur.run_id);
        if (p.head_sha && head && !sameSha(p.head_sha, head.head_sha)) {
          this.github.resolvePending(p.pending_id, `ignored: for ${p.head_sha.slice(0, 12)}, no longer the head`);
          shown.push(`${what} dropped (for an older head)`);
          continue;
        }
        if (this.st.eventByKey.get(cur.run_id, p.idempotency_key)) {
          this.github.resolvePending(p.pending_id, 'duplicate: applied already');
          continue;
        }
        const type = p.event_type as EventType;
        const probe = decideEffect(cur.state, type, p.payload, cur.last_error);
        if (probe.pending) continue;
        this.github.resolvePending(p.pending_id, `${probe.outcome} in ${cur.state}`);
        const after = { state_at: cur.state_at };
        const r = this.insertEffect(cur, type, p.payload, p.idempotency_key, [], newArtifacts, drained, false, after);
        drained.push(r);
        shown.push(r.state !== r.from_state ? `${what} applied: ${r.from_state} -> ${r.state}` : `${what} recorded (${r.outcome})`);
        if (r.state !== cur.state) {
          cur = { run_id: cur.run_id, state: r.state, last_error: r.last_error, state_at: after.state_at };
          progressed = true;
          break;
        }
        // The run's state is the latest event's: the next one starts from what this one left.
        cur = { ...cur, last_error: r.last_error, state_at: after.state_at };
      }
    }
    if (fromPause) {
      const still = this.github.openPending(cur.run_id).map(describePending);
      if (still.length) shown.push(`still pending: ${still.join(', ')}`);
    }
    return shown.length ? `GitHub observations kept while ${fromPause ? 'PAUSED' : 'busy'}: ${shown.join('; ')}` : undefined;
  }


  listEvents(runId: string, opts: { limit?: number; afterId?: number; newestFirst?: boolean } = {}): EventView[] {
    this.getRun(runId);
    const order = opts.newestFirst ? 'DESC' : 'ASC';
    const rows = this.db
      .prepare(`SELECT * FROM events WHERE run_id = ? AND event_id > ? ORDER BY event_id ${order} LIMIT ?`)
      .all(runId, opts.afterId ?? 0, opts.limit ?? 1000) as EventRow[];
    return rows.map(toEventView);
  }

  // ---- artifacts ----------------------------------------------------------------------------

  private insertArtifact(runId: string, a: ArtifactInput): ArtifactView {
    const info = this.st.insertArtifact.run(runId, a.type, a.uri, JSON.stringify(a.metadata ?? {}), nowIso());
    return this.artifactById(Number(info.lastInsertRowid));
  }

  private artifactById(id: number): ArtifactView {
    const row = this.st.getArtifact.get(id) as WithMetadataJson<ArtifactView> | undefined;
    if (!row) throw new NotFoundError(`unknown artifact ${id}`);
    return withMetadata(row);
  }

  addArtifact(runId: string, a: ArtifactInput): ArtifactView {
    if (!ARTIFACT_TYPES.includes(a.type)) throw new UserInputError(`unknown artifact type '${a.type}'; allowed: ${ARTIFACT_TYPES.join(', ')}`);
    const view = this.transaction(() => {
      this.getRun(runId);
      return this.insertArtifact(runId, a);
    });
    this.emit('artifact', view);
    return view;
  }

  listArtifacts(runId: string, type?: ArtifactType | string): ArtifactView[] {
    const rows = (
      type
        ? this.db.prepare(`SELECT * FROM artifacts WHERE run_id = ? AND artifact_type = ? ORDER BY artifact_id`).all(runId, type)
        : this.db.prepare(`SELECT * FROM artifacts WHERE run_id = ? ORDER BY artifact_id`).all(runId)
    ) as Array<WithMetadataJson<ArtifactView>>;
    return rows.map((r) => withMetadata(r));
  }

  latestArtifact(runId: string, type: ArtifactType): ArtifactView | undefined {
    const row = this.db
      .prepare(`SELECT * FROM artifacts WHERE run_id = ? AND artifact_type = ? ORDER BY artifact_id DESC LIMIT 1`)
      .get(runId, type) as WithMetadataJson<ArtifactView> | undefined;
    return row ? withMetadata(row) : undefined;
  }

  // ---- step attempts ------------------------------------------------------------------------

  /**
   * attempt_no = previous max for (run, step) + 1, taken inside the write lock, together with the
   * run's lease: while another live process (or this one) runs a step of the run, the call is
   * refused with LeaseHeldError and nothing is written. A lease left by a holder that is gone is
   * reclaimed and its attempt closed as `lease_reclaimed` in the same transaction.
   */
  startAttempt(runId: string, step: string, metadata: Record<string, unknown> = {}, opts: StartAttemptOptions = {}): AttemptView {
    const attempt = this.transaction(() => {
      const run = this.getRun(runId);
      opts.guard?.(run);
      const prev = (this.st.maxAttempt.get(runId, step) as { n: number | null }).n ?? 0;
      const now = Date.now();
      const info = this.st.insertAttempt.run(runId, step, prev + 1, JSON.stringify(metadata), new Date(now).toISOString());
      const attemptId = Number(info.lastInsertRowid);
      if (opts.lease !== false) {
        const got = this.leases.acquire({ run_id: runId, step, attempt_id: attemptId, holder: currentHolder(), ttl_ms: this.leaseTtlMs, now, gone: (l) => holderGone(l.holder, l.expires_at, now) });
        // Throwing rolls the attempt row back with everything else in this transaction.
        if (!got.ok) throw new LeaseHeldError(got.held, `${step} step`);
        if (got.reclaimed) this.closeReclaimed(got.reclaimed.lease.attempt_id, got.reclaimed.why, now);
      }
      return this.attemptById(attemptId);
    });
    if (opts.lease !== false) this.trackHeld(attempt.attempt_id);
    return attempt;
  }

  private closeReclaimed(attemptId: number, why: string, now: number): void {
    const old = this.attemptById(attemptId);
    if (old.status !== 'running') return;
    const started = Date.parse(old.started_at);
    this.st.finishAttempt.run({
      attempt_id: attemptId,
      status: 'failed',
      exit_code: null,
      reason_code: 'lease_reclaimed',
      stdout_log: old.stdout_log ?? null,
      stderr_log: old.stderr_log ?? null,
      duration_ms: Number.isFinite(started) ? Math.max(0, now - started) : null,
      metadata_json: JSON.stringify({ ...old.metadata, reclaimed: { at: new Date(now).toISOString(), why, by: currentHolder() } }),
      now: new Date(now).toISOString(),
    });
  }

  private trackHeld(attemptId: number): void {
    this.heldAttempts.add(attemptId);
    if (this.heartbeatTimer) return;
    this.heartbeatTimer = setInterval(() => {
      try {
        if (!this.db.open) return this.stopHeartbeat();
        this.leases.heartbeat(currentHolder(), this.leaseTtlMs, Date.now());
      } catch {
        // A busy database delays one beat; the next one (a third of the TTL later) catches up.
      }
    }, Math.max(50, Math.floor(this.leaseTtlMs / 3)));
    this.heartbeatTimer.unref();
  }

  private untrackHeld(attemptId: number): void {
    this.heldAttempts.delete(attemptId);
    if (this.heldAttempts.size === 0) this.stopHeartbeat();
  }

  private stopHeartbeat(): void {
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = undefined;
  }

  finishAttempt(attemptId: number, input: FinishAttemptInput): AttemptView {
    const view = this.transaction(() => {
      const current = this.attemptById(attemptId);
      this.st.finishAttempt.run({
        attempt_id: attemptId,
        status: input.status,
        exit_code: input.exit_code ?? null,
        reason_code: input.reason_code ?? null,
        stdout_log: input.stdout_log ?? null,
        stderr_log: input.stderr_log ?? null,
        duration_ms: input.duration_ms ?? null,
        metadata_json: JSON.stringify({ ...current.metadata, ...(input.metadata ?? {}) }),
        now: nowIso(),
      });
      this.leases.release(attemptId);
      return this.attemptById(attemptId);
    });
    this.untrackHeld(attemptId);
    return view;
  }

  /**
   * Drops a running attempt that left nothing worth keeping, with its lease, in one transaction: a
   * GitHub sync that recorded no new event (a sync loop would otherwise add a row per run per pass).
   */
  discardAttempt(attemptId: number): void {
    this.transaction(() => {
      this.leases.release(attemptId);
      this.db.prepare(`DELETE FROM step_attempts WHERE attempt_id = ? AND status = 'running'`).run(attemptId);
    });
    this.untrackHeld(attemptId);
  }

  /** Merges `patch` into an attempt's metadata (e.g. the worker's pid once it is spawned). */
  updateAttemptMetadata(attemptId: number, patch: Record<string, unknown>): AttemptView {
    return this.transaction(() => {
      const current = this.attemptById(attemptId);
      this.db.prepare(`UPDATE step_attempts SET metadata_json = ? WHERE attempt_id = ?`).run(JSON.stringify({ ...current.metadata, ...patch }), attemptId);
      return this.attemptById(attemptId);
    });
  }

  attemptById(attemptId: number): AttemptView {
    const row = this.st.getAttempt.get(attemptId) as WithMetadataJson<AttemptView> | undefined;
    if (!row) throw new NotFoundError(`unknown step attempt ${attemptId}`);
    return withMetadata(row);
  }

  listAttempts(runId: string, step?: string): AttemptView[] {
    const rows = (
      step
        ? this.db.prepare(`SELECT * FROM step_attempts WHERE run_id = ? AND step = ? ORDER BY attempt_id`).all(runId, step)
        : this.db.prepare(`SELECT * FROM step_attempts WHERE run_id = ? ORDER BY attempt_id`).all(runId)
    ) as Array<WithMetadataJson<AttemptView>>;
    return rows.map((r) => withMetadata(r));
  }

  /** Whether an applied event changed the run's state after `iso` (an ISO timestamp). */
  stateChangedSince(runId: string, iso: string): boolean {
    return (
      this.db
        .prepare(`SELECT 1 FROM events WHERE run_id = ? AND created_at > ? AND outcome = 'applied' AND from_state IS NOT to_state LIMIT 1`)
        .get(runId, iso) !== undefined
    );
  }

  /** Attempts still marked running (e.g. left behind by a crashed process). */
  runningAttempts(): AttemptView[] {
    const rows = this.db.prepare(`SELECT * FROM step_attempts WHERE status = 'running' ORDER BY attempt_id`).all() as Array<WithMetadataJson<AttemptView>>;
    return rows.map((r) => withMetadata(r));
  }

  // ---- telegram updates (issue 7) -----------------------------------------------------------

  /**
   * Claims a Telegram update before the bot acts on it, in one IMMEDIATE transaction, so a
   * redelivered update (Telegram resends until the offset is confirmed) is acted on once.
   * `new`: first sight. `duplicate`: already handled, or being handled by this claimer.
   * `reclaimed`: claimed earlier by another process that never finished it (a crash or restart).
   */
  claimTelegramUpdate(input: TelegramUpdateClaimInput): TelegramUpdateClaim {
    return this.transaction((): TelegramUpdateClaim => {
      const row = this.db
        .prepare(`SELECT status, claimed_by, outcome, attempts FROM telegram_updates WHERE bot_id = ? AND update_id = ?`)
        .get(input.bot_id, input.update_id) as { status: 'claimed' | 'done'; claimed_by: string; outcome: string | null; attempts: number } | undefined;
      if (!row) {
        this.db
          .prepare(`INSERT INTO telegram_updates (bot_id, update_id, chat_id, user_id, status, claimed_by, received_at) VALUES (?, ?, ?, ?, 'claimed', ?, ?)`)
          .run(input.bot_id, input.update_id, input.chat_id ?? null, input.user_id ?? null, input.claimer, nowIso());
        return { status: 'new' };
      }
      if (row.status === 'done' || row.claimed_by === input.claimer) {
        return { status: 'duplicate', outcome: row.outcome, previous_claimer: row.claimed_by };
      }
      this.db
        .prepare(`UPDATE telegram_updates SET claimed_by = ?, attempts = attempts + 1 WHERE bot_id = ? AND update_id = ?`)
        .run(input.claimer, input.bot_id, input.update_id);
      return { status: 'reclaimed', previous_claimer: row.claimed_by, attempts: row.attempts + 1 };
    });
  }

  /** Marks a claimed Telegram update handled, with the audit outcome. */
  finishTelegramUpdate(botId: number, updateId: number, outcome: string): void {
    this.transaction(() => {
      this.db
        .prepare(`UPDATE telegram_updates SET status = 'done', outcome = ?, finished_at = ? WHERE bot_id = ? AND update_id = ?`)
        .run(outcome, nowIso(), botId, updateId);
    });
  }
  // ---- GitHub: delivery ledger, PR approvals (issue 6) --------------------------------------

  private ghStatements?: Record<string, Statement>;
  private get gh(): Record<string, Statement> {
    this.ghStatements ??= {
      getDelivery: this.db.prepare(`SELECT outcome, received_at FROM webhook_deliveries WHERE source = ? AND delivery_id = ?`),
      insertDelivery: this.db.prepare(`INSERT INTO webhook_deliveries (source, delivery_id, event_type, payload_digest, received_at, outcome)
        VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (source, delivery_id) DO NOTHING`),
      retakeDelivery: this.db.prepare(`UPDATE webhook_deliveries SET event_type = ?, payload_digest = ?, received_at = ?, outcome = ?
        WHERE source = ? AND delivery_id = ?`),
      releaseDelivery: this.db.prepare(`DELETE FROM webhook_deliveries WHERE source = ? AND delivery_id = ? AND outcome = 'reserved'`),
      finishDelivery: this.db.prepare(`UPDATE webhook_deliveries SET outcome = ? WHERE source = ? AND delivery_id = ?`),
      runsByPr: this.db.prepare(`${RUN_SELECT} WHERE r.pr_number = ? AND lower(r.owner) = lower(?) AND lower(r.repo) = lower(?)`),
      insertApproval: this.db.prepare(`INSERT INTO pr_approvals (run_id, request_id, approved_by, entry, approved_at, head_sha, gate_ok, gate_json, bypass, pr_number, pr_url, pr_existing)
        VALUES (@run_id, @request_id, @approved_by, @entry, @approved_at, @head_sha, @gate_ok, @gate_json, @bypass, @pr_number, @pr_url, @pr_existing)`),
      getApproval: this.db.prepare(`SELECT * FROM pr_approvals WHERE approval_id = ?`),
    };
    return this.ghStatements;
  }

  /**
   * Reserve a webhook delivery before processing it. The common case is one INSERT ... ON CONFLICT
   * DO NOTHING, which SQLite runs as its own write transaction (no read-then-write upgrade, so it
   * needs no BEGIN IMMEDIATE); only a repeat takes the IMMEDIATE path below. A reservation left
   * behind by a process that died mid-delivery (still 'reserved' after `staleAfterMs`) is taken
   * over, so a crash does not turn GitHub's redelivery into a permanent duplicate.
   */
  reserveDelivery(
    input: DeliveryInput,
    staleAfterMs = 10 * 60_000,
    /** 'reserved' while processing follows; a final outcome when nothing is left to process (one write). */
    outcome = 'reserved',
  ): { reserved: true } | { reserved: false; outcome: string; received_at: string } {
    if (this.gh.insertDelivery.run(input.source, input.delivery_id, input.event_type, input.payload_digest, nowIso(), outcome).changes === 1) {
      return { reserved: true };
    }
    return this.transaction(() => {
      const existing = this.gh.getDelivery.get(input.source, input.delivery_id) as { outcome: string; received_at: string } | undefined;
      if (!existing) {
        this.gh.insertDelivery.run(input.source, input.delivery_id, input.event_type, input.payload_digest, nowIso(), outcome);
        return { reserved: true as const };
      }
      if (existing.outcome === 'reserved' && Date.parse(existing.received_at) < Date.now() - staleAfterMs) {
        this.gh.retakeDelivery.run(input.event_type, input.payload_digest, nowIso(), outcome, input.source, input.delivery_id);
        return { reserved: true as const };
      }
      return { reserved: false as const, ...existing };
    });
  }

  /** Drop a reservation so the same delivery id is processed when GitHub redelivers it (one statement). */
  releaseDelivery(source: string, deliveryId: string): boolean {
    return this.gh.releaseDelivery.run(source, deliveryId).changes > 0;
  }

  /** Record how a reserved delivery ended (processed, ignored, ...); one statement. */
  finishDelivery(source: string, deliveryId: string, outcome: string): void {
    this.gh.finishDelivery.run(outcome, source, deliveryId);
  }

  /** Delete ledger rows received before `before` (ISO time); reservations in flight are kept. */
  cleanupDeliveries(before: string, source?: string): number {
    return this.transaction(() => {
      const sql = `DELETE FROM webhook_deliveries WHERE received_at < ? AND outcome != 'reserved'${source ? ' AND source = ?' : ''}`;
      return this.db.prepare(sql).run(...(source ? [before, source] : [before])).changes;
    });
  }

  /** Ledger rows per outcome received at or after `since` (ISO time). */
  deliveryCounts(since: string, source?: string): Record<string, number> {
    const sql = `SELECT outcome, COUNT(*) AS n FROM webhook_deliveries WHERE received_at >= ?${source ? ' AND source = ?' : ''} GROUP BY outcome`;
    const rows = this.db.prepare(sql).all(...(source ? [since, source] : [since])) as Array<{ outcome: string; n: number }>;
    return Object.fromEntries(rows.map((r) => [r.outcome, r.n]));
  }

  /** Runs linked to a pull request (owner/repo compared case-insensitively, as GitHub does). */
  findRunsByPr(owner: string, repo: string, prNumber: number): RunView[] {
    const rows = this.gh.runsByPr.all(prNumber, owner, repo) as RunRow[];
    if (rows.length > 1) rows.sort((a, b) => a.created_at.localeCompare(b.created_at) || a.run_id.localeCompare(b.run_id));
    return rows.map(toRunView);
  }

  /**
   * Runs with a linked PR that had `sha` as a head, in `owner/repo` or in the fork the head lives
   * in: how a commit status (which names no PR) and a fork PR's check (whose pull_requests is
   * empty) find their run. Whether `sha` is still the current head is for the caller to judge.
   */
  findRunsByHead(owner: string, repo: string, sha: string): RunView[] {
    const ids = this.github.runsWithHead(owner, repo, sha);
    return ids
      .map((id) => this.findRun(id))
      .filter((r): r is RunView => r !== undefined && r.pr_number !== null)
      .sort((x, y) => x.created_at.localeCompare(y.created_at) || x.run_id.localeCompare(y.run_id));
  }

  /**
   * Link the created PR and store who approved it, in one IMMEDIATE transaction: the
   * command.pr.linked event (-> CI_WAIT) with its pr_url artifact, and the approval row.
   */
  linkPrWithApproval(input: LinkPrWithApprovalInput): { apply: ApplyResult; approval: PrApprovalView } {
    let approvalId = 0;
    const apply = this.transaction(() => {
      const r = this.applyEvent({
        run_id: input.run_id,
        event_type: 'command.pr.linked',
        payload: { pr_number: input.pr_number, ...(input.head ?? {}) },
        idempotency_key: input.idempotency_key,
        artifacts: [input.pr_url_artifact],
      });
      if (r.duplicate) throw new UserInputError(`PR #${input.pr_number} is already linked to ${input.run_id} (event ${r.event_id})`);
      const info = this.gh.insertApproval.run({
        run_id: input.run_id,
        request_id: input.approval.request_id,
        approved_by: input.approval.approved_by,
        entry: input.approval.entry,
        approved_at: input.approval.approved_at,
        head_sha: input.approval.head_sha,
        gate_ok: input.approval.gate_ok ? 1 : 0,
        gate_json: JSON.stringify(input.approval.gate),
        bypass: input.approval.bypass ? 1 : 0,
        pr_number: input.pr_number,
        pr_url: input.approval.pr_url,
        pr_existing: input.approval.pr_existing ? 1 : 0,
      });
      approvalId = Number(info.lastInsertRowid);
      return r;
    });
    return { apply, approval: this.prApprovalById(approvalId) };
  }

  prApprovalById(approvalId: number): PrApprovalView {
    const row = this.gh.getApproval.get(approvalId) as PrApprovalRow | undefined;
    if (!row) throw new NotFoundError(`unknown PR approval ${approvalId}`);
    return toPrApprovalView(row);
  }

  listPrApprovals(runId: string): PrApprovalView[] {
    const rows = this.db.prepare(`SELECT * FROM pr_approvals WHERE run_id = ? ORDER BY approval_id`).all(runId) as PrApprovalRow[];
    return rows.map(toPrApprovalView);
  }

  // ---- manager decisions (issue 8) ----------------------------------------------------------

  /** Stores one tick's decisions in one IMMEDIATE transaction (all or none). */
  recordDecisions(decisions: readonly ManagerDecisionInput[]): number {
    if (decisions.length === 0) return 0;
    const insert = this.db.prepare(`INSERT INTO manager_decisions (tick_id, run_id, mode, dry_run, state, action, tool, args_json, reason,
      priority, source, model_proposal_json, disagreement, executed, outcome, error, created_at)
      VALUES (@tick_id, @run_id, @mode, @dry_run, @state, @action, @tool, @args_json, @reason,
      @priority, @source, @model_proposal_json, @disagreement, @executed, @outcome, @error, @created_at)`);
    const now = nowIso();
    return this.transaction(() => {
      for (const d of decisions) {
        insert.run({
          tick_id: d.tick_id,
          run_id: d.run_id,
          mode: d.mode,
          dry_run: d.dry_run ? 1 : 0,
          state: d.state,
          action: d.action,
          tool: d.tool,
          args_json: JSON.stringify(d.args),
          reason: d.reason,
          priority: d.priority,
          source: d.source,
          model_proposal_json: d.model_proposal === null ? null : JSON.stringify(d.model_proposal),
          disagreement: d.disagreement ? 1 : 0,
          executed: d.executed ? 1 : 0,
          outcome: d.outcome,
          error: d.error,
          created_at: now,
        });
      }
      return decisions.length;
    });
  }

  /** A run's manager decisions, newest first. */
  listDecisions(runId: string, opts: { limit?: number } = {}): ManagerDecisionView[] {
    const rows = this.db
      .prepare(`SELECT * FROM manager_decisions WHERE run_id = ? ORDER BY decision_id DESC LIMIT ?`)
      .all(runId, opts.limit ?? 50) as ManagerDecisionRow[];
    return rows.map(toManagerDecisionView);
  }

  /** The decisions of one tick, in the order they were made. */
  listTickDecisions(tickId: string): ManagerDecisionView[] {
    const rows = this.db.prepare(`SELECT * FROM manager_decisions WHERE tick_id = ? ORDER BY decision_id`).all(tickId) as ManagerDecisionRow[];
    return rows.map(toManagerDecisionView);
  }
}
