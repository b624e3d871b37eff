import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { readReasoning, readStartedCommand } from '../../src/analysis/line-shapes.js';
import { stampLine } from '../../src/analysis/index.js';
import { FIXTURES } from './helpers.js';

// The digest reads command starts and reasoning items without JSON.parse. What it reads must be
// exactly what JSON.parse gives, and anything JSON.parse would refuse or read as another object
// must be left to JSON.parse (null).

type Obj = Record<string, unknown>;

function parsed(text: string): Obj | undefined {
  try {
    const v = JSON.parse(text) as unknown;
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Obj) : undefined;
  } catch {
    return undefined;
  }
}

/** What the fast readers must agree with: JSON.parse, and codex's exact object. */
function check(text: string): void {
  const started = readStartedCommand(text);
  const reasoning = readReasoning(text);
  expect(started && reasoning).toBeFalsy();
  if (!started && !reasoning) return;
  const o = parsed(text);
  expect(o, text).toBeDefined();
  const item = o!.item as Obj;
  const topKeys = '_ts' in o! ? ['_ts', 'type', 'item'] : ['type', 'item'];
  expect(Object.keys(o!)).toEqual(topKeys);
  if (started) {
    expect(started).toEqual({ ts: o!._ts, id: item.id, command: item.command });
    expect(o!.type).toBe('item.started');
    expect(item).toEqual({ id: started.id, type: 'command_execution', command: started.command, aggregated_output: '', exit_code: null, status: 'in_progress' });
    expect(Object.keys(item)).toEqual(['id', 'type', 'command', 'aggregated_output', 'exit_code', 'status']);
  } else {
    expect(reasoning).toEqual({ ts: o!._ts, event: o!.type });
    expect(Object.keys(item)).toEqual(['id', 'type', 'text']);
    expect(item.type).toBe('reasoning');
    expect(typeof item.id === 'string' && typeof item.text === 'string').toBe(true);
  }
}

const recorded: string[] = [];
for (const f of readdirSync(FIXTURES).filter((x) => x.endsWith('.jsonl'))) for (const l of readFileSync(join(FIXTURES, f), 'utf8').split('\n')) if (l) recorded.push(l);

const started = (command: string, id = 'item_1'): string =>
  JSON.stringify({ type: 'item.started', item: { id, type: 'command_execution', command, aggregated_output: '', exit_code: null, status: 'in_progress' } });
const reasoning = (text: string): string => JSON.stringify({ type: 'item.completed', item: { id: 'item_2', type: 'reasoning', text } });

describe('exact readers of small codex lines', () => {
  it('read the recorded command starts and reasoning items, stamped or not, as JSON.parse does', () => {
    let read = 0;
    for (const l of recorded) {
      for (const line of [l, stampLine(l, new Date('2026-02-25T01:02:03.456Z'))]) {
        check(line);
        if (readStartedCommand(line) || readReasoning(line)) read++;
      }
    }
    // Every recorded start and reasoning line has codex's exact shape.
    const expected = recorded.filter((l) => /^\{"type":"item\.started","item":\{"id":"[^"]*","type":"command_execution"/.test(l) || /"type":"reasoning"/.test(l)).length * 2;
    expect(read).toBe(expected);
    expect(read).toBeGreaterThan(200);
  });

  it('read escapes, unicode and lone surrogates as JSON.parse does', () => {
    for (const text of [started('/bin/zsh -lc "echo \\"hi\\" \\\\ \\n ü 𝄞"'), started('a\u2028b\u0001c'), started('x', 'id"\\'), reasoning('**bold** \\u00e9 \ud800 tab\t')]) {
      expect(readStartedCommand(text) ?? readReasoning(text)).not.toBeNull();
      check(text);
    }
    expect(readStartedCommand('{"type":"item.started","item":{"id":"\\ud800","type":"command_execution","command":"\\u0041\\/","aggregated_output":"","exit_code":null,"status":"in_progress"}} \r')).toEqual({ ts: undefined, id: '\ud800', command: 'A/' });
  });

  it('read ids with escaped quotes and backslashes, and never a command completion whose id holds the next key text', () => {
    for (const id of ['a"b', 'a\\', 'a\\"', '","type":"reasoning', '\\\\"x']) {
      const s = started('ls', id);
      expect(readStartedCommand(s), s).toEqual({ ts: undefined, id, command: 'ls' });
      const r = JSON.stringify({ type: 'item.updated', item: { id, type: 'reasoning', text: 'x' } });
      expect(readReasoning(r), r).toEqual({ ts: undefined, event: 'item.updated' });
      check(s);
      check(r);
    }
    // A command's completion is neither, whatever its id holds.
    const done = JSON.stringify({ type: 'item.completed', item: { id: '","type":"reasoning","text":"', type: 'command_execution', command: 'ls', aggregated_output: '', exit_code: 0, status: 'completed' } });
    expect(readReasoning(done)).toBeNull();
    expect(readStartedCommand(done)).toBeNull();
  });

  it('leave to JSON.parse every line that is not exactly codex\'s object', () => {
    const s = started('ls');
    const hostile = [
      s.replace('"id":"item_1"', '"id":"item_1","id":"x"'),
      s.replace('"command":"ls"', '"command":"ls","command":"sudo rm -rf /"'),
      s.replace('"status":"in_progress"', '"status":"in_progress","extra":1'),
      s.replace('"command":"ls"', '"command":"l\\xs"'),
      s.replace('"command":"ls"', '"command":"l\u0001s"'),
      s.replace('"command":"ls"', '"command":"l\\u00zz"'),
      s.replace('"exit_code":null', '"exit_code":0'),
      s.replace('"aggregated_output":""', '"aggregated_output":"x"'),
      `${s}x`,
      `${s}\u00a0`,
      ` ${s}`,
      `\ufeff${s}`,
      s.slice(0, -1),
      s.replace('{"type"', '{"_ts":"a\\q","type"'),
      s.replace('"type":"item.started"', '"type":"item\\u002estarted"'),
      '{"type":"item.completed","item":{"id":"m","type":"agent_message","text":"{\\"type\\":\\"item.started\\",\\"item\\":{}}"}}',
      reasoning('x').replace('"text":"x"', '"text":"x","text":"y"'),
      reasoning('x').replace('"text":"x"', '"text":1'),
      reasoning('x').replace('"text":"x"', '"summary":"x"'),
      reasoning('x').replace('"type":"item.completed"', '"type":"item.failed"'),
      reasoning('x').replace('"type":"reasoning"', '"type":"reasoning "'),
    ];
    for (const text of hostile) {
      expect(readStartedCommand(text), text).toBeNull();
      expect(readReasoning(text), text).toBeNull();
    }
  });

  it('agree with JSON.parse on recorded lines mangled at random', () => {
    const pool = recorded.filter((l) => readStartedCommand(l) || readReasoning(l));
    const piece = fc.oneof(fc.string({ maxLength: 3 }), fc.constantFrom('\\', '"', '\\u', '\\n', '\\"', '\u0000', '\u001f', ',"x":1', '}', '{', ' ', '\r', 'é', '\ud83d\ude00'));
    fc.assert(
      fc.property(fc.constantFrom(...pool), fc.array(fc.tuple(fc.nat(), fc.nat({ max: 3 }), piece), { maxLength: 3 }), fc.boolean(), (line, edits, stamp) => {
        let text = stamp ? stampLine(line, new Date(1772000000000)) : line;
        for (const [at, del, ins] of edits) {
          const i = at % (text.length + 1);
          text = text.slice(0, i) + ins + text.slice(i + del);
        }
        check(text);
      }),
      { numRuns: 3000 },
    );
  });

  it('take time linear in the line on near-misses (no catastrophic backtracking)', () => {
    // A long run of escapes that fails at the very end; a backtracking blow-up would never return.
    const long = started(`${'\\'.repeat(20_000)}${'a'.repeat(20_000)}`).replace('"aggregated_output"', '"aggregated_outpu"');
    expect(readStartedCommand(long)).toBeNull();
    const longReasoning = `${reasoning('é\\n'.repeat(50_000))}x`;
    expect(readReasoning(longReasoning)).toBeNull();
  });
});
