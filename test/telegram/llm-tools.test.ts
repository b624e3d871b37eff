import OpenAI from 'openai';
import { afterEach, describe, expect, test } from 'vitest';
import { chooseTool, parseToolCall, toOpenAiTools } from '../../src/llm/tools.js';
import { TOOLS } from '../../tools/index.js';
import { startFakeOpenAI, textReply, toolCall, type FakeOpenAI } from '../helpers/fake-openai.js';

const pause = TOOLS.find((t) => t.name === 'pause')!;
const listRuns = TOOLS.find((t) => t.name === 'list-runs')!;

describe('toOpenAiTools / parseToolCall', () => {
  test('function definitions carry the registry JSON Schema minus omitted fields', () => {
    const [def] = toOpenAiTools([pause], { omitFields: ['skip_doctor', 'idempotency_key'] });
    expect(def!.type).toBe('function');
    expect(def!.function.name).toBe('pause');
    expect(def!.function.parameters).toEqual({
      type: 'object',
      properties: {
        run_id: { type: 'string', pattern: '^[a-z0-9][a-z0-9_.-]{0,63}$', description: 'Run id: run_ + 12 hex digits, or a name chosen at create-run (e.g. calib_mem0_r1)' },
      },
      required: ['run_id'],
      additionalProperties: false,
    });
    const [full] = toOpenAiTools([pause]);
    expect(Object.keys(full!.function.parameters!.properties as object)).toEqual(['run_id', 'idempotency_key', 'skip_doctor']);
  });

  test('tool calls are checked against what was offered', () => {
    const call = (name: string, args: string) => ({ id: 'c1', type: 'function' as const, function: { name, arguments: args } });
    expect(parseToolCall(call('pause', '{"run_id":"run_0123456789ab"}'), [pause])).toEqual({ ok: true, id: 'c1', name: 'pause', args: { run_id: 'run_0123456789ab' } });
    expect(parseToolCall(call('pause', ''), new Set(['pause']))).toMatchObject({ ok: true, args: {} });
    expect(parseToolCall(call('retry', '{}'), [pause])).toMatchObject({ ok: false, error: "the model chose 'retry', which was not offered; offered: pause" });
    expect(parseToolCall(call('pause', '[1]'), [pause])).toMatchObject({ ok: false, error: "the model's arguments for pause must be a JSON object" });
    expect(parseToolCall(call('pause', '{"skip_doctor":true}'), [pause], { forbiddenFields: ['skip_doctor'] })).toMatchObject({ ok: false });
  });
});

describe('chooseTool against an OpenAI-compatible server', () => {
  let llm: FakeOpenAI | undefined;
  afterEach(async () => {
    await llm?.close();
    llm = undefined;
  });

  test('returns the first tool call or the plain answer; API errors throw', async () => {
    llm = await startFakeOpenAI();
    const client = new OpenAI({ apiKey: llm.apiKey, baseURL: llm.baseURL, maxRetries: 0 });
    const base = { client, model: 'm', messages: [{ role: 'user' as const, content: 'list runs' }], tools: [pause, listRuns] };
    llm.reply({ kind: 'tool_calls', calls: [{ name: 'list-runs', arguments: { state: 'PAUSED' } }, { name: 'pause', arguments: {} }] });
    expect(await chooseTool(base)).toMatchObject({ kind: 'call', call: { ok: true, name: 'list-runs', args: { state: 'PAUSED' } }, extraCalls: 1 });
    llm.reply(textReply('nothing to do'));
    expect(await chooseTool(base)).toEqual({ kind: 'none', content: 'nothing to do' });
    llm.reply(toolCall('pause', { run_id: 'run_0123456789ab' }));
    await chooseTool(base);
    expect(llm.requests.at(-1)!.body.tool_choice).toBe('auto');
    expect(llm.requests.at(-1)!.body.tools!.map((t) => t.function.name)).toEqual(['pause', 'list-runs']);
    const wrongKey = new OpenAI({ apiKey: 'sk-wrong', baseURL: llm.baseURL, maxRetries: 0 });
    await expect(chooseTool({ ...base, client: wrongKey })).rejects.toThrow(/Incorrect API key/);
  });
});
