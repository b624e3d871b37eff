import type { AuditOutcome } from './audit.js';

/** A slash command as typed: `/retry@agentpr_bot run_0123456789ab implementing`. */
export interface ParsedCommand {
  name: string;
  args: string[];
  /** The bot named after `@`, when any (group chats). */
  mention?: string;
}

export function parseCommand(text: string): ParsedCommand | null {
  const m = /^\/([A-Za-z0-9_]{1,64})(?:@([A-Za-z0-9_]{3,64}))?(?:\s+([\s\S]*))?$/.exec(text.trim());
  if (!m) return null;
  const args = (m[3] ?? '').split(/\s+/).filter(Boolean);
  return { name: m[1]!.toLowerCase(), args, ...(m[2] ? { mention: m[2] } : {}) };
}

/** The command surface. Tiers are not listed here: each command's tier is its tool's tier. */
export interface CommandSpec {
  name: string;
  usage: string;
  summary: string;
  /** The registry tool the command calls (null: answered without a tool). */
  tool: string | null;
}

export const COMMAND_SPECS: readonly CommandSpec[] = [
  { name: 'start', usage: '/start', summary: 'what this bot is and what this chat may do', tool: null },
  { name: 'help', usage: '/help', summary: 'the commands this chat may use', tool: null },
  { name: 'list', usage: '/list [STATE] [N] [pPAGE]', summary: 'runs, newest first: N of them (default the page size), page PAGE (p2, p3, ...)', tool: 'list-runs' },
  { name: 'show', usage: '/show [run_id]', summary: 'one run: state, recent events, attempts, artifacts (default: the last run in this chat)', tool: 'show-run' },
  { name: 'status', usage: '/status [run_id]', summary: 'one run in two lines (default: the last run in this chat)', tool: 'show-run' },
  { name: 'pending_pr', usage: '/pending_pr', summary: 'runs waiting for a PR (PUSHED) and their open PR requests', tool: 'list-runs' },
  { name: 'pause', usage: '/pause [run_id]', summary: 'pause a run (default: the last run in this chat)', tool: 'pause' },
  { name: 'resume', usage: '/resume [run_id] [STATE]', summary: 'resume a paused run into STATE (default: the state it was paused in)', tool: 'resume' },
  { name: 'retry', usage: '/retry [run_id] [STATE]', summary: "retry a failed run from STATE (default: where the manager's rules would send it)", tool: 'retry' },
  { name: 'tick', usage: '/tick [run_id] [dry]', summary: 'one manager tick over all runs (or one); dry decides without acting', tool: 'manager-tick' },
  { name: 'approve_pr', usage: '/approve_pr <run_id> <token>', summary: 'approve an open-PR request (admin; never from plain text)', tool: 'approve-open-pr' },
];

export function commandSpec(name: string): CommandSpec | undefined {
  return COMMAND_SPECS.find((c) => c.name === name);
}

/** How a tool result is shown. */
export type View = 'list' | 'status' | 'show' | 'text';

/** What to do with an update, before anything is called. */
export type Plan =
  | { kind: 'help'; start: boolean }
  | { kind: 'reply'; text: string; outcome: AuditOutcome; note?: string }
  | { kind: 'call'; command: string; tool: string; args: Record<string, unknown>; view: View; page?: ListPage }
  | { kind: 'pending' }
  | { kind: 'approve'; run_id: string; token: string }
  /** /resume or /retry without a state: show the allowed states (read) and ask. */
  | { kind: 'ask_state'; command: 'resume' | 'retry'; run_id: string };

const STATE_ARG = /^[A-Za-z_]+$/;

/** Which page of /list: the state filter, the page number, and N when the chat asked for N runs. */
export interface ListPage {
  state?: string;
  page: number;
  count?: number;
}

/** The most runs one /list shows (N above this is refused with the limit). */
export const MAX_LIST_COUNT = 200;

/** Commands about one run: without a run id they use the last run this chat talked about. */
export const RUN_COMMANDS: ReadonlySet<string> = new Set(['show', 'status', 'pause', 'resume', 'retry']);

function usage(name: string): string {
  return commandSpec(name)?.usage ?? `/${name}`;
}

function needRun(cmd: ParsedCommand): Plan | string {
  const run = cmd.args[0];
  if (!run) return { kind: 'reply', text: `Which run? Usage: ${usage(cmd.name)}`, outcome: 'error' };
  return run;
}

/** Maps a command (typed, or derived from plain text by the rules) to a plan. */
export function planCommand(cmd: ParsedCommand, opts: { listLimit: number }): Plan {
  switch (cmd.name) {
    case 'start':
    case 'help':
      return { kind: 'help', start: cmd.name === 'start' };
    case 'list': {
      let state: string | undefined;
      let page = 1;
      let count: number | undefined;
      for (const a of cmd.args) {
        const p = /^p(?:age)?(\d+)$/i.exec(a);
        if (p) page = Math.max(1, Number(p[1]));
        else if (/^\d+$/.test(a)) {
          count = Number(a);
          if (count < 1 || count > MAX_LIST_COUNT) return { kind: 'reply', text: `/list shows 1 to ${MAX_LIST_COUNT} runs at a time, not ${a}. Usage: ${usage('list')}`, outcome: 'error' };
        } else if (STATE_ARG.test(a)) state = a.toUpperCase();
        else return { kind: 'reply', text: `'${a}' is neither a state, a number of runs nor a page (p2). Usage: ${usage('list')}`, outcome: 'error' };
      }
      const limit = count ?? opts.listLimit;
      const args: Record<string, unknown> = { limit, offset: (page - 1) * limit };
      if (state) args.state = state;
      return { kind: 'call', command: 'list', tool: 'list-runs', args, view: 'list', page: { state, page, ...(count !== undefined ? { count } : {}) } };
    }
    case 'show':
    case 'status': {
      const run = needRun(cmd);
      if (typeof run !== 'string') return run;
      return {
        kind: 'call',
        command: cmd.name,
        tool: 'show-run',
        args: cmd.name === 'status' ? { run_id: run, events_limit: 1 } : { run_id: run, events_limit: 8 },
        view: cmd.name === 'status' ? 'status' : 'show',
      };
    }
    case 'pending_pr':
      return { kind: 'pending' };
    case 'pause': {
      const run = needRun(cmd);
      if (typeof run !== 'string') return run;
      return { kind: 'call', command: 'pause', tool: 'pause', args: { run_id: run }, view: 'text' };
    }
    case 'resume':
    case 'retry': {
      const run = needRun(cmd);
      if (typeof run !== 'string') return run;
      const state = cmd.args[1];
      if (!state) return { kind: 'ask_state', command: cmd.name, run_id: run };
      return { kind: 'call', command: cmd.name, tool: cmd.name, args: { run_id: run, target_state: state.toUpperCase() }, view: 'text' };
    }
    case 'tick': {
      const args: Record<string, unknown> = {};
      for (const a of cmd.args) {
        if (/^(?:--)?dry(?:[-_]?run)?$/i.test(a)) args.dry_run = true;
        else args.run_id = a;
      }
      return { kind: 'call', command: 'tick', tool: 'manager-tick', args, view: 'text' };
    }
    case 'approve_pr': {
      const [run, token] = cmd.args;
      if (!run || !token) return { kind: 'reply', text: `Usage: ${usage('approve_pr')} (the token comes with the PR request; see /pending_pr)`, outcome: 'error' };
      return { kind: 'approve', run_id: run, token };
    }
    default:
      return { kind: 'reply', text: `Unknown command /${cmd.name}. /help lists the commands.`, outcome: 'error' };
  }
}
