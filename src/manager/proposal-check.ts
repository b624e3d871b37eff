import { isExecutable } from './actions.js';
import type { RuleDecision } from './rules.js';

/**
 * Models propose, rules dispose (docs/security.md). The manager model reads digests, insights and
 * last errors that the repository and the worker shape, so it can be steered: it may only take the
 * step the rules allow for the run, or hold the run for a person. Every argument comes from the
 * rules and the policy (sandbox, model, prompt, read roots, timeout, remotes, contract_path,
 * target_state, ...); a proposal that sets one differently is refused with the reason.
 */
export type ProposalCheck = { ok: true; args: Record<string, unknown> } | { ok: false; reason: string };

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function show(v: unknown): string {
  const s = JSON.stringify(v);
  return s === undefined ? 'unset' : s.length > 120 ? `${s.slice(0, 117)}...` : s;
}

export function checkProposal(rule: RuleDecision, tool: string, action: string, args: Record<string, unknown>): ProposalCheck {
  if (!isExecutable(rule.action)) {
    return { ok: false, reason: `the rules allow no step for ${rule.run_id} in ${rule.state} (${rule.action}: ${rule.reason}); the model called ${tool}` };
  }
  if (action !== rule.action) {
    return { ok: false, reason: `the rules allow ${rule.tool} for ${rule.run_id} in ${rule.state}, not ${tool}` };
  }
  const differing = Object.entries(args)
    .filter(([k, v]) => k !== 'run_id' && !same(v, rule.args[k]))
    .map(([k, v]) => `${k}=${show(v)} (rules: ${show(rule.args[k])})`);
  if (differing.length) {
    return { ok: false, reason: `the model set ${differing.join(', ')}; these arguments come from the rules and the policy, not the model` };
  }
  return { ok: true, args: rule.args };
}
