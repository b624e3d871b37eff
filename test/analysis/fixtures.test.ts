import { createReadStream, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { analyzeAttempt, parseStream, parseStreamFile } from '../../src/analysis/index.js';
import { FIXTURES, policyWith } from './helpers.js';

// Values read from the recorded streams (counted by hand and with jq, not with this parser).
const EXPECTED: Record<
  string,
  { lines: number; commands: number; messages: number; usage: [number, number, number]; finalStart: string; tests: string[]; failedTests: string[] }
> = {
  'calib_dexter_20260225_r2_20260225T010156572938Z.jsonl': {
    lines: 101,
    commands: 32,
    messages: 9,
    usage: [504150, 459776, 10295],
    finalStart: 'Status: NEEDS REVIEW\n\nFiles changed:',
    tests: ['item_43', 'item_47', 'item_55', 'item_57'],
    failedTests: ['item_43', 'item_47', 'item_57'],
  },
  'calib_dexter_20260225_r2_20260225T010449205273Z.jsonl': {
    lines: 48,
    commands: 11,
    messages: 8,
    usage: [180253, 161664, 4930],
    finalStart: 'Status: **FAIL**',
    tests: ['item_12', 'item_17', 'item_26', 'item_28'],
    failedTests: ['item_12', 'item_17', 'item_26', 'item_28'],
  },
  'calib_mem0_20260225_r1_20260225T004707761683Z.jsonl': {
    lines: 41,
    commands: 13,
    messages: 4,
    usage: [90106, 83584, 3896],
    finalStart: 'Status: NEEDS REVIEW',
    tests: [],
    failedTests: [],
  },
  'calib_mem0_20260225_r2_20260225T005934988847Z.jsonl': {
    lines: 148,
    commands: 47,
    messages: 12,
    usage: [2377514, 2214016, 12199],
    finalStart: 'Status: PASS',
    tests: ['item_54', 'item_56', 'item_63', 'item_89', 'item_92'],
    failedTests: ['item_56', 'item_63'],
  },
  'calib_mem0_20260225_r3_20260225T022056291528Z.jsonl': {
    lines: 168,
    commands: 62,
    messages: 8,
    usage: [1892559, 1807360, 17127],
    finalStart: '{\n  "status": "NEEDS REVIEW"',
    tests: [],
    failedTests: [],
  },
  'run_policy_smoke_20260224_20260224T235433957166Z.jsonl': {
    lines: 21,
    commands: 5,
    messages: 3,
    usage: [37268, 34304, 1325],
    finalStart: 'Status: `/Users/yi/',
    tests: [],
    failedTests: [],
  },
  'run_policy_smoke_20260224_20260224T235714672437Z.jsonl': {
    lines: 8,
    commands: 1,
    messages: 2,
    usage: [17155, 15360, 985],
    finalStart: 'repo=mem0 branch=feature/forge-20260224-172250',
    tests: [],
    failedTests: [],
  },
  'run_policy_smoke_20260224_20260225T001601002465Z.jsonl': {
    lines: 5,
    commands: 0,
    messages: 1,
    usage: [8106, 6656, 205],
    finalStart: 'Status: Constraints acknowledged; no actions taken and no code or files were changed.',
    tests: [],
    failedTests: [],
  },
  'run_policy_smoke_20260224_20260225T001719522551Z.jsonl': {
    lines: 22,
    commands: 6,
    messages: 3,
    usage: [27728, 24960, 2208],
    finalStart: 'Read-only repo check complete; no files were edited.',
    tests: [],
    failedTests: [],
  },
  'run_policy_smoke_20260224_20260225T003958155866Z.jsonl': {
    lines: 13,
    commands: 3,
    messages: 2,
    usage: [16964, 13312, 742],
    finalStart: 'Read-only status check complete:',
    tests: [],
    failedTests: [],
  },
};

describe('recorded codex streams', () => {
  it('covers every fixture file', () => {
    expect(readdirSync(FIXTURES).filter((f) => f.endsWith('.jsonl')).sort()).toEqual(Object.keys(EXPECTED).sort());
  });

  for (const [file, want] of Object.entries(EXPECTED)) {
    it(`${file}: parses cleanly and reports what the stream holds`, async () => {
      const s = await parseStreamFile(join(FIXTURES, file));
      expect(s.parse_errors).toBe(0);
      expect(s.lines).toBe(want.lines);
      expect(s.parsed_events).toBe(want.lines);
      expect(s.unknown_type_counts).toEqual({});
      expect(s.unknown_item_type_counts).toEqual({});
      expect(s.commands_total).toBe(want.commands);
      expect(s.type_counts['item.completed']).toBeGreaterThan(0);
      expect(s.item_type_counts.command_execution ?? 0).toBe(want.commands * 2);
      expect(s.agent_message_count).toBe(want.messages);
      expect(s.final_message?.startsWith(want.finalStart)).toBe(true);
      expect(s.test_commands.map((c) => c.id)).toEqual(want.tests);
      expect(s.failed_test_commands.map((c) => c.id)).toEqual(want.failedTests);
      const [input, cached, output] = want.usage;
      expect(s.usage).toMatchObject({ input_tokens: input, cached_input_tokens: cached, output_tokens: output, total_tokens: input + output, turns: 1 });
      // No safety hits or push attempts in any recorded run (mem0 r3's final message mentions sudo; it never ran it).
      expect(s.safety_violation_count).toBe(0);
      expect(s.push_attempt_count).toBe(0);
    });
  }

  it('reads the same from a Readable as from the file path', async () => {
    const file = join(FIXTURES, 'calib_mem0_20260225_r2_20260225T005934988847Z.jsonl');
    const fromPath = await parseStreamFile(file);
    const fromStream = await parseStream(createReadStream(file, { highWaterMark: 777 }));
    expect(fromStream).toEqual(fromPath);
  });

  it('digest of the dexter attempt 2 run: test_command_failed with exit 0, four failed typecheck/test runs', async () => {
    const a = await analyzeAttempt({
      streamPath: join(FIXTURES, 'calib_dexter_20260225_r2_20260225T010449205273Z.jsonl'),
      exitCode: 0,
      stateBefore: 'LOCAL_VALIDATING',
      attemptNo: 2,
      runId: 'run_0123456789ab',
      owner: 'virattt',
      repo: 'dexter',
      policy: policyWith({ min_test_commands: 2 }),
    });
    expect(a.verdict).toMatchObject({ grade: 'HUMAN_REVIEW', reason_code: 'test_command_failed', next_action: 'escalate' });
    expect(a.targetState).toBe('NEEDS_HUMAN_REVIEW');
    expect(a.keepStream).toBe(true);
    const d = a.digest;
    expect(d.commands.total).toBe(11);
    expect(d.validation.test_command_count).toBe(4);
    expect(d.validation.failed_test_commands.map((c) => c.command)).toEqual([
      "/bin/zsh -lc 'BUN_INSTALL_CACHE_DIR=.agentpr_runtime/bun-cache bun run typecheck'",
      "/bin/zsh -lc 'BUN_INSTALL_CACHE_DIR=.agentpr_runtime/bun-cache bun test'",
      "/bin/zsh -lc 'bun run typecheck'",
      "/bin/zsh -lc 'bun test'",
    ]);
    expect(d.commands.by_category).toMatchObject({ tests: { count: 2 }, lint_or_typecheck: { count: 2 }, git_ops: { count: 4 }, repo_reading: { count: 2 }, other: { count: 1 } });
    expect(d.usage).toMatchObject({ input_tokens: 180253, cached_input_tokens: 161664, output_tokens: 4930, delta: null });
    expect(d.manager_recommendation).toEqual({ action: 'human_review', priority: 'high', reason: 'needs manual judgment: test_command_failed' });
  });

  it('the dexter baseline failures are excused by the repo allowlist from the original policy', async () => {
    // Original policy: "No such file or directory.*gateway-debug\\.log" for virattt/dexter; the bun test
    // failures print "ENOENT: no such file or directory, open '.../gateway-debug.log'".
    const a = await analyzeAttempt({
      streamPath: join(FIXTURES, 'calib_dexter_20260225_r2_20260225T010449205273Z.jsonl'),
      exitCode: 0,
      stateBefore: 'LOCAL_VALIDATING',
      attemptNo: 2,
      runId: 'run_0123456789ab',
      policy: policyWith({ known_test_failure_allowlist: ['\\.dexter/gateway-debug\\.log', 'No such file or directory.*gateway-debug\\.log', 'TS2322'] }),
    });
    expect(a.verdict.reason_code).toBe('runtime_success_allowlisted_test_failures');
    expect(a.digest.validation.failed_test_commands.map((f) => f.allowlisted_by)).toEqual(['TS2322', '\\.dexter/gateway-debug\\.log', 'TS2322', '\\.dexter/gateway-debug\\.log']);
  });

  it('usage delta against the previous attempt on the same thread', async () => {
    const a = await analyzeAttempt({
      streamPath: join(FIXTURES, 'run_policy_smoke_20260224_20260225T001719522551Z.jsonl'),
      exitCode: 0,
      stateBefore: 'DISCOVERY',
      attemptNo: 5,
      runId: 'run_0123456789ab',
      policy: policyWith(),
      previousUsage: { thread_id: '019c9227-b842-7300-9b00-7694226a2552', input_tokens: 20000, cached_input_tokens: 20000, output_tokens: 208, total_tokens: 20208 },
    });
    expect(a.digest.usage?.thread_ids).toEqual(['019c9227-b842-7300-9b00-7694226a2552']);
    expect(a.digest.usage?.delta).toEqual({ input_tokens: 7728, cached_input_tokens: 4960, cache_write_input_tokens: 0, output_tokens: 2000, reasoning_output_tokens: 0, total_tokens: 9728 });
    // DISCOVERY-stage success stays in DISCOVERY.
    expect(a.verdict.reason_code).toBe('runtime_success');
    expect(a.targetState).toBe('UNCHANGED');
    expect(a.digest.state).toEqual({ before: 'DISCOVERY', after: 'UNCHANGED' });
  });
});
