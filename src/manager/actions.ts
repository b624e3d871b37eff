import { z } from 'zod';
import { RunStateSchema } from '../core/states.js';

/** The manager's action classes. Each executable one maps to exactly one registry tool. */
export const MANAGER_ACTIONS = [
  'noop',
  'wait_human',
  'start_discovery',
  'run_prepare',
  'mark_plan_ready',
  'start_implementation',
  'run_agent_step',
  'run_finish',
  'retry',
  'sync_github',
] as const;
export const ManagerActionSchema = z.enum(MANAGER_ACTIONS);
export type ManagerAction = z.infer<typeof ManagerActionSchema>;

export type ExecutableAction = Exclude<ManagerAction, 'noop' | 'wait_human'>;

export const ACTION_TOOL: Readonly<Record<ExecutableAction, string>> = {
  start_discovery: 'start-discovery',
  run_prepare: 'run-prepare',
  mark_plan_ready: 'mark-plan-ready',
  start_implementation: 'start-implementation',
  run_agent_step: 'run-agent-step',
  run_finish: 'run-finish',
  retry: 'retry',
  sync_github: 'sync-github',
};

const TOOL_ACTION: ReadonlyMap<string, ExecutableAction> = new Map(
  (Object.entries(ACTION_TOOL) as Array<[ExecutableAction, string]>).map(([action, tool]) => [tool, action]),
);

/** The action class of a registry tool, or undefined for a tool that is not a manager action. */
export function actionOfTool(tool: string): ExecutableAction | undefined {
  return TOOL_ACTION.get(tool);
}

export function isExecutable(action: ManagerAction): action is ExecutableAction {
  return action !== 'noop' && action !== 'wait_human';
}

export const PRIORITIES = ['high', 'normal', 'low'] as const;
export const PrioritySchema = z.enum(PRIORITIES);
export type Priority = z.infer<typeof PrioritySchema>;
export const PRIORITY_RANK: Readonly<Record<Priority, number>> = { high: 0, normal: 1, low: 2 };

export const DECISION_MODES = ['rules', 'llm', 'hybrid'] as const;
export const DecisionModeSchema = z.enum(DECISION_MODES);
export type DecisionMode = z.infer<typeof DecisionModeSchema>;

/** What the rules (or the model) decided for one run. */
export const DecisionSchema = z.object({
  run_id: z.string(),
  state: RunStateSchema,
  action: ManagerActionSchema,
  /** The registry tool that carries the action out; null for noop and wait_human. */
  tool: z.string().nullable(),
  args: z.record(z.string(), z.unknown()),
  reason: z.string(),
  priority: PrioritySchema,
});
export type Decision = z.infer<typeof DecisionSchema>;

/**
 * Something the executor does right before calling the tool, kept out of the pure rules: today
 * only writing the auto-contract when discovery produced none (see docs/manager.md).
 */
export interface MaterializeContract {
  kind: 'materialize_contract';
  path: string;
  content: string;
}
