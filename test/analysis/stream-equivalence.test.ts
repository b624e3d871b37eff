import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { parseStreamFile, stampLine, StreamAccumulator, type StreamParserOptions, type StreamSummary } from '../../src/analysis/index.js';
import * as v1 from './legacy/stream-parser-v1.js';
import { FIXTURES, commandLines, message, usage, zsh } from './helpers.js';

// The digest's reader was made faster (issue #19: the judgement of each command is remembered,
// stamps are read without Date.parse on every line, the file is read ahead of the parser). Every
// field of the summary must stay what the reader before those changes gave: the old reader is
// kept verbatim in ./legacy/ and both read the same bytes, cut into chunks in many ways.

const dir = mkdtempSync(join(tmpdir(), 'agentpr-equiv-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const FIXTURE_FILES = readdirSync(FIXTURES)
  .filter((f) => f.endsWith('.jsonl'))
  .sort()
  .map((f) => join(FIXTURES, f));
const SUBAGENT = new URL('../fixtures/codex/stream-0.171.0-subagent.jsonl', import.meta.url).pathname;

function chunked(data: Buffer, sizes: (i: number) => number): Buffer[] {
  const out: Buffer[] = [];
  for (let pos = 0, i = 0; pos < data.length; i++) {
    const n = Math.max(1, sizes(i));
    out.push(data.subarray(pos, pos + n));
    pos += n;
  }
  return out;
}

function viaChunks(Acc: typeof StreamAccumulator | typeof v1.StreamAccumulator, chunks: Buffer[], opts?: StreamParserOptions): StreamSummary {
  const acc = new Acc(opts);
  // Each chunk is copied into one reused buffer, as the file reader does, so a reader that kept a
  // reference to a chunk past push() would read overwritten bytes.
  const scratch = Buffer.alloc(chunks.reduce((m, c) => Math.max(m, c.length), 1));
  for (const c of chunks) {
    c.copy(scratch);
    acc.pushChunk(scratch.subarray(0, c.length));
    scratch.fill(0x7b);
  }
  acc.end();
  return acc.result() as StreamSummary;
}

const CHUNKINGS: Array<[string, (i: number) => number]> = [
  ['one chunk', () => 1 << 30],
  ['1 byte', () => 1],
  ['7 bytes', () => 7],
  ['4 KiB', () => 4096],
  ['uneven', (i) => [3, 1021, 65537, 2, 17, 333][i % 6]!],
];

/**
 * The new and the old reader give the same summary for `data`, however it is cut: the same values
 * and the same JSON text (digests are stored and shown as JSON, so key order is part of it).
 */
function expectSame(data: Buffer, opts?: StreamParserOptions, chunkings = CHUNKINGS): StreamSummary {
  const expected = viaChunks(v1.StreamAccumulator, [data], opts);
  for (const [name, sizes] of chunkings) {
    const chunks = chunked(data, sizes);
    const got = viaChunks(StreamAccumulator, chunks, opts);
    expect(got, `${name}`).toEqual(expected);
    expect(JSON.stringify(got), `${name}, as JSON`).toBe(JSON.stringify(expected));
    expect(viaChunks(v1.StreamAccumulator, chunks, opts), `${name}, old reader`).toEqual(expected);
  }
  return expected;
}

function file(name: string, content: Buffer | string): string {
  const p = join(dir, name);
  writeFileSync(p, content);
  return p;
}

describe('the digest reader gives the same summary as before', () => {
  it.each(FIXTURE_FILES.map((f) => [f.split('/').pop()!, f]))('recorded stream %s', async (_name, path) => {
    const data = readFileSync(path);
    const expected = expectSame(data);
    expect(expected.parsed_events).toBeGreaterThan(0);
    expect(await parseStreamFile(path)).toEqual(await v1.parseStreamFile(path));
  });

  it('the codex 0.171.0 stream with sub-agents', async () => {
    expectSame(readFileSync(SUBAGENT));
    expect(await parseStreamFile(SUBAGENT)).toEqual(await v1.parseStreamFile(SUBAGENT));
  });

  it('all recorded streams joined and repeated, stamped, as the benchmark builds them', async () => {
    // Over 2 MiB, so the file reader's read-ahead turns over both buffers several times.
    const lines: string[] = [];
    for (const f of FIXTURE_FILES) for (const l of readFileSync(f, 'utf8').split('\n')) if (l) lines.push(l);
    let t = Date.parse('2026-02-25T23:58:00.000Z');
    const out: string[] = [];
    for (let copy = 0; copy < 4; copy++) {
      for (const l of lines) {
        t += 997;
        out.push(stampLine(l.replace(/"id":"item_(\d+)"/, (_, n: string) => `"id":"item_${copy * 1000 + Number(n)}"`), new Date(t)));
      }
    }
    const data = Buffer.from(`${out.join('\n')}\n`);
    expect(data.length).toBeGreaterThan(2 * 1024 * 1024);
    const path = file('joined.jsonl', data);
    const got = await parseStreamFile(path);
    expect(got).toEqual(await v1.parseStreamFile(path));
    expect(got.stamped_lines).toBe(out.length);
    expect(got.commands_total).toBeGreaterThan(500);
    expect(got.command_stats.durations_known).toBeGreaterThan(500);
    expectSame(data, undefined, [CHUNKINGS[0]!, CHUNKINGS[4]!]);
    // The same through the line-at-a-time entry point.
    const a = new StreamAccumulator();
    const b = new v1.StreamAccumulator();
    for (const l of out) {
      a.pushLine(l);
      b.pushLine(l);
    }
    expect(a.result()).toEqual(b.result());
  });
});

describe('hostile and awkward input reads the same as before', () => {
  const base = [
    '{"type":"thread.started","thread_id":"t-1"}',
    '{"type":"turn.started"}',
    ...commandLines('item_1', zsh('npm test'), 1, 'FAIL x\n  ✗ boom 💥\n'),
    message('item_2', 'done'),
    usage(100, 10, 20),
  ];

  it('CRLF line ends, a last line without a newline, blank and whitespace lines', () => {
    expectSame(Buffer.from(`${base.join('\r\n')}\r\n\r\n   \r\n\t\n${base[2]}`));
    expectSame(Buffer.from(`${base.join('\n')}\n${base[3]!.slice(0, 40)}`));
  });

  it('multibyte UTF-8 cut at every byte, and invalid UTF-8', () => {
    const multibyte = Buffer.from(`${commandLines('item_9', zsh('echo ü€𝄞'), 1, '€'.repeat(50) + '𝄞'.repeat(20)).join('\n')}\n`);
    expectSame(multibyte, undefined, [
      ['1 byte', () => 1],
      ['2 bytes', () => 2],
      ['3 bytes', () => 3],
    ]);
    const bad = Buffer.concat([Buffer.from('{"type":"item.completed","item":{"id":"x","type":"agent_message","text":"a'), Buffer.from([0xe2, 0x82, 0x0a - 10 + 0x41, 0xff]), Buffer.from('"}}\n')]);
    const s = expectSame(Buffer.concat([bad, multibyte, Buffer.from([0xc3, 0x0a])]));
    expect(s.invalid_utf8_lines).toBe(2);
  });

  it('a "type" key in nested text, an event type inside an output, and lines that only look like events', () => {
    const tricky = [
      JSON.stringify({ type: 'item.completed', item: { id: 'm1', type: 'agent_message', text: '{"type":"turn.failed","error":{"message":"no"}}' } }),
      JSON.stringify({ type: 'item.completed', item: { id: 'c1', type: 'command_execution', command: zsh('cat x'), aggregated_output: '"type":"error","message":"fake"\n{"type":"item.completed"}', exit_code: 0, status: 'completed' } }),
      '{"item":{"type":"command_execution"},"type":"item.completed"}',
      '{"type":"item.completed","type":"turn.started"}',
      '{"type":"item.completed","item":{"id":"d","type":"command_execution","command":"a","command":"git push","aggregated_output":"","exit_code":0,"status":"completed"}}',
      '{"_ts":"2026-02-25T00:00:01.000Z","_ts":"2026-02-25T00:00:02.000Z","type":"turn.started"}',
      '["type","item.completed"]',
      '"type"',
      '{"type":7}',
      '{"type":"item.completed","item":null}',
      '{"type":"item.completed","item":{"id":"e","type":"command_execution","command":"/bin/zsh -lc \'git push\'","aggregated_output":"\\u0000\\ud800","exit_code":-0,"status":"failed"}} ',
      '{"type":"item.completed","item":{"id":"f","type":"command_execution","command":"ls","aggregated_output":"raw\u0001control","exit_code":0,"status":"completed"}}',
      '{"type":"item.completed","item":{"id":"g","type":"command_execution","command":"ls","aggregated_output":"","exit_code":01,"status":"completed"}}',
      '{"type":"item.started","item":{"id":"h","type":"command_execution","command":"sudo rm -rf /","aggregated_output":"","exit_code":null,"status":"in_progress"}}trailing',
      '\u0000\u0001binary\u0002',
      '{"type":"error","message":"boom"}',
      '{"type":"turn.failed","error":{"message":"bad"}}',
      '{"type":"something.new","x":1}',
      '{"type":"item.completed","item":{"id":"u","type":"new_item_kind"}}',
    ];
    const s = expectSame(Buffer.from(`${[...base, ...tricky].join('\n')}\n`));
    expect(s.parse_errors).toBeGreaterThan(3);
    expect(s.safety_violation_count).toBe(0);
    // The repeated "command" key (JSON takes the last) and the line with a trailing space.
    expect(s.push_attempts.map((p) => p.id)).toEqual(['d', 'e']);
  });

  it('huge lines: long command output read by head and tail, and lines over the line cap', () => {
    const long = commandLines('item_5', zsh('pytest -q'), 1, `${'x'.repeat(70_000)}\n${'y\\"'.repeat(30_000)}tail`);
    const noisy = JSON.stringify({ type: 'item.completed', item: { id: 'm', type: 'agent_message', text: 'z'.repeat(200_000) } });
    const data = Buffer.from(`${[...base, ...long, noisy, 'q'.repeat(300_000), ...base].join('\n')}\n${'w'.repeat(150_000)}`);
    // Coarse cuts only: the old reader's tail keeping is quadratic in the number of chunks of one oversized line.
    const coarse = [CHUNKINGS[0]!, CHUNKINGS[3]!, CHUNKINGS[4]!];
    const s = expectSame(data, { maxLineBytes: 100_000 }, coarse);
    expect(s.oversized_lines).toBe(4);
    expect(s.commands_total).toBe(3);
    expectSame(data, undefined, coarse);
  });

  it('timestamps: every shape the stamp fast path must leave to Date.parse', () => {
    const stamps = [
      '2026-02-25T23:59:59.999Z',
      '2026-02-26T00:00:00.000Z',
      '2026-02-26T00:00:59.999Z',
      '2026-02-26T00:00:60.000Z',
      '2026-02-26T00:00:99.000Z',
      '2026-02-26T00:00:0a.000Z',
      '2026-02-26T00:00:1.5000Z',
      '2026-02-26T00:00:01.000+01:00',
      '2026-02-26T00:00:01Z',
      '2026-02-26T00:00:01.000',
      '2026-02-26T24:00:00.000Z',
      '2026-02-26T24:00:30.000Z',
      '2026-02-30T10:00:00.000Z',
      '2026-02-30T10:00:10.000Z',
      '+002026-02-26T10:00:10.000Z',
      '2026-02-26T10:00:10.000z',
      'not a time',
      '',
      '2026-02-26T10:00:10.000Z',
      '2026-02-26T10:00:11.000Z',
    ];
    const lines = stamps.flatMap((ts, i) => [`{"_ts":${JSON.stringify(ts)},"type":"item.started","item":{"id":"c${i}","type":"command_execution","command":"ls","aggregated_output":"","exit_code":null,"status":"in_progress"}}`, `{"_ts":${JSON.stringify(stamps[(i + 1) % stamps.length])},"type":"item.completed","item":{"id":"c${i}","type":"command_execution","command":"ls","aggregated_output":"","exit_code":0,"status":"completed"}}`]);
    expectSame(Buffer.from(`${lines.join('\n')}\n`), undefined, [CHUNKINGS[0]!]);
  });

  it('many distinct commands (the remembered judgements start over), long commands, and ids reused with other commands', () => {
    const lines: string[] = [];
    for (let i = 0; i < 1400; i++) lines.push(...commandLines(`c${i}`, zsh(i % 3 ? `sed -n ${i},+2p f${i % 700}` : 'npm test'), i % 5 ? 0 : 1, `out ${i}`));
    const longCommand = zsh(`printf '%s' '${'line '.repeat(2000)}' > f; git commit -am x && sudo make install`);
    lines.push(...commandLines('long', longCommand, 0), ...commandLines('long2', longCommand, 1));
    lines.push(JSON.stringify({ type: 'item.started', item: { id: 'same', type: 'command_execution', command: zsh('npm test'), aggregated_output: '', exit_code: null, status: 'in_progress' } }));
    lines.push(JSON.stringify({ type: 'item.completed', item: { id: 'same', type: 'command_execution', command: zsh('git push origin HEAD'), aggregated_output: '', exit_code: 0, status: 'completed' } }));
    lines.push(JSON.stringify({ type: 'item.started', item: { id: 'open', type: 'command_execution', command: zsh('sudo npm i -g x'), aggregated_output: '', exit_code: null, status: 'in_progress' } }));
    const s = expectSame(Buffer.from(`${lines.join('\n')}\n`), undefined, [CHUNKINGS[0]!, CHUNKINGS[3]!]);
    expect(s.commands_total).toBe(1404);
    expect(s.safety_violation_count).toBe(3);
    expect(s.push_attempt_count).toBe(3);
    expect(s.command_stats.top_by_frequency[0]).toMatchObject({ command: 'npm test', count: 467 });
  });

  it('any stream of recorded lines, cut and mangled at random, reads the same', () => {
    const pool: string[] = [];
    for (const f of [...FIXTURE_FILES.slice(0, 6), SUBAGENT]) for (const l of readFileSync(f, 'utf8').split('\n')) if (l) pool.push(l);
    const line = fc.oneof(
      fc.constantFrom(...pool),
      fc.tuple(fc.constantFrom(...pool), fc.nat(), fc.string({ maxLength: 4 })).map(([l, at, s]) => l.slice(0, at % (l.length + 1)) + s + l.slice(at % (l.length + 1))),
      fc.tuple(fc.constantFrom(...pool), fc.nat(), fc.nat({ max: 8 })).map(([l, at, n]) => l.slice(0, at % (l.length + 1)) + l.slice((at % (l.length + 1)) + n)),
      fc.tuple(fc.constantFrom(...pool), fc.date({ min: new Date('2020-01-01'), max: new Date('2030-01-01'), noInvalidDate: true })).map(([l, d]) => stampLine(l, d)),
    );
    fc.assert(
      fc.property(fc.array(line, { maxLength: 40 }), fc.constantFrom('\n', '\r\n'), fc.array(fc.integer({ min: 1, max: 5000 }), { minLength: 1, maxLength: 8 }), (lines, eol, sizes) => {
        const data = Buffer.from(lines.join(eol));
        const expected = viaChunks(v1.StreamAccumulator, [data]);
        expect(viaChunks(StreamAccumulator, chunked(data, (i) => sizes[i % sizes.length]!))).toEqual(expected);
      }),
      { numRuns: 150 },
    );
  });

  it('more distinct event and item types than the counters keep: the overflow counts under (other) as before', () => {
    // The commonest counts are kept by reference once first seen; here the known types first appear
    // only after 1,000 unknown ones filled each map, so they must land in (other) too.
    const lines: string[] = [];
    for (let i = 0; i < 1005; i++) lines.push(JSON.stringify({ type: `vendor.event_${i}` }), JSON.stringify({ type: 'item.completed', item: { id: `x${i}`, type: `kind_${i}` } }));
    lines.push(...commandLines('c1', zsh('npm test'), 1, 'FAIL'), '{"type":"item.completed","item":{"id":"r1","type":"reasoning","text":"think"}}');
    lines.push(...commandLines('c2', zsh('ls'), 0), JSON.stringify({ type: 'item.completed', item: { id: 't', type: 'collab_tool_call', tool: 'spawn_agent' } }));
    const s = expectSame(Buffer.from(`${lines.join('\n')}\n`), undefined, [CHUNKINGS[0]!, CHUNKINGS[3]!]);
    expect(s.type_counts['(other)']).toBeGreaterThan(5);
    expect(s.type_counts['item.started']).toBeUndefined();
    expect(s.item_type_counts['(other)']).toBeGreaterThan(5);
  });

  it('past the kept records, failed test commands, the longest commands and the frequency list read the same', () => {
    // Records are built only for completions some list keeps; with room for 3 records and 2 samples
    // most completions land in none, and the ones that do must still be kept, with their excerpts.
    const lines: string[] = [];
    let t = Date.parse('2026-02-25T10:00:00.000Z');
    for (let i = 0; i < 60; i++) {
      const start = new Date((t += 1000));
      const end = new Date((t += (i * 7919) % 50_000));
      const cmd = i % 4 === 0 ? zsh('npm test') : i % 4 === 1 ? zsh(`pytest tests/test_${i}.py`) : zsh(`sed -n ${i},+9p src/f${i % 5}.ts`);
      lines.push(...commandLines(`c${i}`, cmd, i % 3 === 0 ? 1 : 0, `${'out '.repeat(i * 300)}\nline ${i} ✗ ü`, { start, end }));
    }
    // A long line read by head and tail, failing, among them.
    lines.push(...commandLines('long', zsh('npm test'), 2, `${'x'.repeat(70_000)}\nFAILED at the end`, { start: new Date((t += 1000)), end: new Date((t += 90_000)) }));
    const data = Buffer.from(`${lines.join('\n')}\n`);
    for (const opts of [{ maxCommandRecords: 3, maxSamples: 2 }, { maxCommandRecords: 0, maxSamples: 1 }, {}]) {
      const s = expectSame(data, opts, [CHUNKINGS[0]!, CHUNKINGS[4]!]);
      expect(s.commands_total).toBe(61);
      expect(s.command_stats.top_by_duration.length).toBe(10);
      expect(s.failed_test_commands.length).toBeGreaterThan(0);
      expect(s.failed_test_commands.every((r) => typeof r.output_excerpt === 'string' && r.output_excerpt.length > 0)).toBe(true);
    }
  });

  it('command starts and reasoning items whose ids hold escapes, quotes or the next key\'s text', () => {
    const started = (id: string, command = 'ls'): string =>
      `{"type":"item.started","item":{"id":"${id}","type":"command_execution","command":${JSON.stringify(command)},"aggregated_output":"","exit_code":null,"status":"in_progress"}}`;
    const reasoning = (id: string, event = 'item.completed'): string => `{"type":"${event}","item":{"id":"${id}","type":"reasoning","text":"t"}}`;
    const ids = ['a\\"b', 'a\\\\', 'a\\\\\\"', '\\",\\"type\\":\\"reasoning', 'q\\u0022', '\\"', 'x\\\\\\\\'];
    const lines: string[] = [];
    for (const id of ids) lines.push(started(id, 'sudo ls'), reasoning(id), reasoning(id, 'item.started'), reasoning(id, 'item.updated'));
    lines.push(
      // Near misses: broken escapes in the id, an event name of another length, a key between id and type.
      started('a\\'),
      reasoning('a\\'),
      reasoning('r', 'item.done'),
      reasoning('r', 'item.startedx'),
      '{"type":"item.completed","item":{"id":"r","kind":"x","type":"reasoning","text":"t"}}',
      '{"type":"item.started","item":{"id":"s","type":"command_execution ","command":"ls","aggregated_output":"","exit_code":null,"status":"in_progress"}}',
      ...commandLines('a\\"b', zsh('sudo ls'), 0),
    );
    const s = expectSame(Buffer.from(`${lines.join('\n')}\n`));
    expect(s.parse_errors).toBeGreaterThan(0);
    // Three reasoning lines per id, and the one with a key between id and type (valid JSON, read the slow way).
    expect(s.item_type_counts.reasoning).toBe(ids.length * 3 + 1);
    expect(s.safety_violation_count).toBeGreaterThan(0);
  });

  it('an oversized line arriving a few bytes at a time reads as in one chunk', () => {
    // 400 KB over a 100 KB cap in 3-byte chunks. The kept tail of such a line was trimmed one piece
    // at a time from a list of ~20,000 pieces per chunk (quadratic: 8.5 s here before, 0.7 s now).
    const data = Buffer.from(`${base.join('\n')}\n${'o'.repeat(400_000)}\n${base.join('\n')}\n`);
    const opts = { maxLineBytes: 100_000 };
    const whole = viaChunks(StreamAccumulator, [data], opts);
    expect(whole).toEqual(viaChunks(v1.StreamAccumulator, [data], opts));
    expect(whole.oversized_samples).toEqual([{ line: 7, bytes: 400_001, salvaged: false }]);
    expect(viaChunks(StreamAccumulator, chunked(data, () => 3), opts)).toEqual(whole);
  });
});
