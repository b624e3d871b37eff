import { z } from 'zod';
import { RunStateSchema, type RunState } from '../core/states.js';
import type { RunAgentStepPolicy } from '../policy.js';
import { COMMAND_CATEGORIES } from './commands.js';
import type { DiffStats } from './diff-stats.js';
import type { CommandRecord, StreamSummary, UsageTotals } from './stream-parser.js';
import { REASON_CODES, allowlistMatch, compileAllowlist, type PreflightSummary, type Verdict } from './verdict.js';

/** The run digest: deterministic JSON, always kept, read by the manager and the PR gate. */
export const DIGEST_SCHEMA_VERSION = 1;

const CategorySchema = z.enum(COMMAND_CATEGORIES);
const GradeSchema = z.enum(['PASS', 'RETRYABLE', 'HUMAN_REVIEW']);
const ReasonSchema = z.enum(REASON_CODES);

const CommandRefSchema = z.object({
  id: z.string(),
  command: z.string(),
  exit_code: z.number().int().nullable(),
  status: z.string(),
  duration_ms: z.number().nullable(),
  category: CategorySchema,
});

const UsageTotalsSchema = z.object({
  input_tokens: z.number(),
  cached_input_tokens: z.number(),
  cache_write_input_tokens: z.number().default(0),
  output_tokens: z.number(),
  reasoning_output_tokens: z.number(),
  total_tokens: z.number(),
});

export const DiffStatsSchema = z.object({
  changed_files: z.number().int(),
  added_lines: z.number().int(),
  deleted_lines: z.number().int(),
  files: z.array(z.object({ path: z.string(), added: z.number().int(), deleted: z.number().int(), binary: z.boolean(), untracked: z.boolean() })),
  ignored_files: z.number().int(),
  head_sha: z.string().nullable(),
});

export const SkillsSummarySchema = z.object({
  mode: z.enum(['off', 'agentpr']),
  required: z.array(z.string()),
  /** Skills found installed for the worker; null when not checked. */
  available: z.array(z.string()).nullable(),
  /** Required but not available; null when availability was not checked. */
  missing: z.array(z.string()).nullable(),
});
export type SkillsSummary = z.infer<typeof SkillsSummarySchema>;

export const PreflightSummarySchema = z.object({
  ok: z.boolean(),
  checks: z.array(z.object({ name: z.string(), ok: z.boolean(), message: z.string().optional() })).optional(),
  error: z.string().optional(),
});

const StageAttemptSchema = z.object({
  step: z.string(),
  attempt_no: z.number().int(),
  status: z.string(),
  exit_code: z.number().int().nullable(),
  duration_ms: z.number().nullable(),
  started_at: z.string().nullable(),
  finished_at: z.string().nullable(),
});
/** A step attempt as the store keeps it (AttemptView fits). */
export type StageAttempt = z.input<typeof StageAttemptSchema> | { step: string; attempt_no: number; status: string; exit_code: number | null; duration_ms: number | null; started_at?: string | null; finished_at?: string | null };

export const RunDigestSchema = z.object({
  schema_version: z.literal(DIGEST_SCHEMA_VERSION),
  generated_at: z.string(),
  run: z.object({ run_id: z.string().nullable(), owner: z.string().nullable(), repo: z.string().nullable() }),
  state: z.object({ before: RunStateSchema.nullable(), after: z.union([RunStateSchema, z.literal('UNCHANGED')]).nullable() }),
  attempt: z.object({
    no: z.number().int().nullable(),
    step: z.string(),
    duration_ms: z.number().nullable(),
    exit_code: z.number().int().nullable(),
    timed_out: z.boolean(),
  }),
  classification: z.object({
    grade: GradeSchema,
    reason_code: ReasonSchema,
    next_action: z.enum(['advance', 'retry', 'escalate']),
    rule: z.number().int(),
    evidence: z.array(z.string()),
    original_reason_code: ReasonSchema.nullable(),
  }),
  skills: SkillsSummarySchema,
  validation: z.object({
    test_command_count: z.number().int(),
    failed_test_command_count: z.number().int(),
    unexcused_failed_test_command_count: z.number().int(),
    min_test_commands: z.number().int(),
    test_commands: z.array(CommandRefSchema),
    failed_test_commands: z.array(CommandRefSchema.extend({ allowlisted_by: z.string().nullable() })),
  }),
  changes: z.object({
    diff: DiffStatsSchema.nullable(),
    max_changed_files: z.number().int(),
    max_added_lines: z.number().int(),
    file_change_events: z.number().int(),
    files_from_stream: z.array(z.object({ path: z.string(), kind: z.string() })),
  }),
  commands: z.object({
    total: z.number().int(),
    completed: z.number().int(),
    failed: z.number().int(),
    in_progress: z.number().int(),
    durations_known: z.number().int(),
    by_category: z.record(z.string(), z.object({ count: z.number().int(), share_pct: z.number(), duration_ms: z.number(), duration_share_pct: z.number() })),
    top_by_duration: z.array(CommandRefSchema),
    top_by_frequency: z.array(z.object({ command: z.string(), count: z.number().int(), category: CategorySchema })),
    /** The first commands the agent ran, in order (at most 10, each at most 200 characters): what it actually did. */
    sample: z.array(z.string()),
  }),
  stages: z.object({
    totals: z.record(z.string(), z.object({ attempts: z.number().int(), failed: z.number().int(), duration_ms: z.number(), share_pct: z.number() })),
    timeline: z.array(StageAttemptSchema),
    top_step: z.object({ step: z.string(), duration_ms: z.number(), share_pct: z.number() }).nullable(),
  }),
  events: z.object({
    lines: z.number().int(),
    bytes: z.number().int(),
    parsed: z.number().int(),
    blank_lines: z.number().int(),
    stamped_lines: z.number().int(),
    first_ts: z.string().nullable(),
    last_ts: z.string().nullable(),
    parse_errors: z.number().int(),
    parse_error_samples: z.array(z.object({ line: z.number().int(), reason: z.string(), excerpt: z.string() })),
    oversized_lines: z.number().int(),
    max_line_bytes: z.number().int(),
    invalid_utf8_lines: z.number().int(),
    type_counts: z.record(z.string(), z.number().int()),
    item_type_counts: z.record(z.string(), z.number().int()),
    unknown_type_counts: z.record(z.string(), z.number().int()),
    unknown_item_type_counts: z.record(z.string(), z.number().int()),
    error_count: z.number().int(),
    error_messages: z.array(z.string()),
  }),
  usage: UsageTotalsSchema.extend({
    cumulative_per_thread: z.literal(true),
    turns: z.number().int(),
    thread_ids: z.array(z.string()),
    delta: UsageTotalsSchema.nullable(),
  }).nullable(),
  agent: z.object({
    message_count: z.number().int(),
    final_message: z.string().nullable(),
    final_message_truncated: z.boolean(),
    /** Sub-agent tool calls; sub-agents' own commands and edits are not in the stream (git is the judge of changes). */
    collab_tool_calls: z.number().int().default(0),
    collab_tools: z.record(z.string(), z.number().int()).default({}),
  }),
  safety: z.object({
    violation_count: z.number().int(),
    violations: z.array(z.object({ id: z.string(), command: z.string(), rules: z.array(z.string()) })),
    push_allowed: z.boolean(),
    push_attempt_count: z.number().int(),
    push_attempts: z.array(z.object({ id: z.string(), command: z.string(), kinds: z.array(z.string()) })),
  }),
  preflight: PreflightSummarySchema.nullable(),
  /** human_review_gate: the verdict is PASS but the policy's success_state sends the run to a person. */
  manager_recommendation: z.object({ action: z.enum(['advance', 'retry', 'human_review', 'human_review_gate']), priority: z.enum(['normal', 'high']), reason: z.string() }),
  retention: z.object({ keep_event_stream: z.boolean(), pass_sample_pct: z.number().int(), bucket: z.number().int() }),
  artifacts: z.record(z.string(), z.string().nullable()),
});
export type RunDigest = z.infer<typeof RunDigestSchema>;

export interface DigestInput {
  stream: StreamSummary;
  verdict: Verdict;
  policy: RunAgentStepPolicy;
  runId?: string | null;
  owner?: string | null;
  repo?: string | null;
  step?: string;
  stateBefore?: RunState | null;
  stateAfter?: RunState | 'UNCHANGED' | null;
  attemptNo?: number | null;
  exitCode: number | null;
  durationMs?: number | null;
  timedOut?: boolean;
  diffStats?: DiffStats | null;
  preflight?: PreflightSummary | null;
  skills?: Partial<SkillsSummary> | null;
  attempts?: readonly StageAttempt[];
  previousUsage?: (Partial<UsageTotals> & { thread_id?: string | null }) | null;
  pushAllowed?: boolean;
  keepStream: boolean;
  retentionBucket: number;
  artifacts?: Record<string, string | null>;
  generatedAt?: Date;
}

const round2 = (n: number): number => Math.round(n * 100) / 100;
const pct = (part: number, whole: number): number => (whole > 0 ? round2((part / whole) * 100) : 0);

function ref(c: CommandRecord): z.infer<typeof CommandRefSchema> {
  return { id: c.id, command: c.command, exit_code: c.exit_code, status: c.status, duration_ms: c.duration_ms, category: c.category };
}

export function recommendationFor(v: Verdict, successState?: string): RunDigest['manager_recommendation'] {
  if (v.grade === 'PASS' && (successState === 'NEEDS_HUMAN_REVIEW' || successState === 'PAUSED')) {
    return {
      action: 'human_review_gate',
      priority: 'normal',
      reason: `runtime classified PASS (${v.reason_code}), but policy success_state ${successState} sends the run to a person before it goes on`,
    };
  }
  if (v.grade === 'PASS') return { action: 'advance', priority: 'normal', reason: `runtime classified PASS (${v.reason_code})` };
  if (v.grade === 'RETRYABLE') return { action: 'retry', priority: 'high', reason: `retryable failure: ${v.reason_code}` };
  return { action: 'human_review', priority: 'high', reason: `needs manual judgment: ${v.reason_code}` };
}

/** Usage of this attempt alone: codex totals are cumulative per thread, so subtract the previous attempt's on the same thread. */
export function usageDelta(current: UsageTotals, previous: (Partial<UsageTotals> & { thread_id?: string | null }) | null | undefined, threadIds: readonly string[]): UsageTotals | null {
  if (!previous) return null;
  if (previous.thread_id && threadIds.length && !threadIds.includes(previous.thread_id)) return { ...current };
  const d = (k: keyof UsageTotals): number => Math.max(0, current[k] - (previous[k] ?? 0));
  return {
    input_tokens: d('input_tokens'),
    cached_input_tokens: d('cached_input_tokens'),
    cache_write_input_tokens: d('cache_write_input_tokens'),
    output_tokens: d('output_tokens'),
    reasoning_output_tokens: d('reasoning_output_tokens'),
    total_tokens: d('total_tokens'),
  };
}

function buildStages(input: DigestInput): RunDigest['stages'] {
  const step = input.step ?? 'agent';
  const timeline = (input.attempts ?? []).map((a) => ({
    step: a.step,
    attempt_no: a.attempt_no,
    status: a.status,
    exit_code: a.exit_code,
    duration_ms: a.duration_ms,
    started_at: a.started_at ?? null,
    finished_at: a.finished_at ?? null,
  }));
  if (input.attemptNo != null && (input.attempts !== undefined || input.durationMs != null)) {
    // The current attempt is usually still 'running' in the store while it is analysed.
    const status = input.timedOut ? 'timed_out' : input.exitCode === 0 ? 'succeeded' : 'failed';
    const i = timeline.findIndex((a) => a.step === step && a.attempt_no === input.attemptNo);
    if (i === -1) {
      timeline.push({ step, attempt_no: input.attemptNo, status, exit_code: input.exitCode, duration_ms: input.durationMs ?? null, started_at: null, finished_at: null });
    } else if (timeline[i]!.status === 'running') {
      timeline[i] = { ...timeline[i]!, status, exit_code: input.exitCode, duration_ms: timeline[i]!.duration_ms ?? input.durationMs ?? null };
    }
  }
  timeline.sort((a, b) => (a.started_at ?? '\uffff').localeCompare(b.started_at ?? '\uffff') || a.step.localeCompare(b.step) || a.attempt_no - b.attempt_no);
  const totals: RunDigest['stages']['totals'] = {};
  let all = 0;
  for (const a of timeline) {
    const t = (totals[a.step] ??= { attempts: 0, failed: 0, duration_ms: 0, share_pct: 0 });
    t.attempts++;
    if (a.status === 'failed' || a.status === 'timed_out') t.failed++;
    t.duration_ms += a.duration_ms ?? 0;
    all += a.duration_ms ?? 0;
  }
  let top: RunDigest['stages']['top_step'] = null;
  for (const [name, t] of Object.entries(totals)) {
    t.share_pct = pct(t.duration_ms, all);
    if (!top || t.duration_ms > top.duration_ms) top = { step: name, duration_ms: t.duration_ms, share_pct: t.share_pct };
  }
  return { totals, timeline, top_step: all > 0 ? top : null };
}

export function buildDigest(input: DigestInput): RunDigest {
  const { stream: s, verdict: v, policy } = input;
  const allowlist = compileAllowlist(policy.known_test_failure_allowlist);
  const failed = s.failed_test_commands.map((c) => {
    return { ...ref(c), allowlisted_by: allowlistMatch(c, allowlist) };
  });
  const unexcused = s.failed_test_command_count - failed.filter((f) => f.allowlisted_by !== null).length;

  const totalDuration = Object.values(s.command_stats.by_category).reduce((a, c) => a + c.duration_ms, 0);
  const byCategory: RunDigest['commands']['by_category'] = {};
  for (const cat of COMMAND_CATEGORIES) {
    const c = s.command_stats.by_category[cat];
    byCategory[cat] = { count: c.count, share_pct: pct(c.count, s.commands_total), duration_ms: c.duration_ms, duration_share_pct: pct(c.duration_ms, totalDuration) };
  }

  const skillsMode = input.skills?.mode ?? policy.skills_mode;
  const required = input.skills?.required ?? policy.required_skills;
  const available = input.skills?.available ?? null;
  const missing = input.skills?.missing ?? (available ? required.filter((r) => !available.includes(r)) : null);

  const usage = s.usage
    ? {
        input_tokens: s.usage.input_tokens,
        cached_input_tokens: s.usage.cached_input_tokens,
        cache_write_input_tokens: s.usage.cache_write_input_tokens,
        output_tokens: s.usage.output_tokens,
        reasoning_output_tokens: s.usage.reasoning_output_tokens,
        total_tokens: s.usage.total_tokens,
        cumulative_per_thread: true as const,
        turns: s.usage.turns,
        thread_ids: s.usage.thread_ids,
        delta: usageDelta(s.usage, input.previousUsage, s.usage.thread_ids),
      }
    : null;

  return {
    schema_version: DIGEST_SCHEMA_VERSION,
    generated_at: (input.generatedAt ?? new Date()).toISOString(),
    run: { run_id: input.runId ?? null, owner: input.owner ?? null, repo: input.repo ?? null },
    state: { before: input.stateBefore ?? null, after: input.stateAfter ?? null },
    attempt: {
      no: input.attemptNo ?? null,
      step: input.step ?? 'agent',
      duration_ms: input.durationMs ?? null,
      exit_code: input.exitCode,
      timed_out: input.timedOut ?? false,
    },
    classification: {
      grade: v.grade,
      reason_code: v.reason_code,
      next_action: v.next_action,
      rule: v.rule,
      evidence: v.evidence,
      original_reason_code: v.original_reason_code ?? null,
    },
    skills: { mode: skillsMode, required: [...required], available: available ? [...available] : null, missing: missing ? [...missing] : null },
    validation: {
      test_command_count: s.test_command_count,
      failed_test_command_count: s.failed_test_command_count,
      unexcused_failed_test_command_count: unexcused,
      min_test_commands: policy.min_test_commands,
      test_commands: s.test_commands.slice(0, 50).map(ref),
      failed_test_commands: failed.slice(0, 50),
    },
    changes: {
      diff: input.diffStats ?? null,
      max_changed_files: policy.max_changed_files,
      max_added_lines: policy.max_added_lines,
      file_change_events: s.file_change_count,
      files_from_stream: s.file_changes.slice(0, 100),
    },
    commands: {
      total: s.commands_total,
      completed: s.command_stats.completed,
      failed: s.command_stats.failed,
      in_progress: s.command_stats.in_progress,
      durations_known: s.command_stats.durations_known,
      by_category: byCategory,
      top_by_duration: s.command_stats.top_by_duration.slice(0, 5).map(ref),
      top_by_frequency: s.command_stats.top_by_frequency.slice(0, 5),
      sample: s.commands.slice(0, 10).map((c) => (c.command.length > 200 ? `${c.command.slice(0, 199)}…` : c.command)),
    },
    stages: buildStages(input),
    events: {
      lines: s.lines,
      bytes: s.bytes,
      parsed: s.parsed_events,
      blank_lines: s.blank_lines,
      stamped_lines: s.stamped_lines,
      first_ts: s.first_ts,
      last_ts: s.last_ts,
      parse_errors: s.parse_errors,
      parse_error_samples: s.parse_error_samples.slice(0, 10),
      oversized_lines: s.oversized_lines,
      max_line_bytes: s.max_line_bytes,
      invalid_utf8_lines: s.invalid_utf8_lines,
      type_counts: s.type_counts,
      item_type_counts: s.item_type_counts,
      unknown_type_counts: s.unknown_type_counts,
      unknown_item_type_counts: s.unknown_item_type_counts,
      error_count: s.error_count,
      error_messages: s.error_messages.slice(0, 10),
    },
    usage,
    agent: {
      message_count: s.agent_message_count,
      final_message: s.final_message,
      final_message_truncated: s.final_message_truncated,
      collab_tool_calls: s.collab_tool_call_count,
      collab_tools: s.collab_tools,
    },
    safety: {
      violation_count: s.safety_violation_count,
      violations: s.safety_violations.slice(0, 20).map((x) => ({ id: x.id, command: x.command, rules: x.rules })),
      push_allowed: input.pushAllowed ?? false,
      push_attempt_count: s.push_attempt_count,
      push_attempts: s.push_attempts.slice(0, 20).map((x) => ({ id: x.id, command: x.command, kinds: x.kinds })),
    },
    preflight: input.preflight ?? null,
    manager_recommendation: recommendationFor(v, policy.success_state),
    retention: { keep_event_stream: input.keepStream, pass_sample_pct: policy.success_event_stream_sample_pct, bucket: input.retentionBucket },
    artifacts: input.artifacts ?? {},
  };
}

/** Deep copy with object keys sorted, so the same digest always serialises to the same bytes. */
export function sortKeysDeep<T>(value: T): T {
  if (Array.isArray(value)) return value.map((v) => sortKeysDeep(v)) as T;
  if (value === null || typeof value !== 'object') return value;
  const obj = value as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(obj).sort()) if (obj[k] !== undefined) out[k] = sortKeysDeep(obj[k]);
  return out as T;
}

/** The stored form of a digest: sorted keys, two-space indent, trailing newline. */
export function digestToJson(digest: RunDigest): string {
  return `${JSON.stringify(sortKeysDeep(digest), null, 2)}\n`;
}
