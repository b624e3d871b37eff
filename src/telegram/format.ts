import { TIER_RANK, type CallOutcome, type Registry, type Tier } from '../registry.js';
import { COMMAND_SPECS, commandSpec } from './commands.js';
import type { NlMode } from './config.js';

/** Telegram's limit is 4096 UTF-16 units; stay under it with room for the marker. */
export const MAX_REPLY = 4000;

export function clip(text: string, max = MAX_REPLY, hint = ''): string {
  const t = text.trim() || '(empty)';
  if (t.length <= max) return t;
  const marker = `\n… (cut at ${max} characters${hint ? `; ${hint}` : ''})`;
  return t.slice(0, max - marker.length) + marker;
}

function tierOf(registry: Registry, tool: string | null): Tier | null {
  if (!tool) return 'read';
  return registry.get(tool)?.tier ?? null;
}

export function helpText(registry: Registry, tier: Tier, nlMode: NlMode, start: boolean): string {
  const usable: string[] = [];
  const locked: string[] = [];
  const missing: string[] = [];
  for (const c of COMMAND_SPECS) {
    if (c.name === 'start') continue;
    const t = tierOf(registry, c.tool);
    if (t === null) missing.push(`/${c.name}`);
    else if (TIER_RANK[t] <= TIER_RANK[tier]) usable.push(`${c.usage} - ${c.summary}`);
    else locked.push(`/${c.name} (${t})`);
  }
  const lines = [
    ...(start ? ['agentpr bot: watch and steer agentpr runs from this chat.'] : []),
    `This chat has ${tier} access.`,
    '',
    ...usable,
  ];
  if (TIER_RANK[tier] >= TIER_RANK.write) {
    lines.push('', `Plain text works too (${nlMode} routing), e.g. "status run_0123456789ab", "暂停 run_0123456789ab". PR approval is never done from plain text.`);
  }
  if (locked.length) lines.push('', `Needs more access: ${locked.join(', ')}`);
  if (missing.length) lines.push(`Not installed here: ${missing.join(', ')}`);
  return clip(lines.join('\n'));
}

interface RunLike {
  run_id: string;
  owner: string;
  repo: string;
  state: string;
  pr_number: number | null;
  last_error: string | null;
  updated_at: string;
}

export function formatList(data: Record<string, unknown>, page: { state?: string; page: number }, limit: number): string {
  const runs = (data.runs ?? []) as RunLike[];
  const total = Number(data.total ?? 0);
  const offset = Number(data.offset ?? 0);
  const filter = page.state ? ` in ${page.state}` : '';
  if (!runs.length) return total ? `No runs on page ${page.page}${filter} (${total} in total; /list${page.state ? ` ${page.state}` : ''} 1).` : `No runs${filter}.`;
  const pages = Math.max(1, Math.ceil(total / limit));
  const lines = runs.map((r) => `${r.run_id} ${r.state} ${r.owner}/${r.repo}${r.pr_number ? ` #${r.pr_number}` : ''}`);
  const head = `Runs${filter} ${offset + 1}-${offset + runs.length} of ${total} (page ${page.page}/${pages})`;
  const next = data.next_offset !== null && data.next_offset !== undefined ? `\nNext: /list${page.state ? ` ${page.state}` : ''} ${page.page + 1}` : '';
  return clip(`${head}\n${lines.join('\n')}${next}`, MAX_REPLY, 'use a smaller page size in the policy');
}

export function formatStatus(data: Record<string, unknown>): string {
  const run = data.run as RunLike;
  const next = (data.allowed_next_states ?? []) as string[];
  return clip(
    [
      `${run.run_id} ${run.owner}/${run.repo}: ${run.state}${run.pr_number ? ` (PR #${run.pr_number})` : ''}`,
      run.last_error ? `last error: ${run.last_error.length > 300 ? `${run.last_error.slice(0, 300)}… (/show ${run.run_id})` : run.last_error}` : null,
      `updated ${run.updated_at}${next.length ? `; next: ${next.join(', ')}` : ''}`,
    ]
      .filter(Boolean)
      .join('\n'),
  );
}

/** A failed registry call as a chat reply. */
export function formatFailure(outcome: Extract<CallOutcome, { ok: false }>, opts: { command: string; tool: string; chatTier: Tier }): string {
  const usage = commandSpec(opts.command)?.usage;
  switch (outcome.code) {
    case 'unknown_tool':
      return `/${opts.command} is not available: the tool '${opts.tool}' is not installed in this agentpr.`;
    case 'forbidden': {
      const tier = outcome.tool?.tier ?? 'higher';
      return `Not allowed: ${opts.tool} is ${tier === 'admin' ? 'an' : 'a'} ${tier}-tier tool and this chat has ${opts.chatTier} access.`;
    }
    case 'invalid_input':
      return clip(`Invalid input: ${outcome.error}${usage ? `\nUsage: ${usage}` : ''}`);
    case 'conflict':
      return clip(`Refused: ${outcome.error}`);
    case 'refused':
      return clip(`Refused before anything changed: ${outcome.error}`);
    case 'configuration':
      return clip(`Setup problem on the agentpr host: ${outcome.error}`);
    default:
      return clip(`Failed: ${outcome.error}`);
  }
}
