import { ConfigurationError } from '../core/errors.js';
import { canTransition, type RunState } from '../core/states.js';
import type { RunAgentStepPolicy } from '../policy.js';
import type { CommandRecord, StreamSummary } from './stream-parser.js';
import { shortCommand } from './commands.js';
import type { DiffStats } from './diff-stats.js';
import { patternsOf } from '../worker/agents/codex.js';

/** Deterministic verdict of one worker attempt. */
export type Grade = 'PASS' | 'RETRYABLE' | 'HUMAN_REVIEW';
export type NextAction = 'advance' | 'retry' | 'escalate';
export const REASON_CODES = [
  'preflight_transient_failure',
  'preflight_hard_failure',
  'safety_violation',
  'agent_push_disallowed',
  'git_metadata_tampered',
  'test_command_failed',
  'missing_test_evidence',
  'insufficient_test_evidence',
  'diff_budget_exceeded',
  'runtime_success',
  'runtime_success_allowlisted_test_failures',
  'runtime_hard_failure',
  'runtime_config_error',
  'runtime_transient_failure',
  'runtime_unknown_failure',
  'retryable_limit_exceeded',
] as const;
export type ReasonCode = (typeof REASON_CODES)[number];

export interface Verdict {
  grade: Grade;
  reason_code: ReasonCode;
  next_action: NextAction;
  /** The verdict rule that decided (1-6). */
  rule: number;
  /** Sentences naming the commands, patterns and figures that decided. */
  evidence: string[];
  /** Set when rule 6 replaced a RETRYABLE verdict. */
  original_reason_code?: ReasonCode;
}

/** Preflight outcome as the worker reports it. */
export interface PreflightSummary {
  ok: boolean;
  checks?: Array<{ name: string; ok: boolean; message?: string }>;
  /** Free text of the failure (stderr of a failed check, the thrown error). */
  error?: string;
}

export interface VerdictInput {
  stream: StreamSummary;
  /** Exit code of the codex process; null when it was killed by a signal. */
  exitCode: number | null;
  timedOut?: boolean;
  stateBefore: RunState;
  attemptNo: number;
  policy: RunAgentStepPolicy;
  diffStats?: DiffStats | null;
  preflight?: PreflightSummary | null;
  /** Whether the agent itself may commit and push (default false: finish.sh is the orchestrator's). */
  pushAllowed?: boolean;
  /** Tail of the codex process's stderr, searched for failure patterns when it exits non-zero. */
  stderrTail?: string;
  /**
   * Commits, pushes and ref moves git shows in the worker's repository after the step (by anyone:
   * sub-agents' commands never appear in the parent stream). Non-empty = rule 3.
   */
  repoChanges?: readonly string[];
  /**
   * What the worker wrote into the clone's .git that makes git run commands or go elsewhere
   * (filter drivers, include.path, remote URLs, a replaced .git ...), found and undone by the git
   * guard before agentpr's own git ran. Non-empty = rule 2 (git_metadata_tampered).
   */
  gitTamper?: readonly string[];
}

interface NamedPattern {
  name: string;
  re: RegExp;
}

/** Setup errors of the agent CLI (flags, provider key, config.toml, model): retrying cannot fix them. */
export const CONFIG_PATTERNS: readonly NamedPattern[] = patternsOf('config');
/** Failures a retry cannot fix. */
export const HARD_PATTERNS: readonly NamedPattern[] = patternsOf('hard');
/** Failures that usually pass on a retry. */
export const TRANSIENT_PATTERNS: readonly NamedPattern[] = patternsOf('transient');

const TEST_EVIDENCE_STATES: ReadonlySet<RunState> = new Set(['IMPLEMENTING', 'LOCAL_VALIDATING', 'ITERATING']);

const ACTION: Record<Grade, NextAction> = { PASS: 'advance', RETRYABLE: 'retry', HUMAN_REVIEW: 'escalate' };

function verdict(grade: Grade, reason_code: ReasonCode, rule: number, evidence: string[]): Verdict {
  // The same sentence twice (a message in stderr and the stream) says nothing new.
  return { grade, reason_code, next_action: ACTION[grade], rule, evidence: [...new Set(evidence)] };
}

/** Compile the allowlist; a bad regex is an operator error that names the pattern. */
export interface AllowlistEntry {
  /** The pattern as written in the policy. */
  pattern: string;
  re: RegExp;
}

export function compileAllowlist(patterns: readonly string[]): AllowlistEntry[] {
  return patterns.map((p, i) => {
    try {
      // Case-insensitive: failure messages differ in case between tools and platforms.
      return { pattern: p, re: new RegExp(p, 'i') };
    } catch (err) {
      throw new ConfigurationError(
        `run_agent_step.known_test_failure_allowlist[${i}] is not a valid regular expression: ${JSON.stringify(p)} (${(err as Error).message}); fix or remove it in the policy file`,
      );
    }
  });
}

/** The allowlist pattern that excuses a failed test command, matched against its command and output. */
export function allowlistMatch(cmd: CommandRecord, allowlist: readonly AllowlistEntry[]): string | null {
  for (const { pattern, re } of allowlist) {
    if (re.test(cmd.command) || (cmd.output_excerpt !== undefined && re.test(cmd.output_excerpt))) return pattern;
  }
  return null;
}

export function firstPattern(text: string, patterns: readonly NamedPattern[]): { name: string; match: string } | null {
  for (const p of patterns) {
    const m = p.re.exec(text);
    if (m) return { name: p.name, match: m[0] };
  }
  return null;
}

function quote(command: string): string {
  const oneLine = shortCommand(command).replace(/\s+/g, ' ');
  return `\`${oneLine.length > 160 ? `${oneLine.slice(0, 160)}…` : oneLine}\``;
}

function preflightText(p: PreflightSummary): string {
  const parts: string[] = [];
  for (const c of p.checks ?? []) if (!c.ok) parts.push(`${c.name}: ${c.message ?? 'failed'}`);
  if (p.error) parts.push(p.error);
  return parts.join('\n');
}

/** Rules in order, first match wins; rule 6 caps retries. */
export function decideVerdict(input: VerdictInput): Verdict {
  const v = decideRules(input);
  if (v.grade === 'RETRYABLE' && input.attemptNo > input.policy.max_retryable_attempts) {
    return {
      grade: 'HUMAN_REVIEW',
      reason_code: 'retryable_limit_exceeded',
      next_action: 'escalate',
      rule: 6,
      original_reason_code: v.reason_code,
      evidence: [
        `attempt ${input.attemptNo} is over max_retryable_attempts ${input.policy.max_retryable_attempts}; original verdict RETRYABLE ${v.reason_code}`,
        ...v.evidence,
      ],
    };
  }
  return v;
}

function decideRules(input: VerdictInput): Verdict {
  const { stream, policy } = input;

  // 1. preflight
  if (input.preflight && !input.preflight.ok) {
    const text = preflightText(input.preflight);
    const failed = (input.preflight.checks ?? []).filter((c) => !c.ok).map((c) => c.name);
    const head = `preflight failed${failed.length ? ` (${failed.join(', ')})` : ''}`;
    const transient = firstPattern(text, TRANSIENT_PATTERNS);
    if (transient) return verdict('RETRYABLE', 'preflight_transient_failure', 1, [head, `transient pattern '${transient.name}' matched "${transient.match}"`]);
    return verdict('HUMAN_REVIEW', 'preflight_hard_failure', 1, [head, text ? `no transient pattern in: ${clip(text, 300)}` : 'no transient pattern in the preflight report']);
  }

  // 2. safety
  if (stream.safety_violation_count > 0) {
    return verdict(
      'HUMAN_REVIEW',
      'safety_violation',
      2,
      stream.safety_violations.slice(0, 5).map((s) => `${s.id} ran ${quote(s.command)} (rule: ${s.rules.join(', ')})`),
    );
  }

  // 2. safety: the worker wrote git settings that would run its commands as the operator
  if (input.gitTamper?.length) {
    return verdict('HUMAN_REVIEW', 'git_metadata_tampered', 2, [
      'the worker changed the clone\'s .git so that agentpr\'s own git would run its commands or push elsewhere; agentpr undid or refused it',
      ...input.gitTamper.slice(0, 5),
    ]);
  }

  // 3. push
  const repoChanges = input.repoChanges ?? [];
  if (!input.pushAllowed && (stream.push_attempt_count > 0 || repoChanges.length > 0)) {
    return verdict(
      'HUMAN_REVIEW',
      'agent_push_disallowed',
      3,
      [
        'pushing is not allowed for the agent (the orchestrator commits and pushes with finish.sh)',
        ...stream.push_attempts.slice(0, 5).map((p) => `${p.id} ran ${quote(p.command)} (${p.kinds.join(', ')})`),
        ...repoChanges.slice(0, 5).map((c) => `git shows: ${c}`),
      ],
    );
  }

  // 4. clean exit
  if (input.exitCode === 0 && !input.timedOut) {
    const allowlist = compileAllowlist(policy.known_test_failure_allowlist);
    const unexcused: CommandRecord[] = [];
    const excused: Array<{ cmd: CommandRecord; pattern: string }> = [];
    for (const cmd of stream.failed_test_commands) {
      const pattern = allowlistMatch(cmd, allowlist);
      if (pattern !== null) excused.push({ cmd, pattern });
      else unexcused.push(cmd);
    }
    const unseen = stream.failed_test_command_count - stream.failed_test_commands.length;
    if (unexcused.length || unseen > 0) {
      return verdict('HUMAN_REVIEW', 'test_command_failed', 4, [
        `${stream.failed_test_command_count} failed test command(s) though the worker exited 0`,
        ...unexcused.slice(0, 5).map((c) => `${c.id} ${quote(c.command)} exit ${c.exit_code ?? c.status}`),
        ...(unseen > 0 ? [`${unseen} more failed test command(s) not kept for allowlist matching`] : []),
      ]);
    }
    if (TEST_EVIDENCE_STATES.has(input.stateBefore) && stream.test_command_count < policy.min_test_commands) {
      const code = stream.test_command_count === 0 ? 'missing_test_evidence' : 'insufficient_test_evidence';
      return verdict('HUMAN_REVIEW', code, 4, [
        `${stream.test_command_count} test command(s) run in ${input.stateBefore}; min_test_commands is ${policy.min_test_commands}`,
        ...stream.test_commands.slice(0, 5).map((c) => `${c.id} ${quote(c.command)}`),
      ]);
    }
    const diff = input.diffStats;
    if (diff) {
      const over: string[] = [];
      // 0 = no budget.
      if (policy.max_changed_files > 0 && diff.changed_files > policy.max_changed_files) {
        over.push(`changed files ${diff.changed_files} > max_changed_files ${policy.max_changed_files}`);
      }
      if (policy.max_added_lines > 0 && diff.added_lines > policy.max_added_lines) {
        over.push(`added lines ${diff.added_lines} > max_added_lines ${policy.max_added_lines}`);
      }
      if (over.length) {
        const biggest = [...diff.files].sort((a, b) => b.added - a.added).slice(0, 5).map((f) => `${f.path} +${f.added}/-${f.deleted}`);
        return verdict('HUMAN_REVIEW', 'diff_budget_exceeded', 4, [...over, ...(biggest.length ? [`largest: ${biggest.join(', ')}`] : [])]);
      }
    }
    const base = [
      `worker exited 0; ${stream.test_command_count} test command(s), ${stream.failed_test_command_count} failed`,
      diff ? `diff ${diff.changed_files} file(s) +${diff.added_lines}/-${diff.deleted_lines} within budget` : 'diff stats not given; budget not checked',
    ];
    if (excused.length) {
      return verdict('PASS', 'runtime_success_allowlisted_test_failures', 4, [
        ...base,
        ...excused.slice(0, 5).map(({ cmd, pattern }) => `${cmd.id} ${quote(cmd.command)} failed but matches allowlist pattern ${JSON.stringify(pattern)}`),
      ]);
    }
    return verdict('PASS', 'runtime_success', 4, base);
  }

  // 5. failure exit
  const sources: Array<[string, string]> = [];
  if (input.timedOut) sources.push(['runner', `timed out: worker killed after the hard timeout`]);
  if (input.stderrTail) sources.push(['stderr', input.stderrTail]);
  for (const m of stream.error_messages) sources.push(['stream error', m]);
  if (input.exitCode === 127) sources.push(['runner', 'exit code 127: command not found']);
  const head = input.timedOut ? `worker timed out (exit ${input.exitCode ?? 'signal'})` : `worker exited ${input.exitCode ?? 'by signal'}`;
  for (const [kind, patterns, grade, code] of [
    ['configuration', CONFIG_PATTERNS, 'HUMAN_REVIEW', 'runtime_config_error'],
    ['hard', HARD_PATTERNS, 'HUMAN_REVIEW', 'runtime_hard_failure'],
    ['transient', TRANSIENT_PATTERNS, 'RETRYABLE', 'runtime_transient_failure'],
  ] as const) {
    for (const [source, text] of sources) {
      const hit = firstPattern(text, patterns);
      if (!hit) continue;
      const said = lineOf(text, hit.match);
      return verdict(grade, code, 5, [head, `${kind} pattern '${hit.name}' in ${source}: "${clip(hit.match, 120)}"`, ...(kind === 'configuration' && said ? [`codex said: ${clip(said, 400)}`] : [])]);
    }
  }
  return verdict('RETRYABLE', 'runtime_unknown_failure', 5, [
    head,
    sources.length ? `no known pattern in ${sources.map(([s]) => s).join(', ')}` : 'no stderr or stream error to match',
  ]);
}

/** The line of `text` that holds `match` (the whole message, not only the matched words). */
function lineOf(text: string, match: string): string {
  const at = text.indexOf(match);
  if (at === -1) return '';
  const start = text.lastIndexOf('\n', at) + 1;
  const end = text.indexOf('\n', at + match.length);
  return text.slice(start, end === -1 ? text.length : end).trim();
}

function clip(text: string, max: number): string {
  const one = text.replace(/\s+/g, ' ').trim();
  return one.length > max ? `${one.slice(0, max)}…` : one;
}

/**
 * The state a verdict leads to. DISCOVERY-stage success converges to
 * UNCHANGED (DISCOVERY -> LOCAL_VALIDATING is not a transition).
 */
export function stateAfterVerdict(grade: Grade, stateBefore: RunState, policy: RunAgentStepPolicy): RunState | 'UNCHANGED' {
  const target = grade === 'PASS' ? policy.success_state : grade === 'RETRYABLE' ? policy.on_retryable_state : policy.on_human_review_state;
  if (target === 'UNCHANGED' || target === stateBefore) return 'UNCHANGED';
  if (grade === 'PASS' && !canTransition(stateBefore, target)) return 'UNCHANGED';
  return target;
}
