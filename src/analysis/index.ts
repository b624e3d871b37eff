/**
 * Runtime analysis: pure functions over a codex stream and run facts. No database,
 * no state; the worker stores what `analyzeAttempt` returns.
 *
 *   const a = await analyzeAttempt({ streamPath, exitCode, stateBefore, attemptNo, runId, policy, ... });
 *   a.verdict      -> {grade, reason_code, next_action, evidence}
 *   a.targetState  -> state to move to per policy ('UNCHANGED' = stay)
 *   a.digest       -> run_digest (store with digestToJson: sorted keys)
 *   a.insightMarkdown -> manager_insight
 *   a.keepStream   -> keep the raw agent_event_stream (non-PASS, or sampled PASS)
 *
 * The live runner stores codex stdout stamped: `stdout.pipe(createStampTransform()).pipe(file)`
 * (or `stampLine(line, new Date())` per line), and may feed the raw chunks to a
 * `StreamAccumulator` (`pushChunk`, `end`), then call `analyzeParsed(acc.result(), ...)`.
 */
import type { RunState } from '../core/states.js';
import type { RunAgentStepPolicy } from '../policy.js';
import { buildDigest, type RunDigest, type SkillsSummary, type StageAttempt } from './digest.js';
import type { DiffStats } from './diff-stats.js';
import { renderInsight } from './insight.js';
import { retentionBucket, shouldKeepStream } from './retention.js';
import { parseStreamFile, type StreamParserOptions, type StreamSummary, type UsageTotals } from './stream-parser.js';
import { decideVerdict, stateAfterVerdict, type PreflightSummary, type Verdict } from './verdict.js';

export interface AnalyzeAttemptInput {
  /** Stored stream (stamped lines). */
  streamPath: string;
  /** Exit code of codex; null when killed by a signal. */
  exitCode: number | null;
  stateBefore: RunState;
  attemptNo: number;
  runId: string;
  /** The run's policy: `agentPolicyFor(policy, owner, repo)`. */
  policy: RunAgentStepPolicy;
  owner?: string;
  repo?: string;
  /** Step name for the stage timeline; default 'agent'. */
  step?: string;
  /** `computeDiffStats(workspace)` after the agent ran; null/omitted = budget not checked. */
  diffStats?: DiffStats | null;
  preflight?: PreflightSummary | null;
  skills?: Partial<SkillsSummary> | null;
  /** The run's step attempts (`service.listAttempts`) for `stages`; the current one may still be 'running'. */
  attempts?: readonly StageAttempt[];
  /** Usage of the previous attempt on the same thread, for the delta (codex usage is cumulative per thread). */
  previousUsage?: (Partial<UsageTotals> & { thread_id?: string | null }) | null;
  durationMs?: number | null;
  timedOut?: boolean;
  /** Tail of codex stderr; searched for hard/transient patterns when it exits non-zero. */
  stderrTail?: string;
  /** Whether the agent may commit/push itself (default false). */
  pushAllowed?: boolean;
  /** Commits/pushes/ref moves git shows in the worker's repository after the step (see src/worker/repo-state.ts). */
  repoChanges?: readonly string[];
  /** See VerdictInput.gitTamper. */
  gitTamper?: readonly string[];
  /** Override the state recorded as `state.after` (default: from the verdict and policy). */
  stateAfter?: RunState | 'UNCHANGED';
  /** Paths of this attempt's artifacts, recorded in the digest. */
  artifacts?: Record<string, string | null>;
  generatedAt?: Date;
  parserOptions?: StreamParserOptions;
}

export type AnalyzeParsedInput = Omit<AnalyzeAttemptInput, 'streamPath' | 'parserOptions'>;

export interface AttemptAnalysis {
  parse: StreamSummary;
  verdict: Verdict;
  /** Where the policy sends the run: a state, or 'UNCHANGED'. */
  targetState: RunState | 'UNCHANGED';
  digest: RunDigest;
  insightMarkdown: string;
  keepStream: boolean;
}

export async function analyzeAttempt(input: AnalyzeAttemptInput): Promise<AttemptAnalysis> {
  const parse = await parseStreamFile(input.streamPath, input.parserOptions);
  return analyzeParsed(parse, input);
}

export function analyzeParsed(parse: StreamSummary, input: AnalyzeParsedInput): AttemptAnalysis {
  const verdict = decideVerdict({
    stream: parse,
    exitCode: input.exitCode,
    timedOut: input.timedOut,
    stateBefore: input.stateBefore,
    attemptNo: input.attemptNo,
    policy: input.policy,
    diffStats: input.diffStats,
    preflight: input.preflight,
    pushAllowed: input.pushAllowed,
    stderrTail: input.stderrTail,
    repoChanges: input.repoChanges,
    gitTamper: input.gitTamper,
  });
  const targetState = stateAfterVerdict(verdict.grade, input.stateBefore, input.policy);
  const keepStream = shouldKeepStream(verdict.grade, input.runId, input.attemptNo, input.policy.success_event_stream_sample_pct);
  const digest = buildDigest({
    stream: parse,
    verdict,
    policy: input.policy,
    runId: input.runId,
    owner: input.owner,
    repo: input.repo,
    step: input.step,
    stateBefore: input.stateBefore,
    stateAfter: input.stateAfter ?? targetState,
    attemptNo: input.attemptNo,
    exitCode: input.exitCode,
    durationMs: input.durationMs,
    timedOut: input.timedOut,
    diffStats: input.diffStats,
    preflight: input.preflight,
    skills: input.skills,
    attempts: input.attempts,
    previousUsage: input.previousUsage,
    pushAllowed: input.pushAllowed,
    keepStream,
    retentionBucket: retentionBucket(input.runId, input.attemptNo),
    artifacts: input.artifacts,
    generatedAt: input.generatedAt,
  });
  return { parse, verdict, targetState, digest, insightMarkdown: renderInsight(digest), keepStream };
}

export { createStampTransform } from './stamp.js';
export { stampLine, STREAM_TS_FIELD, StreamAccumulator, LineSplitter, parseStreamFile, parseStream, emptyUsage } from './stream-parser.js';
export type { StreamSummary, StreamParserOptions, CommandRecord, UsageTotals, StreamUsage } from './stream-parser.js';
export { decideVerdict, stateAfterVerdict, compileAllowlist, allowlistMatch, REASON_CODES, HARD_PATTERNS, TRANSIENT_PATTERNS } from './verdict.js';
export type { AllowlistEntry, Verdict, VerdictInput, Grade, NextAction, ReasonCode, PreflightSummary } from './verdict.js';
export { buildDigest, digestToJson, sortKeysDeep, RunDigestSchema, DiffStatsSchema, SkillsSummarySchema, PreflightSummarySchema, recommendationFor, usageDelta } from './digest.js';
export type { RunDigest, SkillsSummary, StageAttempt, DigestInput } from './digest.js';
export { renderInsight, iterationHints } from './insight.js';
export { retentionBucket, shouldKeepStream } from './retention.js';
export { evaluatePrGate, PR_GATE_CHECKS } from './pr-gate.js';
export type { PrGateInput, PrGateResult, PrGateCheck } from './pr-gate.js';
export { computeDiffStats, readHeadSha, isIgnoredDiffPath, DIFF_IGNORED_SEGMENTS } from './diff-stats.js';
export type { DiffStats } from './diff-stats.js';
export { classifyCommand, splitShell, shortCommand, COMMAND_CATEGORIES } from './commands.js';
export type { CommandCategory, CommandFacts, SafetyRule, PushKind } from './commands.js';
