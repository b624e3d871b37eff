import { isTerminal, type RunState } from '../core/states.js';
import { ACTION_TOOL, isExecutable, type Decision, type ManagerAction, type MaterializeContract, type Priority } from './actions.js';

/**
 * The rules decision, pure: run facts in, one decision out. Grounded in deterministic
 * facts only — state, step attempts, artifacts and the latest `run_digest`;
 * the insight text never reaches this function.
 */

export interface StepCounts {
  total: number;
  succeeded: number;
  failed: number;
  running: number;
}

export interface DigestFacts {
  artifact_id: number;
  /** PASS | RETRYABLE | HUMAN_REVIEW (the verdict's grade), when the digest says. */
  grade: string | null;
  reason_code: string | null;
  /** manager_recommendation.action: advance | retry | human_review | human_review_gate. */
  recommendation: string | null;
  priority: string | null;
  /**
   * False once a command (a person's resume/retry/start, or the manager's own) was applied after
   * the digest: that command supersedes the advice the digest gave about the attempt before it.
   */
  current: boolean;
}

export interface PromptFacts {
  kind: 'text' | 'file';
  value: string;
  /** Where it came from: tick input, run budget. */
  source: string;
}

export interface RunFacts {
  run_id: string;
  owner: string;
  repo: string;
  state: RunState;
  last_error: string | null;
  workspace_dir: string;
  updated_at: string;
  /** Step attempts per step name (preflight, prepare, agent, finish, ...). */
  attempts: Readonly<Record<string, StepCounts>>;
  /** The latest `contract` artifact (recorded by mark-plan-ready), if any. */
  contract_artifact: string | null;
  /** A contract discovery produced for this run (worker file or earlier artifact), if any. */
  discovery_contract: string | null;
  /** Where the manager writes the auto-contract when discovery produced none. */
  auto_contract_path: string;
  prompt: PromptFacts | null;
  /** Why no prompt is usable (e.g. a prompt_file that does not exist). */
  prompt_problem: string | null;
  digest: DigestFacts | null;
  /** run-prepare options from the run budget (upstream_url, fork_url, base, feature). */
  prepare_args: Readonly<Record<string, string>>;
  /** run-finish arguments (commit text), gathered for LOCAL_VALIDATING runs. */
  finish: { changes: string; title?: string } | null;
  /** policy run_agent_step.max_retryable_attempts for the run's repository. */
  max_retryable_attempts: number;
  /** Seconds since GitHub last told us about a CI_WAIT / REVIEW_WAIT run (webhook or sync); null when never. */
  github_quiet_sec?: number | null;
  /** policy github.resync_after_sec: a waiting run quiet for this long is synced again. */
  resync_after_sec?: number;
  /** The linked PR, when there is one (an iteration pushes onto it). */
  pr_number?: number | null;
}

export interface RuleDecision extends Decision {
  materialize?: MaterializeContract;
}

const NO_COUNTS: StepCounts = { total: 0, succeeded: 0, failed: 0, running: 0 };

export function stepCounts(facts: RunFacts, step: string): StepCounts {
  return facts.attempts[step] ?? NO_COUNTS;
}

function decision(facts: RunFacts, action: ManagerAction, reason: string, priority: Priority, args: Record<string, unknown> = {}): RuleDecision {
  return {
    run_id: facts.run_id,
    state: facts.state,
    action,
    tool: isExecutable(action) ? ACTION_TOOL[action] : null,
    args: isExecutable(action) ? { run_id: facts.run_id, ...args } : {},
    reason,
    priority,
  };
}

/** The step a failure names: `step:reason:message` (worker.step.failed) or `timeout:step`. */
export function failedStep(lastError: string | null): string | null {
  if (!lastError) return null;
  const [first, second] = lastError.split(':');
  if (first === 'timeout') return second || null;
  return first || null;
}

/** The latest digest, when it still speaks for the run (no command applied since). */
function currentDigest(facts: RunFacts): DigestFacts | null {
  return facts.digest && facts.digest.current ? facts.digest : null;
}

function digestSaysHuman(d: DigestFacts | null): boolean {
  return d !== null && (d.grade === 'HUMAN_REVIEW' || d.recommendation === 'human_review' || d.recommendation === 'human_review_gate');
}

function digestLabel(d: DigestFacts): string {
  return `${d.grade ?? 'unknown grade'}${d.reason_code ? `/${d.reason_code}` : ''}`;
}

function promptArgs(p: PromptFacts): Record<string, unknown> {
  return p.kind === 'file' ? { prompt_file: p.value } : { prompt: p.value };
}

/** The auto-contract's text: the run's task as the manager knows it, for the worker and the PR gate. */
export function autoContractText(facts: RunFacts): string {
  const task =
    facts.prompt === null
      ? '(no prompt)'
      : facts.prompt.kind === 'file'
        ? `See the prompt file: ${facts.prompt.value}`
        : facts.prompt.value;
  return [
    `# Contract for ${facts.owner}/${facts.repo} (${facts.run_id})`,
    '',
    'Written by the agentpr manager: discovery produced no contract for this run.',
    '',
    '## Task',
    task,
    '',
    '## Rules',
    '1. Read the repository\'s contributing guide, PR template and CI workflow before editing.',
    '2. Keep the diff minimal; no unrelated changes.',
    '3. Use the repository\'s own toolchain and run its tests and linters; report the commands.',
    '4. If required evidence cannot be produced, stop and say so (the run goes to human review).',
    '',
  ].join('\n');
}

/** The rules for one run. */
export function decide(facts: RunFacts): RuleDecision {
  const state = facts.state;
  if (isTerminal(state)) return decision(facts, 'noop', `${state} is terminal; nothing to do`, 'low');

  for (const [step, counts] of Object.entries(facts.attempts)) {
    if (counts.running > 0) return decision(facts, 'noop', `a ${step} attempt is still running; waiting for it to finish`, 'low');
  }

  const digest = currentDigest(facts);
  switch (state) {
    case 'PAUSED':
      return decision(facts, 'wait_human', 'paused by a person; resume it to continue', 'normal');
    case 'PUSHED':
      if (facts.pr_number) {
        // Only with policy github.iteration_push: confirm does an iteration stop here.
        return decision(facts, 'wait_human', `iteration pushed to PR #${facts.pr_number}; confirm it with link-pr (policy github.iteration_push is confirm)`, 'normal');
      }
      return decision(facts, 'wait_human', 'pushed; a person opens the PR (request-open-pr, then approve-open-pr)', 'normal');
    case 'NEEDS_HUMAN_REVIEW':
      return decision(facts, 'wait_human', `needs human review${facts.last_error ? `: ${facts.last_error}` : ''}`, 'high');
    case 'QUEUED':
      return decision(facts, 'start_discovery', 'queued; start discovery', 'low');
    case 'DISCOVERY': {
      if (stepCounts(facts, 'prepare').succeeded === 0) {
        return decision(facts, 'run_prepare', 'discovery: prepare has not run successfully yet (fork, clone, branch)', 'low', { ...facts.prepare_args });
      }
      if (digestSaysHuman(digest)) {
        return decision(facts, 'wait_human', `latest digest (${digestLabel(digest!)}) asks for a person`, 'high');
      }
      if (facts.discovery_contract) {
        return decision(facts, 'mark_plan_ready', `prepare done; contract found at ${facts.discovery_contract}`, 'normal', {
          contract_path: facts.discovery_contract,
        });
      }
      if (facts.prompt) {
        return {
          ...decision(facts, 'mark_plan_ready', `prepare done; discovery produced no contract, so the manager writes one from the ${facts.prompt.source} prompt`, 'normal', {
            contract_path: facts.auto_contract_path,
          }),
          materialize: { kind: 'materialize_contract', path: facts.auto_contract_path, content: autoContractText(facts) },
        };
      }
      return decision(
        facts,
        'wait_human',
        `prepare done but there is no contract and no prompt to write one from${facts.prompt_problem ? ` (${facts.prompt_problem})` : ''}; run mark-plan-ready with a contract_path, or give a prompt`,
        'normal',
      );
    }
    case 'PLAN_READY':
      return decision(facts, 'start_implementation', 'plan ready; start implementation', 'normal');
    case 'IMPLEMENTING':
    case 'ITERATING': {
      if (digestSaysHuman(digest)) {
        return decision(facts, 'wait_human', `latest digest (${digestLabel(digest!)}) asks for a person`, 'high');
      }
      if (digest && digest.grade === 'PASS') {
        return decision(
          facts,
          'wait_human',
          `latest agent attempt passed (${digestLabel(digest)}) but policy kept the run in ${state}; mark-local-validated to continue`,
          'normal',
        );
      }
      if (!facts.prompt) {
        return decision(
          facts,
          'wait_human',
          `${state}: no prompt for the worker${facts.prompt_problem ? ` (${facts.prompt_problem})` : ''}; give one (tick input prompt/prompt_file, or the run budget's prompt_file)`,
          'normal',
        );
      }
      const why = state === 'ITERATING' ? 'iterating on CI or review feedback' : 'implementing';
      return decision(facts, 'run_agent_step', `${why}; run the worker (prompt from ${facts.prompt.source})`, 'normal', promptArgs(facts.prompt));
    }
    case 'LOCAL_VALIDATING':
      if (digestSaysHuman(digest)) {
        return decision(facts, 'wait_human', `latest digest (${digestLabel(digest!)}) asks for a person`, 'high');
      }
      return decision(facts, 'run_finish', 'validated locally; commit and push (finish)', 'high', {
        changes: facts.finish?.changes ?? `Changes prepared by agentpr run ${facts.run_id} for ${facts.owner}/${facts.repo}`,
        ...(facts.finish?.title ? { title: facts.finish.title } : {}),
      });
    case 'FAILED_RETRYABLE': {
      if (digestSaysHuman(digest)) {
        return decision(facts, 'wait_human', `latest digest (${digestLabel(digest!)}) asks for a person`, 'high');
      }
      const step = failedStep(facts.last_error);
      if (step) {
        const tries = stepCounts(facts, step).total;
        if (tries > facts.max_retryable_attempts) {
          return decision(
            facts,
            'wait_human',
            `${step} failed ${tries} times, over max_retryable_attempts ${facts.max_retryable_attempts}; a person decides (last error: ${facts.last_error})`,
            'high',
          );
        }
      }
      const target = stepCounts(facts, 'prepare').succeeded === 0 || !facts.contract_artifact ? 'DISCOVERY' : 'IMPLEMENTING';
      const why = target === 'DISCOVERY' ? 'no successful prepare or no contract yet' : 'prepare and contract are in place';
      const priority: Priority = digest?.priority === 'high' ? 'high' : 'normal';
      return decision(facts, 'retry', `retryable failure (${facts.last_error ?? 'no error recorded'}); retry from ${target}: ${why}`, priority, {
        target_state: target,
      });
    }
    case 'CI_WAIT':
    case 'REVIEW_WAIT': {
      // The webhook keeps a waiting run current; a sync fills in what a lost delivery never said.
      const quiet = facts.github_quiet_sec;
      const limit = facts.resync_after_sec;
      if (quiet !== undefined && quiet !== null && limit !== undefined && quiet < limit) {
        return decision(facts, 'noop', `${state}: GitHub reported ${quiet} s ago; re-sync once it has been quiet for ${limit} s (policy github.resync_after_sec)`, 'low');
      }
      const why = quiet === undefined || quiet === null ? 'not synced yet' : `no word from GitHub for ${quiet} s`;
      return decision(facts, 'sync_github', `${state}: sync PR state, checks and reviews from GitHub (${why})`, 'normal');
    }
    default:
      return decision(facts, 'wait_human', `no rule for ${state}`, 'normal');
  }
}
