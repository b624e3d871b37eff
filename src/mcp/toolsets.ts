import type { AnyTool } from '../registry.js';
import { UsageError } from '../core/errors.js';

/** Groups of tools a server can expose (`--toolsets`, AGENTPR_TOOLSETS); default all. */
export const TOOLSETS = ['core', 'worker', 'github', 'manager'] as const;
export type Toolset = (typeof TOOLSETS)[number];

/**
 * Which toolset each tool belongs to. core: runs, events and state commands, policy, doctor,
 * inspection; worker: the codex worker and forge scripts, stream analysis, skills; github: checks,
 * reviews, sync, webhook deliveries, PR opening; manager: the manager tick. A tool missing here
 * belongs to core.
 */
export const TOOLSET_OF: Readonly<Record<string, Toolset>> = {
  'create-run': 'core',
  'list-runs': 'core',
  'show-run': 'core',
  'apply-event': 'core',
  'start-discovery': 'core',
  'mark-plan-ready': 'core',
  'start-implementation': 'core',
  'mark-local-validated': 'core',
  'link-pr': 'core',
  pause: 'core',
  resume: 'core',
  retry: 'core',
  'mark-done': 'core',
  'show-policy': 'core',
  doctor: 'core',
  'inspect-run': 'core',
  'run-bottlenecks': 'core',
  'run-prepare': 'worker',
  'reconcile-runs': 'core',
  'cleanup-workspaces': 'worker',
  'run-finish': 'worker',
  'run-preflight': 'worker',
  'run-agent-step': 'worker',
  'analyze-stream': 'worker',
  'skills-status': 'worker',
  'install-skills': 'worker',
  'skills-metrics': 'worker',
  'skills-feedback': 'worker',
  'record-check': 'github',
  'record-review': 'github',
  'record-pr-state': 'github',
  'sync-github': 'github',
  'cleanup-webhook-deliveries': 'github',
  'webhook-audit-summary': 'github',
  'request-open-pr': 'github',
  'approve-open-pr': 'github',
  'manager-tick': 'manager',
};

export function toolsetOf(tool: Pick<AnyTool, 'name'>): Toolset {
  return TOOLSET_OF[tool.name] ?? 'core';
}

/** Parses `core,github` (flag or env); every name must be a toolset. */
export function parseToolsets(raw: string, source: string): Toolset[] {
  const names = raw.split(',').map((s) => s.trim()).filter(Boolean);
  if (!names.length) throw new UsageError(`${source} is empty; give one or more of: ${TOOLSETS.join(', ')} (comma-separated)`);
  for (const n of names) {
    if (!(TOOLSETS as readonly string[]).includes(n)) {
      throw new UsageError(`${source}: '${n}' is not a toolset; allowed: ${TOOLSETS.join(', ')}`);
    }
  }
  return [...new Set(names)] as Toolset[];
}

/** AGENTPR_READ_ONLY: 1/true/yes or 0/false/no (empty = unset). */
export function parseReadOnlyEnv(raw: string | undefined): boolean | undefined {
  const v = raw?.trim().toLowerCase();
  if (!v) return undefined;
  if (['1', 'true', 'yes', 'on'].includes(v)) return true;
  if (['0', 'false', 'no', 'off'].includes(v)) return false;
  throw new UsageError(`AGENTPR_READ_ONLY: '${raw}' is not allowed; allowed: 1, true, yes, on, 0, false, no, off`);
}

/** Server options from the environment, overridden by flags given on the command line. */
export function serverExposure(
  flags: { readOnly?: boolean; toolsets?: Toolset[] },
  env: NodeJS.ProcessEnv = process.env,
): { readOnly: boolean; toolsets?: Toolset[] } {
  const readOnly = flags.readOnly ?? parseReadOnlyEnv(env.AGENTPR_READ_ONLY) ?? false;
  const toolsets = flags.toolsets ?? (env.AGENTPR_TOOLSETS?.trim() ? parseToolsets(env.AGENTPR_TOOLSETS, 'AGENTPR_TOOLSETS') : undefined);
  return { readOnly, ...(toolsets ? { toolsets } : {}) };
}
