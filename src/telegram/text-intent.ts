import type { App } from '../app.js';
import { gatherFacts } from '../manager/facts.js';
import { decide } from '../manager/rules.js';
import type { Plan } from './commands.js';

/**
 * What plain chat text may do (docs/security.md). Text is read by rules or a model and can be
 * misread, so: questions and negations never write; a write needs an explicit "yes" from the same
 * person within a short window; only a curated set of tools is reachable, with the arguments that
 * matter chosen by agentpr (retry goes to the rules' target, a tick from text is a dry run).
 */

/** The only tools plain text reaches (the registry refuses any other for a text-routed call). */
export const TEXT_TOOLS: readonly string[] = ['list-runs', 'show-run', 'inspect-run', 'pause', 'resume', 'retry', 'manager-tick'];

/** How long a "reply yes" offer stays open. */
export const CONFIRM_WINDOW_MS = 120_000;

const EN_QUESTION_START = /^\s*(?:what|what's|whats|how|why|when|where|which|who|whose|should|shall|can|could|would|will|does|do|did|is|are|was|were|may|might|has|have)\b/i;
const ZH_QUESTION = /[吗嘛么呢]\s*[?？。.!！]*\s*$|怎么样|怎样|如何|是否|要不要|该不该|应不应该|能不能|可不可以|会不会|有没有|为什么|为何|什么|啥|多少|哪/;

/** A question asks; it never changes anything ("run_X 推进得怎么样了？", "what does tick do?", "should I pause X?"). */
export function isQuestion(text: string): boolean {
  const t = text.trim();
  return /[?？]\s*$/.test(t) || EN_QUESTION_START.test(t) || ZH_QUESTION.test(t);
}

const EN_NEGATION = /\b(?:don'?t|do not|does not|doesn'?t|never|not|no|shouldn'?t|should not|won'?t|can'?t|cannot|stop\s+\w+ing)\b/i;
const ZH_NEGATION = /不|别|勿|甭|无需|没/;

/** A negation says what not to do ("do not pause X", "不要暂停 X"). */
export function isNegation(text: string): boolean {
  return EN_NEGATION.test(text) || ZH_NEGATION.test(text);
}

const CONFIRM = /^\s*(?:yes|y|yes please|confirm|confirmed|ok(?:ay)? do it|do it|确认|是|是的|对|好|好的|执行)\s*[.!。！]*\s*$/i;

/** An explicit confirmation: "yes", "confirm", "确认", "是". */
export function isConfirmation(text: string): boolean {
  return CONFIRM.test(text);
}

interface Offer {
  plan: Extract<Plan, { kind: 'call' }>;
  expiresAt: number;
}

/** Writes waiting for a "yes", one per (chat, person); in memory, so a restart drops them. */
export class PendingWrites {
  private readonly offers = new Map<string, Offer>();

  constructor(private readonly windowMs = CONFIRM_WINDOW_MS) {}

  offer(chatId: number, userId: number, plan: Extract<Plan, { kind: 'call' }>, now: number): void {
    this.offers.set(`${chatId}:${userId}`, { plan, expiresAt: now + this.windowMs });
  }

  /** Removes and returns the offer of this person in this chat (expired: 'expired'). */
  take(chatId: number, userId: number | null, now: number): Offer['plan'] | 'expired' | undefined {
    if (userId === null) return undefined;
    const key = `${chatId}:${userId}`;
    const offer = this.offers.get(key);
    if (!offer) return undefined;
    this.offers.delete(key);
    return offer.expiresAt >= now ? offer.plan : 'expired';
  }
}

/** One line naming the write, for the confirmation question. */
export function describeWrite(plan: Extract<Plan, { kind: 'call' }>): string {
  const run = typeof plan.args.run_id === 'string' ? ` ${plan.args.run_id}` : '';
  const target = typeof plan.args.target_state === 'string' ? ` to ${plan.args.target_state}` : '';
  return `${plan.tool}${run}${target}`;
}

/** The retry target the rules choose for a run, or why the rules would not retry it now. */
export function rulesRetryTarget(app: App, runId: string): { ok: true; target: string } | { ok: false; reason: string } {
  const facts = gatherFacts(app, { run_id: runId })[0];
  if (!facts) return { ok: false, reason: `run ${runId} not found` };
  const rule = decide(facts);
  if (rule.action === 'retry' && typeof rule.args.target_state === 'string') return { ok: true, target: rule.args.target_state };
  return { ok: false, reason: `the rules would not retry ${runId} now (${facts.state}: ${rule.action}, ${rule.reason})` };
}

/**
 * The arguments a text-routed call may carry: the tool's own read arguments, the run, and what
 * agentpr chooses (a dry tick; retry's target from the rules). Anything else the model set is dropped.
 */
export function textArgs(tool: string, args: Record<string, unknown>): Record<string, unknown> {
  const pick = (...keys: string[]) => Object.fromEntries(keys.filter((k) => args[k] !== undefined).map((k) => [k, args[k]]));
  switch (tool) {
    case 'list-runs':
      return pick('state', 'owner', 'repo', 'limit', 'offset');
    case 'show-run':
      return pick('run_id', 'events_limit');
    case 'inspect-run':
      return pick('run_id');
    case 'pause':
      return pick('run_id');
    case 'resume':
    case 'retry':
      return pick('run_id', 'target_state');
    case 'manager-tick':
      return { ...pick('run_id'), dry_run: true };
    default:
      return {};
  }
}
