import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, test } from 'vitest';
import { StreamAccumulator, analyzeParsed, stampLine } from '../../src/analysis/index.js';
import { agentPolicyFor, PolicySchema } from '../../src/policy.js';

/**
 * A stream in the shape codex 0.171.0 prints (lines from runs against a local Responses API; the
 * collab_tool_call items follow the codex SDK's CollabToolCallItem): usage without total_tokens but
 * with cache writes, sub-agent calls whose commands never appear here.
 */
const STREAM = readFileSync(resolve('test/fixtures/codex/stream-0.171.0-subagent.jsonl'), 'utf8').split('\n').filter(Boolean);
const policy = agentPolicyFor(PolicySchema.parse({}));

function analyze(lines: string[], stamped: boolean) {
  const acc = new StreamAccumulator();
  const t0 = Date.parse('2026-12-01T01:00:00Z');
  lines.forEach((l, i) => acc.pushLine(stamped ? stampLine(l, new Date(t0 + i * 1000)) : l));
  return analyzeParsed(acc.result(), { exitCode: 0, stateBefore: 'IMPLEMENTING', attemptNo: 1, runId: 'run_x', policy });
}

describe('the codex 0.171.0 stream', () => {
  test('collab_tool_call items are counted in the digest and named in the insight', () => {
    const a = analyze(STREAM, true);
    expect(a.parse.unknown_item_type_counts).toEqual({});
    expect(a.digest.agent).toMatchObject({ collab_tool_calls: 2, collab_tools: { spawn_agent: 1, wait_agent: 1 } });
    expect(a.insightMarkdown).toContain('Sub-agents: `2` collab tool call(s) (spawn_agent ×1, wait_agent ×1)');
  });

  test('usage: cache writes read, total computed (no total_tokens in the stream), shown in the insight', () => {
    const a = analyze(STREAM, true);
    expect(a.digest.usage).toMatchObject({ input_tokens: 200, cached_input_tokens: 40, cache_write_input_tokens: 120, output_tokens: 20, reasoning_output_tokens: 6, total_tokens: 220 });
    expect(a.insightMarkdown).toContain('cache writes `120`');
  });

  test('node --test counts as the test evidence: PASS', () => {
    expect(analyze(STREAM, true).verdict).toMatchObject({ grade: 'PASS', reason_code: 'runtime_success' });
  });

  test('a stamped stream is not said to lack receive times', () => {
    // One command that never finishes: no duration either way.
    const lines = STREAM.filter((l) => !l.includes('"item.completed","item":{"id":"item_0"'));
    const stamped = analyze(lines, true).insightMarkdown;
    expect(stamped).not.toContain('carry no receive time');
    expect(stamped).toContain('No command duration data captured');
    expect(analyze(lines, false).insightMarkdown).toContain('stream lines carry no receive time');
  });
});
