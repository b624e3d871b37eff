import { TIER_RANK, type CallOutcome, type Registry, type Tier } from '../registry.js';
import { COMMAND_SPECS, commandSpec } from './commands.js';
import type { NlMode } from './config.js';

/**
 * Telegram's limit is 4096 UTF-16 code units (what `String.length` counts); stay under it with
 * room for the marker. Cuts never split a surrogate pair: half an emoji is not UTF-8, and
 * Telegram refuses the whole message ("text must be encoded in UTF-8").
 */
export const MAX_REPLY = 4000;

/** A long answer is sent as at most this many messages; the rest is clipped. */
export const MAX_REPLY_PARTS = 3;

/** The largest index <= `at` that does not fall between the two halves of a surrogate pair. */
export function codePointBoundary(text: string, at: number): number {
  if (at <= 0) return 0;
  if (at >= text.length) return text.length;
  const before = text.charCodeAt(at - 1);
  const after = text.charCodeAt(at);
  return before >= 0xd800 && before <= 0xdbff && after >= 0xdc00 && after <= 0xdfff ? at - 1 : at;
}

/** The first `max` UTF-16 units of `text`, or fewer so that no code point is cut in half. */
export function sliceUnits(text: string, max: number): string {
  return text.slice(0, codePointBoundary(text, max));
}

/** True when the text holds a lone surrogate (it cannot be encoded as UTF-8). */
export function hasLoneSurrogate(text: string): boolean {
  return /\p{Cs}/u.test(text);
}

export function clip(text: string, max = MAX_REPLY, hint = ''): string {
  const t = text.trim() || '(empty)';
  if (t.length <= max) return t;
  const marker = `\n… (cut at ${max} characters${hint ? `; ${hint}` : ''})`;
  return sliceUnits(t, max - marker.length) + marker;
}

/**
 * Splits a long answer into messages of at most `max` UTF-16 units, at a line break when one is
 * in the second half of the window, never inside a code point; after `maxParts` the last part is
 * clipped with a marker.
 */
export function splitReply(text: string, max = MAX_REPLY, maxParts = MAX_REPLY_PARTS): string[] {
  let rest = text.trim() || '(empty)';
  const parts: string[] = [];
  while (rest.length > max && parts.length < maxParts - 1) {
    let cut = codePointBoundary(rest, max);
    const nl = rest.lastIndexOf('\n', cut);
    if (nl > max / 2) cut = nl;
    parts.push(rest.slice(0, cut).trimEnd());
    rest = rest.slice(cut).replace(/^\n/, '');
  }
  parts.push(clip(rest, max, parts.length ? `${parts.length + 1} messages max` : ''));
  return parts.filter((p) => p.trim());
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

export function formatList(data: Record<string, unknown>, page: { state?: string; page: number; count?: number }, pageSize: number): string {
  const runs = (data.runs ?? []) as RunLike[];
  const total = Number(data.total ?? 0);
  const offset = Number(data.offset ?? 0);
  const limit = page.count ?? pageSize;
  const filter = page.state ? ` in ${page.state}` : '';
  const again = `/list${page.state ? ` ${page.state}` : ''}${page.count !== undefined ? ` ${page.count}` : ''}`;
  if (!runs.length) return total ? `No runs on page ${page.page}${filter} (${total} in total; ${again}).` : `No runs${filter}.`;
  const pages = Math.max(1, Math.ceil(total / limit));
  const lines = runs.map((r) => `${r.run_id} ${r.state} ${r.owner}/${r.repo}${r.pr_number ? ` #${r.pr_number}` : ''}`);
  const head = `Runs${filter} ${offset + 1}-${offset + runs.length} of ${total} (page ${page.page}/${pages})`;
  const next = data.next_offset !== null && data.next_offset !== undefined ? `\nNext: ${again} p${page.page + 1}` : '';
  return clip(`${head}\n${lines.join('\n')}${next}`, MAX_REPLY, 'ask for fewer runs (/list N) or use a smaller page size in the policy');
}

export function formatStatus(data: Record<string, unknown>): string {
  const run = data.run as RunLike;
  const next = (data.allowed_next_states ?? []) as string[];
  return clip(
    [
      `${run.run_id} ${run.owner}/${run.repo}: ${run.state}${run.pr_number ? ` (PR #${run.pr_number})` : ''}`,
      run.last_error ? `last error: ${run.last_error.length > 300 ? `${sliceUnits(run.last_error, 300)}… (/show ${run.run_id})` : run.last_error}` : null,
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
