import { RUN_STATES, type RunState } from '../core/states.js';
import type { ParsedCommand } from './commands.js';
import { isNegation, isQuestion } from './text-intent.js';

/**
 * Keyword rules for plain text, English and Chinese: help, list, status/show,
 * pause, resume/retry, manager tick, pending PRs. A match is turned into the equivalent slash
 * command, so text and commands share one path. Approval is recognised only to be refused.
 * Questions and negations map to reads only (text-intent.ts).
 */
export type RuleMatch = { kind: 'command'; command: ParsedCommand } | { kind: 'approval' } | null;

const RUN_ID = /run_[0-9a-fA-F]{12}(?![0-9A-Za-z])/;

const ZH_STATES: ReadonlyArray<[RegExp, RunState]> = [
  [/人工(审核|审查|复核)/, 'NEEDS_HUMAN_REVIEW'],
  [/本地验证|验证/, 'LOCAL_VALIDATING'],
  [/发现|探索|调研/, 'DISCOVERY'],
  [/计划/, 'PLAN_READY'],
  [/实现|开发|编码/, 'IMPLEMENTING'],
  [/迭代/, 'ITERATING'],
  [/排队/, 'QUEUED'],
  [/暂停/, 'PAUSED'],
  [/可重试/, 'FAILED_RETRYABLE'],
  [/跳过/, 'SKIPPED'],
];

/** The last run state named in the text (English names, spaces or underscores; or Chinese). */
function findState(text: string, exclude: RunState[] = []): RunState | undefined {
  let best: { state: RunState; at: number } | undefined;
  const consider = (state: RunState, at: number) => {
    if (exclude.includes(state)) return;
    if (!best || at > best.at) best = { state, at };
  };
  for (const state of RUN_STATES) {
    const re = new RegExp(`(?<![A-Za-z_])${state.replace(/_/g, '[_ ]')}(?![A-Za-z_])`, 'gi');
    for (const m of text.matchAll(re)) consider(state, m.index ?? 0);
  }
  for (const [re, state] of ZH_STATES) {
    for (const m of text.matchAll(new RegExp(re.source, 'g'))) consider(state, m.index ?? 0);
  }
  return best?.state;
}

const K = {
  approval: /\bapprove\b|\bopen (?:a |the )?(?:pr|pull request)\b|\bcreate (?:a |the )?(?:pr|pull request)\b|批准|(?:创建|打开|开|提)\s*(?:pr|PR|拉取请求)/i,
  help: /^\s*(?:help|\/?\?|帮助|帮忙|怎么用|使用说明|命令|菜单)\s*[?？!！.。]*\s*$|\bhelp\b|what can you do|你能做什么|怎么用/i,
  tick: /\bmanager[ -]?tick\b|\btick\b|\brun (?:the )?manager\b|推进|执行一轮|跑一轮|管理器/i,
  pause: /\b(?:pause|hold)\b|暂停/i,
  retry: /\bretry\b|\btry again\b|重试|再试/i,
  resume: /\b(?:resume|unpause|continue)\b|继续|恢复/i,
  show: /\b(?:show|details?|inspect|events)\b|详情|详细|查看|看看/i,
  status: /\b(?:status|state|progress|how is|what'?s up)\b|状态|进度|怎么样|如何/i,
  pending: /\bpending\b|\bawaiting\b|\bwaiting\b|待(?:开|创建|批准|审批)|等待/i,
  list: /\blist\b|\bruns\b|\ball\b|列表|列出|所有|全部|任务|有哪些/i,
  page: /\bpage\s*(\d+)\b|第\s*(\d+)\s*页/i,
};

function listCommand(t: string): RuleMatch {
  const args: string[] = [];
  const state = findState(t);
  if (state) args.push(state);
  const page = K.page.exec(t);
  if (page) args.push(`p${page[1] ?? page[2] ?? '1'}`);
  return cmd('list', args);
}

function cmd(name: string, args: string[] = []): RuleMatch {
  return { kind: 'command', command: { name, args } };
}

export function matchRules(text: string): RuleMatch {
  const t = text.trim();
  if (!t) return null;
  if (K.approval.test(t)) return { kind: 'approval' };
  const run = RUN_ID.exec(t)?.[0]?.toLowerCase();
  if (K.help.test(t) && !run) return cmd('help');
  // Questions and negations never write: "run_X 推进得怎么样了？", "what does tick do?", "do not pause X".
  if (isQuestion(t) || isNegation(t)) {
    if (run) return cmd(K.show.test(t) ? 'show' : 'status', [run]);
    if (K.pending.test(t) && /\bprs?\b|pull request|PR/i.test(t)) return cmd('pending_pr');
    if (K.list.test(t) && !K.tick.test(t)) return listCommand(t);
    const asksAboutACommand = [K.tick, K.pause, K.retry, K.resume, K.show, K.status, K.list].some((re) => re.test(t));
    return asksAboutACommand ? cmd('help') : null;
  }
  if (K.tick.test(t)) return cmd('tick', run ? [run] : []);
  if (run) {
    if (K.pause.test(t) && !K.resume.test(t)) return cmd('pause', [run]);
    if (K.retry.test(t)) return withState('retry', run, t);
    if (K.resume.test(t)) return withState('resume', run, t);
    if (K.show.test(t)) return cmd('show', [run]);
    return cmd('status', [run]);
  }
  if (K.pending.test(t) && /\bprs?\b|pull request|PR/i.test(t)) return cmd('pending_pr');
  if (K.list.test(t)) return listCommand(t);
  // A write named without a run: the command's usage asks which run.
  if (K.pause.test(t)) return cmd('pause');
  if (K.retry.test(t)) return cmd('retry');
  if (K.resume.test(t)) return cmd('resume');
  if (K.status.test(t) || K.show.test(t)) return cmd('status');
  return null;
}

/** A resume or retry never targets the state it leaves ("retry the failed run", "resume the paused run"). */
function withState(name: 'retry' | 'resume', run: string, text: string): RuleMatch {
  const state = findState(text.replace(RUN_ID, ' '), ['PAUSED', 'FAILED_RETRYABLE']);
  return cmd(name, state ? [run, state] : [run]);
}
