import type { App } from '../app.js';
import type { AttemptView, RunView } from '../core/models.js';
import { isTerminal, type RunState } from '../core/states.js';
import { scrubSecrets } from '../logger.js';
import { agentPolicyFor } from '../policy.js';
import { defaultTarget } from '../manager/default-target.js';
import type { InspectReport } from './inspect.js';
import { readTail } from './file-tail.js';

/** What inspect-run adds for an operator: timings, what to do next, what looks wrong, log tails. */

export interface StepTiming {
  finished: number;
  p50_ms: number;
  p90_ms: number;
  max_ms: number;
}

export interface LogTail {
  step: string;
  attempt_no: number;
  stream: 'stdout' | 'stderr';
  path: string;
  /** The last lines, secrets redacted; null when the file cannot be read. */
  lines: string[] | null;
  error: string | null;
}

/** Nearest-rank percentile of sorted values. */
function percentile(sorted: readonly number[], p: number): number {
  if (!sorted.length) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/** p50/p90/max duration per step over the run's finished attempts. */
export function stepTimings(attempts: readonly AttemptView[]): Record<string, StepTiming> {
  const by = new Map<string, number[]>();
  for (const a of attempts) if (a.duration_ms !== null && a.status !== 'running') (by.get(a.step) ?? by.set(a.step, []).get(a.step)!).push(a.duration_ms);
  const out: Record<string, StepTiming> = {};
  for (const [step, values] of by) {
    values.sort((x, y) => x - y);
    out[step] = { finished: values.length, p50_ms: percentile(values, 50), p90_ms: percentile(values, 90), max_ms: values.at(-1)! };
  }
  return out;
}

/** Commands that move the run on, most useful first (each one runs as printed). */
export function recommendedActions(app: App, run: RunView, latest: InspectReport['latest']): string[] {
  const id = run.run_id;
  const out: string[] = [];
  const state = run.state as RunState;
  if (state === 'FAILED_RETRYABLE') {
    const t = defaultTarget(app, id, 'retry');
    out.push(t ? `agentpr retry --run-id ${id} --target-state ${t.state}   # ${t.why}` : `agentpr show-run ${id}   # over the retry cap: read the last error, then retry or skip`);
  } else if (state === 'PAUSED') {
    const t = defaultTarget(app, id, 'resume');
    out.push(t ? `agentpr resume --run-id ${id} --target-state ${t.state}   # back to the state it was paused in` : `agentpr show-run ${id}   # pick a state to resume into`);
  } else if (state === 'NEEDS_HUMAN_REVIEW') {
    out.push(`agentpr analyze-stream --run-id ${id} --markdown   # the insight: why a person is needed`);
  } else if (state === 'PUSHED') {
    out.push(`agentpr request-open-pr --run-id ${id} --title "..."   # then approve-open-pr with the token (admin)`);
  } else if (state === 'CI_WAIT' || state === 'REVIEW_WAIT') {
    out.push(`agentpr sync-github --run-id ${id}`);
  }
  if (latest?.recommendation.action === 'human_review_gate') {
    out.push(`# the verdict passed but policy sends it to human review: check the diff, then agentpr mark-local-validated --run-id ${id}`);
  }
  if (!isTerminal(state)) out.push(`agentpr manager-tick --run-id ${id} --dry-run   # what the manager would do next`);
  return out;
}

/** Things that look wrong, each a sentence with what to do. */
export function inspectWarnings(app: App, report: Pick<InspectReport, 'run' | 'attempts' | 'digest_error' | 'active' | 'timeline'>, now = Date.now()): string[] {
  const { run, attempts } = report;
  const w: string[] = [];
  const policy = agentPolicyFor(app.policy, run.owner, run.repo);
  if (report.digest_error) w.push(`the latest digest cannot be read (${report.digest_error}); analyze-stream the attempt's stream again`);
  const failed = new Map<string, number>();
  for (const a of attempts) if (a.status === 'failed' || a.status === 'timed_out') failed.set(a.step, (failed.get(a.step) ?? 0) + 1);
  for (const [step, n] of failed) {
    if (n > policy.max_retryable_attempts) w.push(`${step} failed ${n} times, over max_retryable_attempts ${policy.max_retryable_attempts}: retrying again is unlikely to help`);
  }
  for (const a of attempts) {
    if (a.status === 'running' && !report.active && now - Date.parse(a.started_at) > 60_000) {
      w.push(`${a.step}#${a.attempt_no} is recorded as running since ${a.started_at} but no process in this server runs it (another process, or one that died: the next start marks it failed)`);
    }
  }
  const lastAt = report.timeline.at(-1)?.at ?? run.updated_at;
  if (!isTerminal(run.state as RunState) && now - Date.parse(lastAt) > 24 * 3_600_000) {
    w.push(`nothing happened for ${Math.round((now - Date.parse(lastAt)) / 3_600_000)} h in ${run.state}: is a manager loop running?`);
  }
  return w;
}

/** The last `lines` lines of the newest attempts' stdout/stderr logs (at most 64 KiB read per file). */
export function logTails(attempts: readonly AttemptView[], lines: number, maxAttempts = 3): LogTail[] {
  const out: LogTail[] = [];
  for (const a of [...attempts].sort((x, y) => y.attempt_id - x.attempt_id).slice(0, maxAttempts)) {
    for (const stream of ['stdout', 'stderr'] as const) {
      const path = stream === 'stdout' ? a.stdout_log : a.stderr_log;
      if (!path) continue;
      try {
        out.push({ step: a.step, attempt_no: a.attempt_no, stream, path, lines: tailOf(path, lines), error: null });
      } catch (err) {
        out.push({ step: a.step, attempt_no: a.attempt_no, stream, path, lines: null, error: (err as NodeJS.ErrnoException).code ?? String(err) });
      }
    }
  }
  return out;
}

function tailOf(path: string, lines: number): string[] {
  const all = scrubSecrets(readTail(path, 64 * 1024)).split('\n');
  if (all.at(-1) === '') all.pop();
  return all.slice(-lines);
}
