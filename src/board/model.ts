import { existsSync, readFileSync, statSync } from 'node:fs';
import type { App } from '../app.js';
import type { RunView } from '../core/models.js';
import { canTransition, type RunState } from '../core/states.js';
import { decide } from '../manager/rules.js';
import { gatherFacts } from '../manager/facts.js';
import { defaultTarget } from '../manager/default-target.js';
import { artifactFor, attemptNoOf, inspectRun, loadDigestArtifact, type InspectReport } from '../worker/inspect.js';

/**
 * Read-only views for the run board (the MCP App and the browser page at `/`). Nothing here
 * writes; actions go through the registry's tools like any other caller. Confirm tokens of PR
 * requests are never part of a view.
 */

export const BOARD_COLUMNS = [
  { id: 'queued', title: 'Queued', states: ['QUEUED'] },
  { id: 'working', title: 'Working', states: ['DISCOVERY', 'PLAN_READY', 'IMPLEMENTING', 'LOCAL_VALIDATING', 'ITERATING'] },
  { id: 'waiting', title: 'Waiting on CI or review', states: ['CI_WAIT', 'REVIEW_WAIT'] },
  { id: 'person', title: 'Needs a person', states: ['PUSHED', 'PAUSED', 'NEEDS_HUMAN_REVIEW'] },
  { id: 'finished', title: 'Done / failed', states: ['DONE', 'SKIPPED', 'FAILED_RETRYABLE', 'FAILED_TERMINAL'] },
] as const satisfies ReadonlyArray<{ id: string; title: string; states: readonly RunState[] }>;

export type ColumnId = (typeof BOARD_COLUMNS)[number]['id'];

export function columnOf(state: RunState): ColumnId {
  for (const c of BOARD_COLUMNS) if ((c.states as readonly string[]).includes(state)) return c.id;
  return 'finished';
}

/** The board's buttons, each one registry tool. approve-open-pr is not here: it needs the confirm token. */
export type BoardAction = 'pause' | 'resume' | 'retry' | 'request-open-pr';

export interface BoardCard {
  run_id: string;
  owner: string;
  repo: string;
  state: RunState;
  column: ColumnId;
  /** When the run entered its current state (the latest event that moved it; creation otherwise). */
  state_since: string;
  last_error: string | null;
  verdict: { grade: string; reason_code: string; attempt_no: number | null } | null;
  pr: { number: number | null; url: string | null };
  actions: BoardAction[];
  /** The state the manager rules would retry from (FAILED_RETRYABLE runs), else null. */
  retry_target: string | null;
  /** The state a PAUSED run was paused in (resume goes back there), else null. */
  resume_target: string | null;
  updated_at: string;
}

export interface BoardCharts {
  /** Time spent per step over all attempts of the runs shown. */
  stage_time: Array<{ step: string; duration_ms: number; attempts: number }>;
  /** Share of PASS verdicts per repository and day. */
  pass_rate: Array<{ repo: string; points: Array<{ day: string; pass: number; total: number }> }>;
  /** Tokens per agent attempt (newest last). */
  tokens: Array<{ run_id: string; repo: string; attempt_no: number | null; tokens: number }>;
}

export interface BoardSnapshot {
  generated_at: string;
  /** Highest event id when the snapshot was made; a change moves it. */
  version: number;
  total: number;
  columns: Array<{ id: ColumnId; title: string; states: readonly string[] }>;
  cards: BoardCard[];
  charts: BoardCharts;
}

const SAFE_URL = /^https?:\/\/[^\s"'<>]+$/;

/** A link only when it is plain http(s); anything else is shown as text by the page. */
export function safeUrl(u: unknown): string | null {
  return typeof u === 'string' && SAFE_URL.test(u) ? u : null;
}

export function boardVersion(app: App): number {
  const row = app.db.prepare('SELECT MAX(event_id) AS id, (SELECT MAX(artifact_id) FROM artifacts) AS a FROM events').get() as { id: number | null; a: number | null };
  return (row.id ?? 0) * 1_000_000 + (row.a ?? 0);
}

export function actionsFor(run: Pick<RunView, 'state'>): BoardAction[] {
  const s = run.state;
  const out: BoardAction[] = [];
  if (s !== 'PAUSED' && canTransition(s, 'PAUSED')) out.push('pause');
  if (s === 'PAUSED') out.push('resume');
  if (s === 'FAILED_RETRYABLE') out.push('retry');
  if (s === 'PUSHED') out.push('request-open-pr');
  return out;
}

/** The target the manager rules pick for a retry (FAILED_RETRYABLE runs); null when they would not retry. */
export function retryTarget(app: App, runId: string): string | null {
  const facts = gatherFacts(app, { run_id: runId })[0];
  if (!facts) return null;
  const d = decide(facts);
  const target = d.action === 'retry' ? (d.args as Record<string, unknown> | undefined)?.target_state : undefined;
  return typeof target === 'string' ? target : null;
}

/** Where resume goes when the person names no state (the same default the bot and inspect-run use). */
export function resumeTarget(app: App, runId: string): string | null {
  return defaultTarget(app, runId, 'resume')?.state ?? null;
}

function stateSince(app: App, runIds: string[]): Map<string, string> {
  const out = new Map<string, string>();
  if (runIds.length === 0) return out;
  const rows = app.db
    .prepare(
      `SELECT run_id, MAX(created_at) AS at FROM events
       WHERE run_id IN (${runIds.map(() => '?').join(',')}) AND outcome = 'applied' AND (from_state IS NULL OR from_state != to_state)
       GROUP BY run_id`,
    )
    .all(...runIds) as Array<{ run_id: string; at: string }>;
  for (const r of rows) out.set(r.run_id, r.at);
  return out;
}

function latestByRun(app: App, type: string, runIds: string[]): Map<string, { uri: string; metadata: Record<string, unknown>; created_at: string }> {
  const out = new Map<string, { uri: string; metadata: Record<string, unknown>; created_at: string }>();
  if (runIds.length === 0) return out;
  const rows = app.db
    .prepare(
      `SELECT run_id, uri, metadata_json, created_at FROM artifacts WHERE artifact_type = ? AND run_id IN (${runIds.map(() => '?').join(',')})
       ORDER BY artifact_id`,
    )
    .all(type, ...runIds) as Array<{ run_id: string; uri: string; metadata_json: string; created_at: string }>;
  for (const r of rows) {
    let metadata: Record<string, unknown> = {};
    try {
      const parsed: unknown = JSON.parse(r.metadata_json);
      if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) metadata = parsed as Record<string, unknown>;
    } catch {
      // unreadable metadata: the card shows no verdict
    }
    out.set(r.run_id, { uri: r.uri, metadata, created_at: r.created_at });
  }
  return out;
}

const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);
const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

function charts(app: App, runIds: string[]): BoardCharts {
  if (runIds.length === 0) return { stage_time: [], pass_rate: [], tokens: [] };
  const marks = runIds.map(() => '?').join(',');
  const stage = app.db
    .prepare(`SELECT step, COALESCE(SUM(duration_ms), 0) AS ms, COUNT(*) AS n FROM step_attempts WHERE run_id IN (${marks}) GROUP BY step ORDER BY ms DESC`)
    .all(...runIds) as Array<{ step: string; ms: number; n: number }>;
  const digests = app.db
    .prepare(
      `SELECT a.run_id, a.uri, a.metadata_json, a.created_at, r.owner, r.repo FROM artifacts a JOIN runs r ON r.run_id = a.run_id
       WHERE a.artifact_type = 'run_digest' AND a.run_id IN (${marks}) ORDER BY a.artifact_id`,
    )
    .all(...runIds) as Array<{ run_id: string; uri: string; metadata_json: string; created_at: string; owner: string; repo: string }>;
  const byRepo = new Map<string, Map<string, { pass: number; total: number }>>();
  const tokens: BoardCharts['tokens'] = [];
  for (const d of digests) {
    let meta: Record<string, unknown> = {};
    try {
      meta = JSON.parse(d.metadata_json) as Record<string, unknown>;
    } catch {
      continue;
    }
    const repo = `${d.owner}/${d.repo}`;
    const day = d.created_at.slice(0, 10);
    const days = byRepo.get(repo) ?? new Map<string, { pass: number; total: number }>();
    byRepo.set(repo, days);
    const p = days.get(day) ?? { pass: 0, total: 0 };
    p.total++;
    if (meta.grade === 'PASS') p.pass++;
    days.set(day, p);
  }
  // Tokens need the digest files; the newest 60 attempts are enough for a picture.
  for (const d of digests.slice(-60)) {
    if (!existsSync(d.uri) || statSync(d.uri).size > 8 * 1024 * 1024) continue;
    const loaded = loadDigestArtifact({ artifact_id: 0, run_id: d.run_id, artifact_type: 'run_digest', uri: d.uri, metadata: safeJson(d.metadata_json), created_at: d.created_at });
    const u = loaded.digest?.usage;
    if (!u) continue;
    tokens.push({ run_id: d.run_id, repo: `${d.owner}/${d.repo}`, attempt_no: loaded.attempt_no, tokens: u.delta?.total_tokens ?? u.total_tokens });
  }
  return {
    stage_time: stage.map((s) => ({ step: s.step, duration_ms: s.ms, attempts: s.n })),
    pass_rate: [...byRepo].map(([repo, days]) => ({ repo, points: [...days].sort(([a], [b]) => a.localeCompare(b)).map(([day, v]) => ({ day, ...v })) })),
    tokens,
  };
}

function safeJson(text: string): Record<string, unknown> {
  try {
    const v: unknown = JSON.parse(text);
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

export function boardSnapshot(app: App, opts: { limit?: number; owner?: string; repo?: string } = {}): BoardSnapshot {
  const version = boardVersion(app);
  const { runs, total } = app.service.listRuns({ limit: opts.limit ?? 200, owner: opts.owner, repo: opts.repo });
  const ids = runs.map((r) => r.run_id);
  const cards = cardsFor(app, runs);
  return {
    generated_at: new Date().toISOString(),
    version,
    total,
    columns: BOARD_COLUMNS.map((c) => ({ id: c.id, title: c.title, states: c.states })),
    cards,
    charts: charts(app, ids),
  };
}

// ---- one run ------------------------------------------------------------------------------------

export interface RunRound {
  attempt_no: number;
  status: string;
  duration_ms: number | null;
  started_at: string;
  reason_code: string | null;
  verdict: { grade: string; reason_code: string } | null;
  packet: { stage: string | null; skills: string[]; limits: Record<string, unknown> | null; contract: string | null } | null;
}

export interface RunPage {
  generated_at: string;
  version: number;
  card: BoardCard;
  inspect: InspectReport;
  figures: {
    commands: { total: number; failed: number } | null;
    tests: { commands: number; failed: number; min: number } | null;
    changed_files: { files: number; added_lines: number; deleted_lines: number; paths: string[] } | null;
    tokens: { total: number; input: number; cached_input: number; output: number } | null;
  };
  insight: string | null;
  rounds: RunRound[];
  approvals: Array<{ approved_by: string; entry: string; approved_at: string; pr_number: number; pr_url: string | null; gate_ok: boolean; bypass: boolean; head_sha: string | null }>;
  pr_requests: Array<{ request_id: string; requested_by: string | null; created_at: string | null; expires_at: string | null; title: string | null; gate_ok: boolean | null }>;
}

function readSmallText(path: string, max = 256 * 1024): string | null {
  try {
    if (!existsSync(path) || statSync(path).size > max) return null;
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

function packetSummary(path: string): RunRound['packet'] {
  const text = readSmallText(path);
  if (!text) return null;
  const p = safeJson(text);
  const skills = (p.skills as { plan?: Array<{ name?: unknown }> } | undefined)?.plan;
  const contract = p.contract as { relative_path?: unknown } | null | undefined;
  return {
    stage: str(p.stage),
    skills: Array.isArray(skills) ? skills.map((s) => str(s.name)).filter((s): s is string => s !== null) : [],
    limits: p.limits && typeof p.limits === 'object' ? (p.limits as Record<string, unknown>) : null,
    contract: str(contract?.relative_path),
  };
}

export function runPage(app: App, runId: string): RunPage {
  const version = boardVersion(app);
  const report = inspectRun(app, runId);
  const run = report.run;
  const card = cardsFor(app, [run])[0]!;
  const digestArtifact = artifactFor(app, runId, 'run_digest');
  const digest = digestArtifact ? loadDigestArtifact(digestArtifact).digest : null;
  const insightArtifact = artifactFor(app, runId, 'manager_insight');
  const u = digest?.usage;
  const artifacts = app.service.listArtifacts(runId);
  const packets = new Map<number, string>();
  const verdicts = new Map<number, { grade: string; reason_code: string }>();
  for (const a of artifacts) {
    const n = attemptNoOf(a);
    if (n === null) continue;
    if (a.artifact_type === 'task_packet') packets.set(n, a.uri);
    if (a.artifact_type === 'run_digest' && typeof a.metadata.grade === 'string') {
      verdicts.set(n, { grade: a.metadata.grade, reason_code: str(a.metadata.reason_code) ?? '' });
    }
  }
  const rounds: RunRound[] = report.attempts
    .filter((a) => a.step === 'agent')
    .map((a) => ({
      attempt_no: a.attempt_no,
      status: a.status,
      duration_ms: a.duration_ms,
      started_at: a.started_at,
      reason_code: a.reason_code,
      verdict: verdicts.get(a.attempt_no) ?? null,
      packet: packets.has(a.attempt_no) ? packetSummary(packets.get(a.attempt_no)!) : null,
    }));
  return {
    generated_at: new Date().toISOString(),
    version,
    card,
    inspect: report,
    figures: {
      commands: digest ? { total: digest.commands.total, failed: digest.commands.failed } : null,
      tests: digest
        ? { commands: digest.validation.test_command_count, failed: digest.validation.failed_test_command_count, min: digest.validation.min_test_commands }
        : null,
      changed_files: digest?.changes.diff
        ? {
            files: digest.changes.diff.changed_files,
            added_lines: digest.changes.diff.added_lines,
            deleted_lines: digest.changes.diff.deleted_lines,
            paths: digest.changes.diff.files.map((f) => f.path).slice(0, 50),
          }
        : null,
      tokens: u ? { total: u.delta?.total_tokens ?? u.total_tokens, input: u.input_tokens, cached_input: u.cached_input_tokens, output: u.output_tokens } : null,
    },
    insight: insightArtifact ? readSmallText(insightArtifact.uri) : null,
    rounds,
    approvals: app.service.listPrApprovals(runId).map((a) => ({
      approved_by: a.approved_by,
      entry: a.entry,
      approved_at: a.approved_at,
      pr_number: a.pr_number,
      pr_url: safeUrl(a.pr_url),
      gate_ok: a.gate_ok,
      bypass: a.bypass,
      head_sha: a.head_sha,
    })),
    // The confirm token stays out: whoever approves must have been given it by the request.
    pr_requests: artifacts
      .filter((a) => a.artifact_type === 'pr_open_request')
      .map((a) => ({
        request_id: str(a.metadata.request_id) ?? '',
        requested_by: str(a.metadata.requested_by),
        created_at: str(a.metadata.created_at),
        expires_at: str(a.metadata.expires_at),
        title: str(a.metadata.title),
        gate_ok: typeof (a.metadata.gate as { ok?: unknown } | undefined)?.ok === 'boolean' ? ((a.metadata.gate as { ok: boolean }).ok) : null,
      })),
  };
}

function cardsFor(app: App, runs: readonly RunView[]): BoardCard[] {
  const ids = runs.map((r) => r.run_id);
  const since = stateSince(app, ids);
  const digests = latestByRun(app, 'run_digest', ids);
  const prs = latestByRun(app, 'pr_url', ids);
  return runs.map((r) => {
    const d = digests.get(r.run_id);
    const pr = prs.get(r.run_id);
    const grade = str(d?.metadata.grade);
    return {
      run_id: r.run_id,
      owner: r.owner,
      repo: r.repo,
      state: r.state,
      column: columnOf(r.state),
      state_since: since.get(r.run_id) ?? r.created_at,
      last_error: r.last_error,
      verdict: d && grade ? { grade, reason_code: str(d.metadata.reason_code) ?? '', attempt_no: num(d.metadata.attempt_no) } : null,
      pr: { number: r.pr_number ?? num(pr?.metadata.pr_number), url: safeUrl(pr?.uri) },
      actions: actionsFor(r),
      retry_target: r.state === 'FAILED_RETRYABLE' ? retryTarget(app, r.run_id) : null,
      resume_target: r.state === 'PAUSED' ? resumeTarget(app, r.run_id) : null,
      updated_at: r.updated_at,
    };
  });
}
