import { createWriteStream, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { analyzeAttempt, parseStreamFile, stampLine, StreamAccumulator } from '../../src/analysis/index.js';
import { NotFoundError, UserInputError } from '../../src/core/errors.js';
import { FIXTURES, commandLines, message, policyWith, usage, zsh } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'agentpr-stream-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, content: string | Buffer): string {
  const p = join(dir, name);
  writeFileSync(p, content);
  return p;
}

describe('bad input', () => {
  it('a missing file is a clear error naming the path', async () => {
    const p = join(dir, 'nope.jsonl');
    await expect(parseStreamFile(p)).rejects.toThrow(NotFoundError);
    await expect(parseStreamFile(p)).rejects.toThrow(`stream file not found: ${p}`);
  });

  it('a directory is a clear error', async () => {
    await expect(parseStreamFile(dir)).rejects.toThrow(UserInputError);
    await expect(parseStreamFile(dir)).rejects.toThrow(/is a directory/);
  });

  it('an empty stream gives an empty digest and a verdict', async () => {
    const a = await analyzeAttempt({ streamPath: file('empty.jsonl', ''), exitCode: 0, stateBefore: 'IMPLEMENTING', attemptNo: 1, runId: 'run_0123456789ab', policy: policyWith() });
    expect(a.digest.events).toMatchObject({ lines: 0, bytes: 0, parsed: 0, parse_errors: 0 });
    expect(a.digest.usage).toBeNull();
    expect(a.digest.agent.final_message).toBeNull();
    expect(a.verdict.reason_code).toBe('missing_test_evidence');
    expect(a.insightMarkdown).toContain('no `turn.completed` usage in the stream');
  });

  it('unknown event and item types are counted, not fatal', async () => {
    const p = file(
      'unknown.jsonl',
      [
        '{"type":"thread.started","thread_id":"t"}',
        '{"type":"session.configured","model":"x"}',
        '{"type":"item.completed","item":{"id":"item_0","type":"image_generation","prompt":"a cat"}}',
        '{"type":"item.completed","item":{"id":"item_1","type":"web_search","query":"zod 4"}}',
        message('item_2', 'done'),
        '{"type":"session.configured"}',
        '',
      ].join('\n'),
    );
    const s = await parseStreamFile(p);
    expect(s.parse_errors).toBe(0);
    expect(s.parsed_events).toBe(6);
    expect(s.unknown_type_counts).toEqual({ 'session.configured': 2 });
    expect(s.unknown_item_type_counts).toEqual({ image_generation: 1 });
    expect(s.item_type_counts).toEqual({ image_generation: 1, web_search: 1, agent_message: 1 });
    expect(s.final_message).toBe('done');
  });

  it('a stream of endless distinct types keeps bounded counts', () => {
    const acc = new StreamAccumulator();
    for (let i = 0; i < 3000; i++) acc.pushLine(JSON.stringify({ type: `made.up.${i}` }));
    const s = acc.result();
    expect(s.parsed_events).toBe(3000);
    expect(Object.keys(s.unknown_type_counts)).toHaveLength(1001);
    expect(s.unknown_type_counts['(other)']).toBe(2000);
  });

  it('garbage lines between good ones are parse errors with their line numbers', async () => {
    const lines = [
      ...commandLines('item_1', zsh('pytest'), 0),
      'Warning: something printed to stdout',
      '[1,2,3]',
      '{"no_type": true}',
      '',
      '\u0000\u0001\u0002binary\u0003',
      usage(10, 5, 3),
    ];
    const s = await parseStreamFile(file('garbage.jsonl', `${lines.join('\n')}\n`));
    expect(s.lines).toBe(8);
    expect(s.blank_lines).toBe(1);
    expect(s.parsed_events).toBe(3);
    expect(s.parse_errors).toBe(4);
    expect(s.parse_error_samples.map((e) => [e.line, e.reason])).toEqual([
      [3, 'invalid_json'],
      [4, 'not_an_object'],
      [5, 'missing_type'],
      [7, 'binary'],
    ]);
    expect(s.parse_error_samples[3]!.excerpt).toBe('???binary?');
    expect(s.test_command_count).toBe(1);
    expect(s.usage?.input_tokens).toBe(10);
  });

  it('a truncated last line is one parse error, and the command it held is unfinished', async () => {
    const [started, completed] = commandLines('item_1', zsh('make test'), 0, 'ok');
    const s = await parseStreamFile(file('truncated.jsonl', `${started}\n${completed!.slice(0, 60)}`));
    expect(s.lines).toBe(2);
    expect(s.parse_errors).toBe(1);
    expect(s.parse_error_samples[0]).toMatchObject({ line: 2, reason: 'truncated' });
    expect(s.command_stats.in_progress).toBe(1);
    expect(s.commands[0]).toMatchObject({ id: 'item_1', status: 'in_progress', category: 'tests' });
    expect(s.test_command_count).toBe(0);
  });

  it('a 30 MB aggregated_output is read by head and tail: exit code and failure kept, memory bounded', async () => {
    const p = join(dir, 'huge.jsonl');
    const out = createWriteStream(p);
    const [started] = commandLines('item_5', zsh('make test'), null);
    out.write(`${started}\n`);
    out.write('{"type":"item.completed","item":{"id":"item_5","type":"command_execution","command":"/bin/zsh -lc \'make test\'","aggregated_output":"');
    const block = 'tests/test_mod.py::test_case PASSED\\n'.repeat(28_000); // ~1 MB of escaped output
    for (let i = 0; i < 30; i++) if (!out.write(block)) await once(out, 'drain');
    out.write('FAILED tests/test_big.py::test_huge - assert 1 == 2\\n","exit_code":2,"status":"failed"}}\n');
    out.write(`${message('item_6', 'tests failed')}\n`);
    out.end();
    await once(out, 'finish');

    const before = process.memoryUsage().rss;
    const s = await parseStreamFile(p);
    const grown = process.memoryUsage().rss - before;
    expect(s.parse_errors).toBe(0);
    expect(s.oversized_lines).toBe(1);
    expect(s.oversized_samples[0]).toMatchObject({ line: 2, salvaged: true });
    expect(s.max_line_bytes).toBeGreaterThan(30_000_000);
    expect(s.bytes).toBe(readFileSync(p).length);
    expect(s.failed_test_commands).toHaveLength(1);
    expect(s.failed_test_commands[0]).toMatchObject({ id: 'item_5', exit_code: 2, status: 'failed', category: 'tests' });
    expect(s.failed_test_commands[0]!.output_excerpt).toContain('FAILED tests/test_big.py::test_huge - assert 1 == 2\n');
    expect(s.final_message).toBe('tests failed');
    // The 30 MB line is never held: far less than its size is allocated.
    expect(grown).toBeLessThan(25 * 1024 * 1024);

    // The allowlist sees the tail of the output.
    const a = await analyzeAttempt({
      streamPath: p,
      exitCode: 0,
      stateBefore: 'IMPLEMENTING',
      attemptNo: 1,
      runId: 'run_0123456789ab',
      policy: policyWith({ known_test_failure_allowlist: ['test_big\\.py::test_huge'] }),
    });
    expect(a.verdict.reason_code).toBe('runtime_success_allowlisted_test_failures');
  });

  it('a huge line that is not a codex command is a parse error (line_too_long), and the next lines still count', async () => {
    const junk = Buffer.alloc(9 * 1024 * 1024, 0x41);
    const p = file('junk.jsonl', Buffer.concat([junk, Buffer.from(`\n${message('item_1', 'after')}\n`)]));
    const s = await parseStreamFile(p);
    expect(s.parse_errors).toBe(1);
    expect(s.parse_error_samples[0]).toMatchObject({ line: 1, reason: 'line_too_long' });
    expect(s.oversized_samples[0]).toMatchObject({ line: 1, bytes: junk.length + 1, salvaged: false });
    expect(s.final_message).toBe('after');
    expect(s.lines).toBe(2);
  });

  it('a binary file without newlines is counted, not thrown', async () => {
    const bin = Buffer.alloc(3 * 1024 * 1024);
    for (let i = 0; i < bin.length; i++) bin[i] = (i * 2654435761) >>> 24;
    const s = await parseStreamFile(file('random.bin', bin));
    expect(s.lines).toBe(bin.filter((b) => b === 10).length + (bin[bin.length - 1] === 10 ? 0 : 1));
    expect(s.parsed_events).toBe(0);
    expect(s.parse_errors + s.blank_lines).toBe(s.lines);
    expect(s.bytes).toBe(bin.length);
  });

  it('invalid UTF-8 inside a string is counted and the line still parses', async () => {
    const good = Buffer.from('{"type":"item.completed","item":{"id":"item_1","type":"agent_message","text":"caf');
    const p = file('utf8.jsonl', Buffer.concat([good, Buffer.from([0xff, 0xfe]), Buffer.from('"}}\n')]));
    const s = await parseStreamFile(p);
    expect(s.parse_errors).toBe(0);
    expect(s.invalid_utf8_lines).toBe(1);
    expect(s.final_message).toBe('caf\uFFFD\uFFFD');
  });

  it('CRLF line endings parse', async () => {
    const s = await parseStreamFile(file('crlf.jsonl', `${commandLines('item_1', zsh('pytest'), 0).join('\r\n')}\r\n`));
    expect(s.parse_errors).toBe(0);
    expect(s.test_command_count).toBe(1);
  });

  it('an oversized line pushed as text is handled like one read from a file', () => {
    const acc = new StreamAccumulator({ maxLineBytes: 4096 });
    const [started, completed] = commandLines('item_1', zsh('pytest -x'), 1, `${'x'.repeat(10_000)}\nE   AssertionError`);
    acc.pushLine(started!);
    acc.pushLine(completed!);
    const s = acc.result();
    expect(s.oversized_lines).toBe(1);
    expect(s.failed_test_commands[0]).toMatchObject({ id: 'item_1', exit_code: 1 });
    expect(s.failed_test_commands[0]!.output_excerpt).toContain('E   AssertionError');
  });
});

describe('chunking', () => {
  it('any chunk boundaries give the same result as reading the file', async () => {
    const path = join(FIXTURES, 'calib_dexter_20260225_r2_20260225T010449205273Z.jsonl');
    const bytes = readFileSync(path);
    const whole = await parseStreamFile(path);
    await fc.assert(
      fc.asyncProperty(fc.array(fc.integer({ min: 1, max: bytes.length }), { maxLength: 40 }), async (cuts) => {
        const acc = new StreamAccumulator();
        const points = [...new Set([0, ...cuts, bytes.length])].sort((a, b) => a - b);
        for (let i = 1; i < points.length; i++) acc.pushChunk(bytes.subarray(points[i - 1], points[i]));
        acc.end();
        expect(acc.result()).toEqual(whole);
      }),
      { numRuns: 60 },
    );
  });

  it('lines pushed one by one give the same result as the file', async () => {
    const path = join(FIXTURES, 'calib_mem0_20260225_r2_20260225T005934988847Z.jsonl');
    const acc = new StreamAccumulator();
    for (const line of readFileSync(path, 'utf8').split('\n').slice(0, -1)) acc.pushLine(line);
    expect(acc.result()).toEqual(await parseStreamFile(path));
  });
});

describe('stamped lines', () => {
  it('stampLine adds a leading _ts key to a JSON object line and leaves other lines alone', () => {
    const at = new Date('2026-02-25T01:01:56.572Z');
    expect(stampLine('{"type":"turn.started"}', at)).toBe('{"_ts":"2026-02-25T01:01:56.572Z","type":"turn.started"}');
    expect(stampLine('{}\n', at)).toBe('{"_ts":"2026-02-25T01:01:56.572Z"}');
    expect(stampLine('  {"a":1}', at)).toBe('{"_ts":"2026-02-25T01:01:56.572Z","a":1}');
    expect(stampLine('warning: not json', at)).toBe('warning: not json');
    expect(JSON.parse(stampLine('{"type":"x","item":{"id":"1"}}', at))).toEqual({ _ts: '2026-02-25T01:01:56.572Z', type: 'x', item: { id: '1' } });
  });

  it('command durations come from item.started -> item.completed receive times', async () => {
    const t0 = Date.parse('2026-02-25T01:00:00.000Z');
    const at = (ms: number) => new Date(t0 + ms);
    const lines = [
      stampLine('{"type":"thread.started","thread_id":"t"}', at(0)),
      ...commandLines('item_1', zsh('make test'), 0, 'ok', { start: at(1000), end: at(118_760) }),
      ...commandLines('item_2', zsh('ls -la'), 0, 'x', { start: at(119_000), end: at(119_052) }),
      ...commandLines('item_3', zsh('pip install -e .'), 0, 'x', { start: at(120_000), end: at(198_668) }),
      ...commandLines('item_4', zsh('git status'), 0, ''),
    ];
    const s = await parseStreamFile(file('stamped.jsonl', `${lines.join('\n')}\n`));
    expect(s.parse_errors).toBe(0);
    expect(s.stamped_lines).toBe(7);
    expect(s.first_ts).toBe('2026-02-25T01:00:00.000Z');
    expect(s.last_ts).toBe('2026-02-25T01:03:18.668Z');
    expect(s.commands.map((c) => [c.id, c.duration_ms])).toEqual([
      ['item_1', 117_760],
      ['item_2', 52],
      ['item_3', 78_668],
      ['item_4', null],
    ]);
    expect(s.command_stats.top_by_duration.map((c) => c.id)).toEqual(['item_1', 'item_3', 'item_2']);
    expect(s.command_stats.by_category.tests.duration_ms).toBe(117_760);
    expect(s.command_stats.by_category.dependency_install.duration_ms).toBe(78_668);
    expect(s.command_stats.durations_known).toBe(3);
  });
});

describe('createStampTransform', () => {
  it('stamps a stream the way stampLine stamps each line, whatever the chunking', async () => {
    const { createStampTransform } = await import('../../src/analysis/index.js');
    const raw = `${readFileSync(join(FIXTURES, 'run_policy_smoke_20260224_20260225T001719522551Z.jsonl'), 'utf8')}{}\n{ }\nnot json\n{\n`;
    const at = new Date('2026-02-25T01:00:00.000Z');
    const expected = raw
      .split('\n')
      .slice(0, -1)
      .map((l) => (l === '{' ? '{' : stampLine(l, at)))
      .join('\n');
    const bytes = Buffer.from(raw);
    await fc.assert(
      fc.asyncProperty(fc.array(fc.integer({ min: 1, max: bytes.length }), { maxLength: 30 }), async (cuts) => {
        const t = createStampTransform(() => at);
        const parts: Buffer[] = [];
        t.on('data', (d: Buffer) => parts.push(d));
        const points = [...new Set([0, ...cuts, bytes.length])].sort((a, b) => a - b);
        for (let i = 1; i < points.length; i++) t.write(bytes.subarray(points[i - 1], points[i]));
        t.end();
        await once(t, 'end');
        expect(Buffer.concat(parts).toString()).toBe(`${expected}\n`);
      }),
      { numRuns: 40 },
    );
  });
});
