import { StreamAccumulator, stampLine, type StreamSummary } from '../../src/analysis/index.js';
import { DEFAULT_POLICY, agentPolicyFor, type RunAgentStepPolicy } from '../../src/policy.js';

export const FIXTURES = new URL('../fixtures/codex-streams/', import.meta.url).pathname;

export function policyWith(over: Partial<RunAgentStepPolicy> = {}): RunAgentStepPolicy {
  return { ...agentPolicyFor(DEFAULT_POLICY), ...over };
}

/** item.started + item.completed lines of one command, as codex writes them. */
export function commandLines(id: string, command: string, exitCode: number | null, output = '', at?: { start: Date; end: Date }): string[] {
  const started = JSON.stringify({ type: 'item.started', item: { id, type: 'command_execution', command, aggregated_output: '', exit_code: null, status: 'in_progress' } });
  const completed = JSON.stringify({
    type: 'item.completed',
    item: { id, type: 'command_execution', command, aggregated_output: output, exit_code: exitCode, status: exitCode === 0 ? 'completed' : 'failed' },
  });
  return at ? [stampLine(started, at.start), stampLine(completed, at.end)] : [started, completed];
}

export function message(id: string, text: string): string {
  return JSON.stringify({ type: 'item.completed', item: { id, type: 'agent_message', text } });
}

export function usage(input: number, cached: number, output: number): string {
  return JSON.stringify({ type: 'turn.completed', usage: { input_tokens: input, cached_input_tokens: cached, output_tokens: output } });
}

export const zsh = (script: string): string => `/bin/zsh -lc ${JSON.stringify(script)}`;

/** Parse lines through the live (push) path. */
export function summarize(lines: string[]): StreamSummary {
  const acc = new StreamAccumulator();
  for (const l of ['{"type":"thread.started","thread_id":"t-1"}', '{"type":"turn.started"}', ...lines]) acc.pushLine(l);
  return acc.result();
}
