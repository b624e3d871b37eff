import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { z } from 'zod';
import type { App } from '../app.js';
import { UserInputError, errorMessage } from '../core/errors.js';
import { nowIso } from '../core/ids.js';
import { RunIdSchema } from '../core/models.js';
import { RunStateSchema, isTerminal, type RunState } from '../core/states.js';
import { effectiveInput, formatZodError, type Registry, type ToolContext } from '../registry.js';
import type { ManagerDecisionInput } from '../service.js';
import {
  ACTION_TOOL,
  DecisionModeSchema,
  DecisionSchema,
  ManagerActionSchema,
  PRIORITY_RANK,
  isExecutable,
  type Decision,
  type DecisionMode,
  type MaterializeContract,
} from './actions.js';
import { gatherFacts, readJsonFile } from './facts.js';
import { createManagerLlm, trimDigest, type ManagerLlm, type ModelProposal } from './llm.js';
import { decide, type RuleDecision, type RunFacts } from './rules.js';
import { checkProposal } from './proposal-check.js';
import { modelHealthOf, type ModelHealth } from './model-health.js';

export const TickInputSchema = z.object({
  run_id: RunIdSchema.optional().describe('Only this run (in any state); default: every non-terminal run'),
  decision_mode: DecisionModeSchema.default('rules').describe(
    'rules: the built-in rules decide; llm: the model decides by calling a tool; hybrid: the model\'s call runs only when it agrees with the rules',
  ),
  dry_run: z.boolean().default(false).describe('Decide and record, but execute nothing'),
  max_actions: z
    .number()
    .int()
    .min(1)
    .max(1000)
    .optional()
    .describe('Most actions this tick executes (default: policy manager.max_actions_per_tick)'),
  max_concurrent_agent_steps: z
    .number()
    .int()
    .min(1)
    .max(64)
    .optional()
    .describe('Agent steps allowed to run at once, counting running ones (default: policy manager.max_concurrent_agent_steps)'),
  prompt: z.string().min(1).max(100_000).optional().describe('Prompt for the worker in IMPLEMENTING/ITERATING runs (else the run budget\'s prompt_file or prompt)'),
  prompt_file: z.string().min(1).max(4096).optional().describe('Prompt file for the worker (instead of prompt)'),
  limit: z.number().int().min(1).max(10_000).optional().describe('Most runs considered when run_id is not given (the most urgent first); default: all'),
  disable_auto_contract: z
    .boolean()
    .default(false)
    .describe('Never write a contract for a run whose discovery produced none; such a run waits for a person (mark-plan-ready with a contract_path)'),
  contract_template_file: z
    .string()
    .min(1)
    .max(4096)
    .optional()
    .describe('Markdown file copied into contracts the manager writes (the task from the prompt is appended)'),
});
export type TickInput = z.input<typeof TickInputSchema>;

export const ModelProposalSchema = z.object({
  model: z.string(),
  tool: z.string().nullable(),
  action: ManagerActionSchema.nullable(),
  args: z.record(z.string(), z.unknown()).nullable(),
  content: z.string().nullable(),
  error: z.string().nullable(),
  extra_calls: z.number().int(),
});
export type ModelProposalView = z.infer<typeof ModelProposalSchema>;

export const DecisionOutcomeSchema = z.enum([
  'executed', // the tool call succeeded
  'failed', // the tool call returned an error
  'dry_run', // would have been executed
  'waiting', // wait_human: a person acts next
  'noop', // nothing to do
  'deferred', // a per-tick limit was reached; next tick
  'skipped', // llm mode: the model could not be asked
  'refused', // llm mode: the model's call was invalid and was not executed
  'stopped', // the loop was asked to stop before this action
]);

export const TickDecisionSchema = DecisionSchema.extend({
  source: z.enum(['rules', 'model']),
  executed: z.boolean(),
  outcome: DecisionOutcomeSchema,
  error: z.string().nullable(),
  state_after: RunStateSchema.nullable(),
  model_proposal: ModelProposalSchema.nullable(),
  disagreement: z.boolean(),
});
export type TickDecision = z.infer<typeof TickDecisionSchema>;

export const TickReportSchema = z.object({
  tick_id: z.string(),
  mode: DecisionModeSchema,
  dry_run: z.boolean(),
  started_at: z.string(),
  finished_at: z.string(),
  duration_ms: z.number().int(),
  runs_considered: z.number().int(),
  actions_executed: z.number().int(),
  actions_failed: z.number().int(),
  deferred: z.number().int(),
  stopped: z.boolean(),
  decisions: z.array(TickDecisionSchema),
});
export type TickReport = z.infer<typeof TickReportSchema>;

export interface TickOptions {
  /** Checked between actions: once aborted, no further action starts (the current one finishes). */
  stopSignal?: AbortSignal;
  /** Inject a model (tests); default from AGENTPR_MANAGER_* when the mode needs one. */
  llm?: ManagerLlm;
  env?: NodeJS.ProcessEnv;
  /** Passed on to the tools the tick calls. */
  skipDoctor?: boolean;
  actor?: string;
  progress?: ToolContext['progress'];
  /** Default: one per App (shared by the ticks of a loop). */
  modelHealth?: ModelHealth;
}

/** States that wait for a person: the model is not asked about them in any mode. */
const PERSON_STATES: ReadonlySet<RunState> = new Set(['PAUSED', 'PUSHED', 'NEEDS_HUMAN_REVIEW']);

export function newTickId(): string {
  return `tick_${randomBytes(6).toString('hex')}`;
}

function runningAgentSteps(app: App): number {
  return (app.db.prepare(`SELECT COUNT(*) AS n FROM step_attempts WHERE step = 'agent' AND status = 'running'`).get() as { n: number }).n;
}

function materialize(m: MaterializeContract): void {
  if (existsSync(m.path)) return;
  mkdirSync(dirname(m.path), { recursive: true });
  writeFileSync(m.path, m.content, { encoding: 'utf8', flag: 'wx' });
}

function readText(path: string, max: number): string | null {
  try {
    return readFileSync(path, 'utf8').slice(0, max);
  } catch {
    return null;
  }
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

type Resolution =
  | { kind: 'execute'; decision: Decision; materialize?: MaterializeContract; source: 'rules' | 'model'; disagreement: boolean; fallback?: RuleDecision; refusal?: string }
  | { kind: 'stop'; decision: Decision; source: 'rules' | 'model'; outcome: 'waiting' | 'noop' | 'skipped' | 'refused'; error: string | null; disagreement: boolean; refusal?: string };

/**
 * Combines the rules' decision with the model's proposal. llm: the model may take the rules' step
 * (with the rules' arguments) or hold the run for a person; anything else is refused and recorded.
 * hybrid: the same, except that a refused or disagreeing proposal leaves the decision to the rules.
 */
function resolve(
  mode: DecisionMode,
  facts: RunFacts,
  rule: RuleDecision,
  proposal: ModelProposal | null,
  modelError: string | null,
  modelDown: string | null = null,
): Resolution {
  const rulesExec = (note: string | null, disagreement = false): Resolution =>
    isExecutable(rule.action)
      ? { kind: 'execute', decision: note ? { ...rule, reason: `${rule.reason} (${note})` } : rule, materialize: rule.materialize, source: 'rules', disagreement }
      : { kind: 'stop', decision: note ? { ...rule, reason: `${rule.reason} (${note})` } : rule, source: 'rules', outcome: rule.action === 'noop' ? 'noop' : 'waiting', error: null, disagreement };

  if (modelDown !== null) return rulesExec(`model not asked: ${modelDown}; rules decided`);
  if (modelError !== null || proposal === null) {
    const msg = modelError ?? 'no answer from the model';
    if (mode === 'hybrid') return rulesExec(`model unavailable: ${msg}; rules decided`);
    return { kind: 'stop', decision: rule, source: 'model', outcome: 'skipped', error: `model request failed: ${msg}; run skipped this tick`, disagreement: false };
  }

  let invalid = proposal.error;
  if (!invalid && proposal.tool !== null) {
    const argRun = proposal.args?.run_id;
    if (proposal.action === null) invalid = `the model called ${proposal.tool}, which is not a manager action`;
    else if (argRun !== undefined && argRun !== facts.run_id) invalid = `the model called ${proposal.tool} for ${String(argRun)}, not for ${facts.run_id}`;
    else if (proposal.tool === ACTION_TOOL.mark_plan_ready) {
      const path = proposal.args?.contract_path;
      if (typeof path === 'string' && path !== rule.materialize?.path && !isFile(path)) invalid = `the model's contract_path ${path} is not a file`;
    }
  }
  if (invalid) {
    proposal.error = invalid; // the stored proposal carries the reason it was refused
    if (mode === 'hybrid') return rulesExec(`model's call refused: ${invalid}; rules decided`);
    return { kind: 'stop', decision: rule, source: 'model', outcome: 'refused', error: invalid, disagreement: proposal.action !== rule.action };
  }

  const modelAction = proposal.action ?? 'wait_human';
  const disagreement = modelAction !== rule.action;
  if (mode === 'hybrid' && disagreement) {
    return rulesExec(`model proposed ${proposal.tool ?? 'no tool (wait)'}, which disagrees with the rules; rules win`, true);
  }
  const reason = proposal.content ? `model: ${proposal.content}` : `model chose ${proposal.tool ?? 'to wait'}`;
  if (proposal.tool === null) {
    return { kind: 'stop', decision: { ...rule, action: 'wait_human', tool: null, args: {}, reason }, source: 'model', outcome: 'waiting', error: null, disagreement };
  }
  // The model may take the rules' step or hold the run; every argument is the rules' (see proposal-check.ts).
  const check = checkProposal(rule, proposal.tool, modelAction, proposal.args ?? {});
  if (!check.ok) {
    if (mode === 'hybrid') return { ...rulesExec(`model's call refused: ${check.reason}; rules decided`, true), refusal: check.reason };
    return { kind: 'stop', decision: rule, source: 'model', outcome: 'refused', error: check.reason, disagreement: true, refusal: check.reason };
  }
  const decision: Decision = { ...rule, action: modelAction, tool: proposal.tool, args: check.args, reason };
  return { kind: 'execute', decision, materialize: rule.materialize, source: 'model', disagreement, fallback: mode === 'hybrid' ? rule : undefined };
}

function proposalView(llm: ManagerLlm, p: ModelProposal | null, error: string | null): ModelProposalView {
  if (!p) return { model: llm.model, tool: null, action: null, args: null, content: null, error: `request failed: ${error ?? 'no answer'}`, extra_calls: 0 };
  return { model: llm.model, ...p };
}

/**
 * One manager tick: decide for one run or every non-terminal run and (unless dry_run) execute
 * through `registry.call` with entry 'manager' — the same handlers, validation and doctor as any
 * other entry. A run advances through several actions in one tick until it waits, fails, repeats
 * a state/action pair, or a limit is reached. Every decision is stored (Service.recordDecisions).
 */
export async function runTick(app: App, registry: Registry, rawInput: TickInput, opts: TickOptions = {}): Promise<TickReport> {
  const input = TickInputSchema.parse(rawInput);
  const mode = input.decision_mode;
  const startedAt = nowIso();
  const t0 = performance.now();
  const tickId = newTickId();
  const maxActions = input.max_actions ?? app.policy.manager.max_actions_per_tick;
  const maxAgents = input.max_concurrent_agent_steps ?? app.policy.manager.max_concurrent_agent_steps;
  const llm = mode === 'rules' ? undefined : (opts.llm ?? createManagerLlm(registry, mode, opts.env ?? app.env));
  const health = opts.modelHealth ?? modelHealthOf(app);
  const cooldownSec = app.policy.manager.model_cooldown_sec;
  if (input.run_id) app.service.getRun(input.run_id);

  const promptInput = { prompt: input.prompt, prompt_file: input.prompt_file };
  const template = input.contract_template_file !== undefined ? readTemplate(input.contract_template_file) : undefined;
  const decideWith = (facts: RunFacts): RuleDecision => contractOptions(decide(facts), input.disable_auto_contract, template);
  const all = gatherFacts(app, { run_id: input.run_id, ...promptInput });
  const queue = all
    .map((facts, i) => ({ facts, rule: decideWith(facts), i }))
    .sort((a, b) => PRIORITY_RANK[a.rule.priority] - PRIORITY_RANK[b.rule.priority] || a.i - b.i)
    .slice(0, input.run_id ? undefined : input.limit);

  const decisions: TickDecision[] = [];
  let executed = 0;
  let failed = 0;
  let deferred = 0;
  let stopped = false;
  const log = app.logger.child({ tick_id: tickId, mode });

  const record = (d: Decision, extra: Omit<TickDecision, keyof Decision>): void => {
    decisions.push({ ...d, ...extra });
  };

  for (const item of queue) {
    let facts = item.facts;
    let rule = item.rule;
    const seen = new Set<string>();
    const executedHere = new Set<string>();
    for (;;) {
      const signature = `${facts.state}:${rule.action}`;
      if (seen.has(signature)) break; // the last action did not move the run; next tick
      seen.add(signature);

      const consult =
        llm !== undefined &&
        !isTerminal(facts.state) &&
        !PERSON_STATES.has(facts.state) &&
        !Object.values(facts.attempts).some((c) => c.running > 0) &&
        (mode === 'llm' || isExecutable(rule.action));
      const base = { state_after: null, model_proposal: null, disagreement: false, executed: false, error: null } as const;

      if (!consult && !isExecutable(rule.action)) {
        record(rule, { ...base, source: 'rules', outcome: rule.action === 'noop' ? 'noop' : 'waiting' });
        break;
      }
      if (opts.stopSignal?.aborted) {
        stopped = true;
        record(rule, { ...base, source: 'rules', outcome: 'stopped', error: 'the manager was asked to stop before this action' });
        break;
      }
      if (executed + failed >= maxActions) {
        deferred++;
        record(rule, { ...base, source: 'rules', outcome: 'deferred', error: `max_actions ${maxActions} reached this tick` });
        break;
      }

      let res: Resolution;
      let proposal: ModelProposalView | null = null;
      if (consult && llm) {
        const down = health.unavailable();
        let p: ModelProposal | null = null;
        let err: string | null = null;
        if (down === null) {
          try {
            const digestArt = app.service.latestArtifact(facts.run_id, 'run_digest');
            const digest = digestArt ? readJsonFile(digestArt.uri) : undefined;
            const insightArt = app.service.latestArtifact(facts.run_id, 'manager_insight');
            p = await llm.propose({ facts, digest: digest ? trimDigest(digest) : null, insight: insightArt ? readText(insightArt.uri, 4000) : null }, opts.stopSignal);
          } catch (e) {
            err = errorMessage(e);
            if (!opts.stopSignal?.aborted) {
              health.markDown(err, cooldownSec);
              log.warn({ run_id: facts.run_id, err, cooldown_sec: cooldownSec }, 'manager model request failed; the rules decide until the cool-down ends');
            }
          }
          if (opts.stopSignal?.aborted) {
            stopped = true;
            record(rule, { ...base, source: 'rules', outcome: 'stopped', error: 'the manager was asked to stop while the model was being asked' });
            break;
          }
        }
        res = resolve(mode, facts, rule, p, err, down);
        proposal = down === null ? proposalView(llm, p, err) : null;
        if (proposal && res.refusal) proposal = { ...proposal, error: res.refusal };
      } else {
        res = { kind: 'execute', decision: rule, materialize: rule.materialize, source: 'rules', disagreement: false };
      }
      const withModel = { model_proposal: proposal, disagreement: res.disagreement };

      if (res.kind === 'stop') {
        record(res.decision, { ...base, ...withModel, source: res.source, outcome: res.outcome, error: res.error });
        break;
      }
      let d = res.decision;
      const doneSignature = `${facts.state}:${d.action}`;
      if (res.source === 'model' && executedHere.has(doneSignature)) {
        // The model repeats an action that already ran here without moving the run.
        record(d, { ...base, ...withModel, source: res.source, outcome: 'deferred', error: `${d.action} already ran in ${facts.state} this tick without moving the run` });
        deferred++;
        break;
      }
      executedHere.add(doneSignature);
      if (d.action === 'run_agent_step') {
        const running = runningAgentSteps(app);
        if (running >= maxAgents) {
          deferred++;
          record(d, { ...base, ...withModel, source: res.source, outcome: 'deferred', error: `${running} agent step(s) running; max_concurrent_agent_steps is ${maxAgents}` });
          break;
        }
      }
      if (input.dry_run) {
        // The same zod check the registry would apply, so a dry run shows a call that would be refused.
        const tool = d.tool ? registry.get(d.tool) : undefined;
        const check = tool ? effectiveInput(tool).safeParse(d.args) : undefined;
        const error = !tool ? `tool ${d.tool} is not registered` : check && !check.success ? formatZodError(check.error, tool.name, d.args) : null;
        record(d, { ...base, ...withModel, source: res.source, outcome: error && res.source === 'model' && mode === 'llm' ? 'refused' : 'dry_run', error });
        break;
      }

      let source = res.source;
      let materializeStep = res.materialize;
      let modelRefusal: string | null = null;
      const ctx: ToolContext = { app, entry: 'manager', actor: opts.actor ?? `manager-tick:${tickId}`, skipDoctor: opts.skipDoctor };
      const call = async (dec: Decision, mat?: MaterializeContract) => {
        if (mat) materialize(mat);
        return registry.call(dec.tool!, dec.args, ctx, { maxTier: 'write' });
      };
      let outcome;
      try {
        outcome = await call(d, materializeStep);
      } catch (e) {
        outcome = { ok: false as const, code: 'internal' as const, error: errorMessage(e) };
      }
      if (!outcome.ok && outcome.code === 'invalid_input' && source === 'model') {
        // Refused by the tool's zod schema (or its own input checks): never executed.
        modelRefusal = outcome.error;
        if (res.fallback && isExecutable(res.fallback.action)) {
          d = { ...res.fallback, reason: `${res.fallback.reason} (model's call refused: ${outcome.error}; rules decided)` };
          source = 'rules';
          materializeStep = res.fallback.materialize;
          try {
            outcome = await call(d, materializeStep);
          } catch (e) {
            outcome = { ok: false as const, code: 'internal' as const, error: errorMessage(e) };
          }
        }
      }
      const stateAfter = app.service.findRun(facts.run_id)?.state ?? null;
      const modelView = proposal && modelRefusal ? { ...proposal, error: modelRefusal } : proposal;
      if (modelRefusal && source === 'model') {
        record(d, { ...base, model_proposal: modelView, disagreement: res.disagreement, source, outcome: 'refused', error: modelRefusal, state_after: stateAfter });
        break;
      }
      if (outcome.ok) {
        executed++;
        record(d, { ...base, model_proposal: modelView, disagreement: res.disagreement, source, executed: true, outcome: 'executed', state_after: stateAfter });
      } else {
        failed++;
        log.warn({ run_id: facts.run_id, tool: d.tool, code: outcome.code, error: outcome.error }, 'manager action failed');
        record(d, { ...base, model_proposal: modelView, disagreement: res.disagreement, source, executed: true, outcome: 'failed', error: `${outcome.code}: ${outcome.error}`, state_after: stateAfter });
        break;
      }
      await opts.progress?.({ progress: decisions.length, message: `${facts.run_id}: ${d.action} -> ${stateAfter ?? '?'}` });

      const next = gatherFacts(app, { run_id: facts.run_id, ...promptInput })[0];
      if (!next) break;
      facts = next;
      rule = decideWith(next);
    }
    if (stopped) break;
  }

  app.service.recordDecisions(decisions.map((d) => toRecord(tickId, mode, input.dry_run, d)));
  const report: TickReport = {
    tick_id: tickId,
    mode,
    dry_run: input.dry_run,
    started_at: startedAt,
    finished_at: nowIso(),
    duration_ms: Math.round(performance.now() - t0),
    runs_considered: queue.length,
    actions_executed: executed,
    actions_failed: failed,
    deferred,
    stopped,
    decisions,
  };
  log.info({ runs: queue.length, executed, failed, deferred, stopped, duration_ms: report.duration_ms }, 'manager tick done');
  return report;
}

function readTemplate(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new UserInputError(`contract_template_file ${path} cannot be read (${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}); give a readable Markdown file`);
  }
}

/** disable_auto_contract and contract_template_file applied to the rules' decision. */
function contractOptions(rule: RuleDecision, disabled: boolean, template: string | undefined): RuleDecision {
  if (!rule.materialize) return rule;
  if (disabled) {
    const { materialize: _dropped, ...rest } = rule;
    return {
      ...rest,
      action: 'wait_human',
      tool: null,
      args: {},
      reason: 'prepare done; discovery produced no contract and auto contracts are disabled (disable_auto_contract): run mark-plan-ready with a contract_path',
    };
  }
  if (template === undefined) return rule;
  const task = rule.materialize.content.split('\n## Task\n')[1]?.split('\n## ')[0]?.trim() ?? '';
  return { ...rule, materialize: { ...rule.materialize, content: `${template.trimEnd()}\n\n## Task\n${task}\n` } };
}

function toRecord(tickId: string, mode: DecisionMode, dryRun: boolean, d: TickDecision): ManagerDecisionInput {
  return {
    tick_id: tickId,
    run_id: d.run_id,
    mode,
    dry_run: dryRun,
    state: d.state,
    action: d.action,
    tool: d.tool,
    args: d.args,
    reason: d.reason,
    priority: d.priority,
    source: d.source,
    model_proposal: d.model_proposal,
    disagreement: d.disagreement,
    executed: d.executed,
    outcome: d.outcome,
    error: d.error,
  };
}

/** A short readable summary of a tick for people (CLI, MCP text, Telegram). */
export function describeTick(r: TickReport): string {
  const head = `${r.tick_id} (${r.mode}${r.dry_run ? ', dry run' : ''}): ${r.runs_considered} run(s), ${r.actions_executed} executed, ${r.actions_failed} failed, ${r.deferred} deferred${r.stopped ? ', stopped early' : ''}, ${r.duration_ms} ms`;
  const lines = r.decisions.slice(0, 50).map((d) => {
    const what = d.tool ? `${d.action} (${d.tool})` : d.action;
    const after = d.state_after && d.state_after !== d.state ? ` -> ${d.state_after}` : '';
    const extra = d.error ? ` — ${d.error}` : '';
    const model = d.model_proposal ? ` [model: ${d.model_proposal.tool ?? 'wait'}${d.disagreement ? ', disagreed' : ''}]` : '';
    return `  ${d.run_id} ${d.state}${after}: ${what} ${d.outcome}${model} — ${d.reason}${extra}`;
  });
  if (r.decisions.length > 50) lines.push(`  ... ${r.decisions.length - 50} more decision(s)`);
  return [head, ...lines].join('\n');
}
