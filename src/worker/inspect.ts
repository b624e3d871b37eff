import { existsSync, readFileSync } from 'node:fs';
import type { App } from '../app.js';
import { NotFoundError, UserInputError } from '../core/errors.js';
import type { ArtifactView, AttemptView, EventView, RunView } from '../core/models.js';
import { RunDigestSchema, type RunDigest } from '../analysis/digest.js';
import { activeAgentStep, publicActiveStep } from './active.js';

/**
 * Read-side views over runs, attempts and digests: inspect-run, run-bottlenecks, skills-metrics,
 * skills-feedback and the digest/insight resources. Nothing here writes.
 */

export interface LoadedDigest {
  artifact: ArtifactView;
  attempt_no: number | null;
  digest: RunDigest | null;
  /** Why the digest could not be read (file gone, not a digest). */
  error: string | null;
}

export function attemptNoOf(a: ArtifactView): number | null {
  const n = a.metadata.attempt_no;
  return typeof n === 'number' && Number.isInteger(n) ? n : null;
}

export function readDigestFile(path: string): { digest: RunDigest | null; error: string | null } {
  if (!existsSync(path)) return { digest: null, error: `digest file ${path} no longer exists` };
  try {
    const parsed = RunDigestSchema.safeParse(JSON.parse(readFileSync(path, 'utf8')));
    if (!parsed.success) return { digest: null, error: `digest file ${path} does not match the digest schema: ${parsed.error.issues[0]?.message ?? ''}` };
    return { digest: parsed.data, error: null };
  } catch (err) {
    return { digest: null, error: `cannot read digest ${path}: ${(err as Error).message}` };
  }
}

export function loadDigestArtifact(a: ArtifactView): LoadedDigest {
  const { digest, error } = readDigestFile(a.uri);
  return { artifact: a, attempt_no: attemptNoOf(a) ?? digest?.attempt.no ?? null, digest, error };
}

/** The artifact of a type for one attempt (latest when attemptNo is undefined). */
export function artifactFor(app: App, runId: string, type: 'run_digest' | 'manager_insight', attemptNo?: number): ArtifactView | undefined {
  const all = app.service.listArtifacts(runId, type);
  if (attemptNo === undefined) return all[all.length - 1];
  return [...all].reverse().find((a) => attemptNoOf(a) === attemptNo);
}

export function parseAttemptParam(raw: string | undefined): number | undefined {
  if (raw === undefined || raw === '') return undefined;
  if (!/^[1-9][0-9]{0,8}$/.test(raw)) throw new UserInputError(`attempt must be a positive integer, got '${raw}'`);
  return Number(raw);
}

// ---- inspect-run --------------------------------------------------------------------------------

export interface TimelineEntry {
  at: string;
  kind: 'event' | 'attempt_started' | 'attempt_finished' | 'artifact';
  summary: string;
  ref: Record<string, unknown>;
}

export interface StageTotal {
  attempts: number;
  succeeded: number;
  failed: number;
  running: number;
  duration_ms: number;
  share_pct: number;
}

export interface InspectReport {
  run: RunView;
  active: ReturnType<typeof publicActiveStep> | null;
  timeline: TimelineEntry[];
  attempts: AttemptView[];
  stage_totals: Record<string, StageTotal>;
  latest: {
    attempt_no: number | null;
    grade: string;
    reason_code: string;
    next_action: string;
    evidence: string[];
    recommendation: RunDigest['manager_recommendation'];
    state_before: string | null;
    state_after: string | null;
    digest_uri: string;
    insight_uri: string | null;
  } | null;
  digest_error: string | null;
  decisions: { source: 'manager_decisions' | null; rows: Array<Record<string, unknown>> };
}

const round2 = (n: number) => Math.round(n * 100) / 100;

function attemptFailed(a: AttemptView): boolean {
  return a.status === 'failed' || a.status === 'timed_out' || a.status === 'cancelled';
}

export function stageTotals(attempts: readonly AttemptView[]): Record<string, StageTotal> {
  const totals: Record<string, StageTotal> = {};
  let all = 0;
  for (const a of attempts) {
    const t = (totals[a.step] ??= { attempts: 0, succeeded: 0, failed: 0, running: 0, duration_ms: 0, share_pct: 0 });
    t.attempts++;
    if (a.status === 'running') t.running++;
    else if (attemptFailed(a)) t.failed++;
    else t.succeeded++;
    t.duration_ms += a.duration_ms ?? 0;
    all += a.duration_ms ?? 0;
  }
  for (const t of Object.values(totals)) t.share_pct = all > 0 ? round2((t.duration_ms / all) * 100) : 0;
  return totals;
}

function tableExists(app: App, name: string): boolean {
  return Boolean(app.db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?`).get(name));
}

/** The manager's recorded decisions for the run (migration 5, Service.listDecisions), oldest first. */
export function managerDecisions(app: App, runId: string, limit = 50): InspectReport['decisions'] {
  if (!tableExists(app, 'manager_decisions')) return { source: null, rows: [] };
  return { source: 'manager_decisions', rows: app.service.listDecisions(runId, { limit }).reverse().map((d) => ({ ...d })) };
}

function eventSummary(e: EventView): string {
  if (e.from_state === null) return `${e.event_type}: created in ${e.to_state}`;
  const moved = e.from_state && e.from_state !== e.to_state ? `${e.from_state} -> ${e.to_state}` : `stays ${e.to_state}`;
  const reason = typeof e.payload.reason_code === 'string' ? ` (${e.payload.reason_code})` : '';
  return `${e.event_type}${reason}: ${moved}${e.outcome !== 'applied' ? ` [${e.outcome}]` : ''}`;
}

export function inspectRun(app: App, runId: string, opts: { eventsLimit?: number } = {}): InspectReport {
  const run = app.service.getRun(runId);
  const events = app.service.listEvents(runId, { limit: opts.eventsLimit ?? 1000 });
  const attempts = app.service.listAttempts(runId);
  const artifacts = app.service.listArtifacts(runId);
  const timeline: TimelineEntry[] = [];
  for (const e of events) {
    timeline.push({ at: e.created_at, kind: 'event', summary: eventSummary(e), ref: { event_id: e.event_id, event_type: e.event_type } });
  }
  for (const a of attempts) {
    timeline.push({ at: a.started_at, kind: 'attempt_started', summary: `${a.step}#${a.attempt_no} started`, ref: { attempt_id: a.attempt_id, step: a.step, attempt_no: a.attempt_no } });
    if (a.finished_at) {
      timeline.push({
        at: a.finished_at,
        kind: 'attempt_finished',
        summary: `${a.step}#${a.attempt_no} ${a.status}${a.exit_code !== null ? ` exit ${a.exit_code}` : ''}${a.reason_code ? ` (${a.reason_code})` : ''}${a.duration_ms !== null ? ` in ${a.duration_ms} ms` : ''}`,
        ref: { attempt_id: a.attempt_id, step: a.step, attempt_no: a.attempt_no },
      });
    }
  }
  for (const a of artifacts) {
    timeline.push({ at: a.created_at, kind: 'artifact', summary: `${a.artifact_type} ${a.uri}`, ref: { artifact_id: a.artifact_id, artifact_type: a.artifact_type } });
  }
  const order: Record<TimelineEntry['kind'], number> = { attempt_started: 0, artifact: 1, attempt_finished: 2, event: 3 };
  timeline.sort((x, y) => x.at.localeCompare(y.at) || order[x.kind] - order[y.kind]);

  const digestArtifact = artifactFor(app, runId, 'run_digest');
  let latest: InspectReport['latest'] = null;
  let digestError: string | null = null;
  if (digestArtifact) {
    const loaded = loadDigestArtifact(digestArtifact);
    digestError = loaded.error;
    if (loaded.digest) {
      const d = loaded.digest;
      const insight = artifactFor(app, runId, 'manager_insight', loaded.attempt_no ?? undefined);
      latest = {
        attempt_no: loaded.attempt_no,
        grade: d.classification.grade,
        reason_code: d.classification.reason_code,
        next_action: d.classification.next_action,
        evidence: d.classification.evidence,
        recommendation: d.manager_recommendation,
        state_before: d.state.before,
        state_after: d.state.after,
        digest_uri: digestArtifact.uri,
        insight_uri: insight?.uri ?? null,
      };
    }
  }
  const active = activeAgentStep(app, runId);
  return {
    run,
    active: active ? publicActiveStep(active) : null,
    timeline,
    attempts,
    stage_totals: stageTotals(attempts),
    latest,
    digest_error: digestError,
    decisions: managerDecisions(app, runId),
  };
}

export function renderInspect(r: InspectReport): string {
  const lines = [`${r.run.run_id} ${r.run.owner}/${r.run.repo}: ${r.run.state}${r.run.last_error ? ` (last error: ${r.run.last_error})` : ''}`];
  if (r.active) {
    lines.push(`running: agent#${r.active.attempt_no} for ${Math.round(r.active.elapsed_ms / 1000)} s, ${r.active.lines} stream lines${r.active.latest_command ? `, latest command: ${r.active.latest_command}` : ''}`);
  }
  if (r.latest) {
    lines.push(`latest verdict (agent#${r.latest.attempt_no ?? '?'}): ${r.latest.grade} ${r.latest.reason_code} -> ${r.latest.next_action}; recommendation: ${r.latest.recommendation.action} (${r.latest.recommendation.reason})`);
    for (const e of r.latest.evidence.slice(0, 3)) lines.push(`  - ${e}`);
  } else if (r.digest_error) lines.push(`latest digest unreadable: ${r.digest_error}`);
  const totals = Object.entries(r.stage_totals);
  if (totals.length) {
    lines.push('stage totals:');
    for (const [step, t] of totals.sort((a, b) => b[1].duration_ms - a[1].duration_ms)) {
      lines.push(`  ${step}: ${t.attempts} attempt(s), ${t.failed} failed${t.running ? `, ${t.running} running` : ''}, ${t.duration_ms} ms (${t.share_pct}%)`);
    }
  }
  lines.push(`timeline (${r.timeline.length}):`);
  for (const t of r.timeline.slice(-40)) lines.push(`  ${t.at} ${t.summary}`);
  if (r.decisions.source) {
    lines.push(`manager decisions (${r.decisions.rows.length}${r.decisions.rows.length > 10 ? ', latest 10 shown' : ''}):`);
    for (const d of r.decisions.rows.slice(-10)) {
      const model = d.model_proposal ? ` [model ${d.disagreement ? 'disagreed' : 'proposed'}: ${String((d.model_proposal as { tool?: unknown }).tool ?? 'wait')}]` : '';
      lines.push(`  ${String(d.created_at)} ${String(d.mode)} ${String(d.state)}: ${String(d.action)} ${String(d.outcome)}${model} — ${String(d.reason)}${d.error ? ` (${String(d.error)})` : ''}`);
    }
  }
  return lines.join('\n');
}

// ---- digests across runs -------------------------------------------------------------------------

export interface DigestScope {
  owner?: string;
  repo?: string;
  run_id?: string;
  /** Most recent digests read, newest first. */
  limit?: number;
}

/** Digest artifacts in scope, newest first, read from disk (unreadable ones reported with their error). */
export function digestsInScope(app: App, scope: DigestScope): LoadedDigest[] {
  const where: string[] = [`a.artifact_type = 'run_digest'`];
  const params: unknown[] = [];
  if (scope.run_id) {
    app.service.getRun(scope.run_id);
    where.push('a.run_id = ?');
    params.push(scope.run_id);
  }
  if (scope.owner) {
    where.push('lower(r.owner) = lower(?)');
    params.push(scope.owner);
  }
  if (scope.repo) {
    where.push('lower(r.repo) = lower(?)');
    params.push(scope.repo);
  }
  const rows = app.db
    .prepare(
      `SELECT a.artifact_id, a.run_id, a.artifact_type, a.uri, a.metadata_json, a.created_at FROM artifacts a JOIN runs r ON r.run_id = a.run_id
       WHERE ${where.join(' AND ')} ORDER BY a.artifact_id DESC LIMIT ?`,
    )
    .all(...params, scope.limit ?? 500) as Array<Omit<ArtifactView, 'metadata'> & { metadata_json: string }>;
  return rows.map(({ metadata_json, ...rest }) => {
    let metadata: Record<string, unknown> = {};
    try {
      metadata = JSON.parse(metadata_json) as Record<string, unknown>;
    } catch {
      // leave empty
    }
    return loadDigestArtifact({ ...rest, metadata });
  });
}

// ---- run-bottlenecks -----------------------------------------------------------------------------

export interface BottleneckReport {
  scope: { owner: string | null; repo: string | null };
  runs: number;
  steps: Array<{ step: string; attempts: number; failed: number; total_ms: number; avg_ms: number; max_ms: number; share_pct: number }>;
  slowest_attempts: Array<{ run_id: string; repo: string; step: string; attempt_no: number; status: string; duration_ms: number; started_at: string }>;
  slowest_commands: Array<{ run_id: string; attempt_no: number | null; command: string; category: string; duration_ms: number; exit_code: number | null }>;
  command_categories: Array<{ category: string; count: number; duration_ms: number; share_pct: number }>;
  digests_read: number;
  digests_unreadable: number;
}

export function runBottlenecks(app: App, opts: { owner?: string; repo?: string; limit?: number }): BottleneckReport {
  const limit = opts.limit ?? 10;
  const where: string[] = ['a.duration_ms IS NOT NULL'];
  const params: unknown[] = [];
  if (opts.owner) {
    where.push('lower(r.owner) = lower(?)');
    params.push(opts.owner);
  }
  if (opts.repo) {
    where.push('lower(r.repo) = lower(?)');
    params.push(opts.repo);
  }
  const clause = where.join(' AND ');
  const steps = app.db
    .prepare(
      `SELECT a.step AS step, COUNT(*) AS attempts, SUM(CASE WHEN a.status IN ('failed','timed_out','cancelled') THEN 1 ELSE 0 END) AS failed,
              SUM(a.duration_ms) AS total_ms, MAX(a.duration_ms) AS max_ms
       FROM step_attempts a JOIN runs r ON r.run_id = a.run_id WHERE ${clause} GROUP BY a.step ORDER BY total_ms DESC`,
    )
    .all(...params) as Array<{ step: string; attempts: number; failed: number; total_ms: number; max_ms: number }>;
  const all = steps.reduce((s, x) => s + x.total_ms, 0);
  const slowest = app.db
    .prepare(
      `SELECT a.run_id, r.owner || '/' || r.repo AS repo, a.step, a.attempt_no, a.status, a.duration_ms, a.started_at
       FROM step_attempts a JOIN runs r ON r.run_id = a.run_id WHERE ${clause} ORDER BY a.duration_ms DESC, a.attempt_id LIMIT ?`,
    )
    .all(...params, limit) as BottleneckReport['slowest_attempts'];
  const runCount = (
    app.db.prepare(`SELECT COUNT(DISTINCT a.run_id) AS n FROM step_attempts a JOIN runs r ON r.run_id = a.run_id WHERE ${clause}`).get(...params) as { n: number }
  ).n;

  const digests = digestsInScope(app, { owner: opts.owner, repo: opts.repo, limit: 500 });
  const commands: BottleneckReport['slowest_commands'] = [];
  const cats = new Map<string, { count: number; duration_ms: number }>();
  for (const d of digests) {
    if (!d.digest) continue;
    for (const c of d.digest.commands.top_by_duration) {
      if (c.duration_ms !== null) commands.push({ run_id: d.artifact.run_id, attempt_no: d.attempt_no, command: c.command, category: c.category, duration_ms: c.duration_ms, exit_code: c.exit_code });
    }
    for (const [cat, v] of Object.entries(d.digest.commands.by_category)) {
      const t = cats.get(cat) ?? { count: 0, duration_ms: 0 };
      t.count += v.count;
      t.duration_ms += v.duration_ms;
      cats.set(cat, t);
    }
  }
  commands.sort((a, b) => b.duration_ms - a.duration_ms || a.command.localeCompare(b.command));
  const catTotal = [...cats.values()].reduce((s, v) => s + v.duration_ms, 0);
  return {
    scope: { owner: opts.owner ?? null, repo: opts.repo ?? null },
    runs: runCount,
    steps: steps.map((s) => ({
      step: s.step,
      attempts: s.attempts,
      failed: s.failed,
      total_ms: s.total_ms,
      avg_ms: Math.round(s.total_ms / Math.max(1, s.attempts)),
      max_ms: s.max_ms,
      share_pct: all > 0 ? round2((s.total_ms / all) * 100) : 0,
    })),
    slowest_attempts: slowest,
    slowest_commands: commands.slice(0, limit),
    command_categories: [...cats.entries()]
      .map(([category, v]) => ({ category, count: v.count, duration_ms: v.duration_ms, share_pct: catTotal > 0 ? round2((v.duration_ms / catTotal) * 100) : 0 }))
      .sort((a, b) => b.duration_ms - a.duration_ms || a.category.localeCompare(b.category)),
    digests_read: digests.filter((d) => d.digest).length,
    digests_unreadable: digests.filter((d) => !d.digest).length,
  };
}

export function renderBottlenecks(r: BottleneckReport): string {
  const scope = r.scope.owner || r.scope.repo ? `${r.scope.owner ?? '*'}/${r.scope.repo ?? '*'}` : 'all repositories';
  const lines = [`bottlenecks over ${r.runs} run(s) in ${scope}:`];
  if (!r.steps.length) lines.push('  no finished step attempts yet');
  for (const s of r.steps) lines.push(`  ${s.step}: ${s.total_ms} ms total (${s.share_pct}%), ${s.attempts} attempt(s), avg ${s.avg_ms} ms, max ${s.max_ms} ms, ${s.failed} failed`);
  if (r.slowest_attempts.length) {
    lines.push('slowest attempts:');
    for (const a of r.slowest_attempts) lines.push(`  ${a.duration_ms} ms ${a.step}#${a.attempt_no} ${a.run_id} (${a.repo}) ${a.status}`);
  }
  if (r.slowest_commands.length) {
    lines.push('slowest commands:');
    for (const c of r.slowest_commands) lines.push(`  ${c.duration_ms} ms [${c.category}] ${c.command.replace(/\s+/g, ' ').slice(0, 140)} (${c.run_id}#${c.attempt_no ?? '?'})`);
  }
  return lines.join('\n');
}

// ---- skills metrics and feedback -----------------------------------------------------------------

export interface GradeCounts {
  attempts: number;
  pass: number;
  retryable: number;
  human_review: number;
  pass_rate_pct: number;
}

export interface SkillsMetrics {
  scope: { owner: string | null; repo: string | null; run_id: string | null };
  digests: number;
  unreadable: number;
  overall: GradeCounts;
  by_mode: Record<string, GradeCounts>;
  by_stage: Record<string, GradeCounts>;
  by_skill: Record<string, GradeCounts & { stages: string[] }>;
  reasons: Array<{ reason_code: string; count: number }>;
  missing_skills: Array<{ skill: string; count: number }>;
  timeouts: number;
}

function emptyCounts(): GradeCounts {
  return { attempts: 0, pass: 0, retryable: 0, human_review: 0, pass_rate_pct: 0 };
}

function addGrade(c: GradeCounts, grade: string): void {
  c.attempts++;
  if (grade === 'PASS') c.pass++;
  else if (grade === 'RETRYABLE') c.retryable++;
  else c.human_review++;
  c.pass_rate_pct = round2((c.pass / c.attempts) * 100);
}

export function skillsMetrics(app: App, scope: DigestScope): SkillsMetrics {
  const digests = digestsInScope(app, { ...scope, limit: scope.limit ?? 1000 });
  const overall = emptyCounts();
  const byMode: Record<string, GradeCounts> = {};
  const byStage: Record<string, GradeCounts> = {};
  const bySkill: Record<string, GradeCounts & { stages: string[] }> = {};
  const reasons = new Map<string, number>();
  const missing = new Map<string, number>();
  let timeouts = 0;
  for (const d of digests) {
    if (!d.digest) continue;
    const g = d.digest.classification.grade;
    addGrade(overall, g);
    addGrade((byMode[d.digest.skills.mode] ??= emptyCounts()), g);
    const stage = d.digest.state.before ?? 'unknown';
    addGrade((byStage[stage] ??= emptyCounts()), g);
    if (d.digest.skills.mode === 'agentpr') {
      for (const s of d.digest.skills.required) {
        const entry = (bySkill[s] ??= { ...emptyCounts(), stages: [] });
        addGrade(entry, g);
        if (!entry.stages.includes(stage)) entry.stages.push(stage);
      }
    }
    for (const m of d.digest.skills.missing ?? []) missing.set(m, (missing.get(m) ?? 0) + 1);
    reasons.set(d.digest.classification.reason_code, (reasons.get(d.digest.classification.reason_code) ?? 0) + 1);
    if (d.digest.attempt.timed_out) timeouts++;
  }
  for (const e of Object.values(bySkill)) e.stages.sort();
  const sortCounts = (m: Map<string, number>) => [...m.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  return {
    scope: { owner: scope.owner ?? null, repo: scope.repo ?? null, run_id: scope.run_id ?? null },
    digests: digests.filter((d) => d.digest).length,
    unreadable: digests.filter((d) => !d.digest).length,
    overall,
    by_mode: byMode,
    by_stage: byStage,
    by_skill: bySkill,
    reasons: sortCounts(reasons).map(([reason_code, count]) => ({ reason_code, count })),
    missing_skills: sortCounts(missing).map(([skill, count]) => ({ skill, count })),
    timeouts,
  };
}

export function renderMetrics(m: SkillsMetrics): string {
  const fmt = (c: GradeCounts) => `${c.attempts} attempt(s), PASS ${c.pass} (${c.pass_rate_pct}%), RETRYABLE ${c.retryable}, HUMAN_REVIEW ${c.human_review}`;
  const lines = [`skills metrics over ${m.digests} digest(s)${m.unreadable ? ` (${m.unreadable} unreadable)` : ''}: ${fmt(m.overall)}`];
  for (const [k, v] of Object.entries(m.by_mode)) lines.push(`  mode ${k}: ${fmt(v)}`);
  for (const [k, v] of Object.entries(m.by_stage)) lines.push(`  stage ${k}: ${fmt(v)}`);
  for (const [k, v] of Object.entries(m.by_skill)) lines.push(`  skill ${k} [${v.stages.join(', ')}]: ${fmt(v)}`);
  if (m.reasons.length) lines.push(`  reasons: ${m.reasons.map((r) => `${r.reason_code} ${r.count}`).join(', ')}`);
  return lines.join('\n');
}

export interface FeedbackAction {
  id: string;
  priority: 'high' | 'medium' | 'low';
  target: string;
  trigger: string;
  change: string;
  accept: string;
}

export interface SkillsFeedback {
  generated_at: string;
  scope: string;
  summary: { parsed_reports: number; pass_rate_pct: number; retryable_rate_pct: number; human_review_rate_pct: number };
  top_reasons: Array<{ reason_code: string; count: number }>;
  actions: FeedbackAction[];
  suggested_versions: { prompt_version: string; skills_bundle_version: string };
  markdown: string;
}

const PRIORITY_RANK = { high: 0, medium: 1, low: 2 } as const;

/**
 * Deterministic iteration actions from skills metrics: the same metrics always give the same
 * actions in the same order (the rules below, then priority, then id).
 */
export function skillsFeedback(m: SkillsMetrics, now: Date = new Date()): SkillsFeedback {
  const reason = (code: string) => m.reasons.find((r) => r.reason_code === code)?.count ?? 0;
  const actions: FeedbackAction[] = [];
  const evidenceGap = reason('missing_test_evidence') + reason('insufficient_test_evidence');
  if (evidenceGap > 0) {
    actions.push({
      id: 'prompt-impl-test-evidence',
      priority: 'high',
      target: 'agentpr-implement-and-validate + prompt_template',
      trigger: `evidence_gap_count=${evidenceGap}`,
      change: 'Strengthen implement/validate stage to require CI-aligned test commands with explicit command outputs in final report.',
      accept: 'reason_code missing/insufficient_test_evidence decreases over next 10 runs.',
    });
  }
  if (reason('test_command_failed') > 0) {
    actions.push({
      id: 'policy-known-baseline-failures',
      priority: 'high',
      target: 'manager_policy.run_agent_step.known_test_failure_allowlist',
      trigger: `test_command_failed=${reason('test_command_failed')}`,
      change: 'Split baseline failures from integration failures; add only verified baseline signatures to allowlist per repo, keep unknown failures as HUMAN_REVIEW.',
      accept: 'reason_code test_command_failed decreases without increasing post-review regressions.',
    });
  }
  if (reason('diff_budget_exceeded') > 0) {
    actions.push({
      id: 'prompt-minimal-diff',
      priority: 'high',
      target: 'agentpr-implement-and-validate + manager_policy.run_agent_step.max_changed_files/max_added_lines',
      trigger: `diff_budget_exceeded=${reason('diff_budget_exceeded')}`,
      change: 'Restate the diff budget in the implement skill and the prompt; raise the budget per repo only when the contract needs a larger change.',
      accept: 'reason_code diff_budget_exceeded stays at 0 over next 10 runs.',
    });
  }
  const safety = reason('safety_violation') + reason('agent_push_disallowed');
  if (safety > 0) {
    actions.push({
      id: 'prompt-safety-contract',
      priority: 'high',
      target: 'safety contract + all agentpr skills',
      trigger: `safety_or_push_violations=${safety}`,
      change: 'Name the forbidden commands (sudo, global installs, git commit/push, finish.sh) in every stage skill and point installs at .agentpr_runtime.',
      accept: 'reason_code safety_violation and agent_push_disallowed stay at 0.',
    });
  }
  const missingTotal = m.missing_skills.reduce((s, x) => s + x.count, 0);
  if (missingTotal > 0) {
    actions.push({
      id: 'install-missing-skills',
      priority: 'high',
      target: `install-skills (${m.missing_skills.map((s) => s.skill).join(', ')})`,
      trigger: `missing_skill_reports=${missingTotal}`,
      change: 'Run install-skills on the worker host and check skills-status before dispatching skills-mode runs.',
      accept: 'digests report no missing skills.',
    });
  }
  if (reason('runtime_hard_failure') + reason('preflight_hard_failure') > 0) {
    actions.push({
      id: 'environment-hard-failures',
      priority: 'high',
      target: 'doctor + preflight + runtime_env_overrides.json',
      trigger: `hard_failures=${reason('runtime_hard_failure') + reason('preflight_hard_failure')}`,
      change: 'Fix the environment the evidence names (permissions, auth, missing tools) or add the toolchain variables to runtime_env_overrides.json; retries will not help.',
      accept: 'reason_code runtime_hard_failure/preflight_hard_failure stays at 0 over next 10 runs.',
    });
  }
  const transientLike = reason('runtime_transient_failure') + reason('runtime_unknown_failure') + reason('preflight_transient_failure') + m.timeouts;
  if (transientLike > 0) {
    actions.push({
      id: 'policy-retry-and-timeout-calibration',
      priority: 'medium',
      target: 'manager_policy.run_agent_step.max_agent_seconds/retry caps',
      trigger: `transient_like_failures=${transientLike}`,
      change: 'Calibrate timeout and retry caps per repo; separate network/tooling failures from code-quality failures before re-dispatch.',
      accept: 'RETRYABLE share decreases and retryable_limit_exceeded remains low.',
    });
  }
  for (const [stage, c] of Object.entries(m.by_stage).sort((a, b) => a[0].localeCompare(b[0]))) {
    if (c.attempts >= 3 && c.pass_rate_pct < 50) {
      actions.push({
        id: `stage-${stage.toLowerCase()}-pass-rate`,
        priority: 'medium',
        target: `skills for ${stage}`,
        trigger: `pass_rate=${c.pass_rate_pct}% over ${c.attempts} attempts`,
        change: `Review the ${stage} skill instructions against the failing digests' evidence; tighten the stage's final-report format.`,
        accept: `${stage} pass rate reaches 50% over the next 10 attempts.`,
      });
    }
  }
  if (!actions.length) {
    actions.push({
      id: 'keep-stable',
      priority: 'low',
      target: 'prompt_template + skills',
      trigger: m.overall.attempts ? `pass_rate=${m.overall.pass_rate_pct}%` : 'no digests yet',
      change: m.overall.attempts ? 'Current runs look stable; preserve constraints and reduce unnecessary command volume.' : 'Run some agent steps first; there is nothing to learn from yet.',
      accept: 'pass rate does not drop over next 10 runs.',
    });
  }
  actions.sort((a, b) => PRIORITY_RANK[a.priority] - PRIORITY_RANK[b.priority] || 0);
  const day = now.toISOString().slice(0, 10).replaceAll('-', '');
  const total = m.overall.attempts;
  const rate = (n: number) => (total ? round2((n / total) * 100) : 0);
  const scope = m.scope.run_id ?? (m.scope.owner || m.scope.repo ? `${m.scope.owner ?? '*'}/${m.scope.repo ?? '*'}` : 'global');
  const fb: Omit<SkillsFeedback, 'markdown'> = {
    generated_at: now.toISOString(),
    scope,
    summary: { parsed_reports: total, pass_rate_pct: rate(m.overall.pass), retryable_rate_pct: rate(m.overall.retryable), human_review_rate_pct: rate(m.overall.human_review) },
    top_reasons: m.reasons.slice(0, 10),
    actions,
    suggested_versions: { prompt_version: `auto-prompt-${day}`, skills_bundle_version: `auto-skills-${day}` },
  };
  return { ...fb, markdown: renderFeedbackMarkdown(fb) };
}

function renderFeedbackMarkdown(f: Omit<SkillsFeedback, 'markdown'>): string {
  const lines = [
    '# Skills Feedback',
    '',
    `- Generated at: ${f.generated_at}`,
    `- Scope: ${f.scope}`,
    '',
    '## Summary',
    `- Parsed reports: ${f.summary.parsed_reports}`,
    `- PASS rate: ${f.summary.pass_rate_pct}%`,
    `- RETRYABLE rate: ${f.summary.retryable_rate_pct}%`,
    `- HUMAN_REVIEW rate: ${f.summary.human_review_rate_pct}%`,
    '',
    '## Top Reasons',
    ...(f.top_reasons.length ? f.top_reasons.map((r) => `- ${r.reason_code}: ${r.count}`) : ['- none yet']),
    '',
    '## Actions',
    ...f.actions.flatMap((a, i) => [
      `${i + 1}. [${a.priority}] ${a.id} -> ${a.target}`,
      `   Trigger: ${a.trigger}`,
      `   Change: ${a.change}`,
      `   Accept: ${a.accept}`,
    ]),
    '',
    '## Suggested Versions',
    `- prompt_version: ${f.suggested_versions.prompt_version}`,
    `- skills_bundle_version: ${f.suggested_versions.skills_bundle_version}`,
    '',
  ];
  return lines.join('\n');
}

export function assertRunExists(app: App, runId: string): void {
  if (!app.service.findRun(runId)) throw new NotFoundError(`unknown run '${runId}'; list runs with list-runs`);
}
