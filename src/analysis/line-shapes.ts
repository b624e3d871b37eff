/**
 * Exact readers for the two commonest small lines of a codex stream, so the digest need not
 * build an object for each: the start of a command, and a reasoning item (which the digest only
 * counts). Together they are about half the lines of a typical stream; `JSON.parse` of such a
 * line costs several times more than matching it.
 *
 * Exactness is the contract: a reader returns values only when `JSON.parse(text)` would succeed
 * and give exactly the object codex writes (these keys, in this order, none repeated, nothing
 * else); the values are what `JSON.parse` would give. Anything else, however close (another key,
 * an escape JSON does not know, a raw control character, trailing text), returns null and the
 * line is parsed the ordinary way. So the fast path can neither count a line the parser would
 * refuse nor read one differently.
 */

/**
 * A JSON string body: runs of characters other than quote, backslash and controls, between
 * JSON's escapes. Written as run (escape run)*, so every escape starts with the one backslash
 * that can start it and a failed match backtracks in linear time.
 */
const RUN = String.raw`[^"\\\u0000-\u001f]*`;
const STR = String.raw`${RUN}(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})${RUN})*`;
/** The optional stamp the worker adds as the first key (see STREAM_TS_FIELD). */
const TS = `(?:"_ts":"(${STR})",)?`;
/** JSON whitespace after the object (a line has no newline; a trailing CR may remain). */
const END = String.raw`[ \t\r]*$`;

const STARTED_COMMAND = new RegExp(
  String.raw`^\{${TS}"type":"item\.started","item":\{"id":"(${STR})","type":"command_execution","command":"(${STR})","aggregated_output":"","exit_code":null,"status":"in_progress"\}\}${END}`,
);
const REASONING = new RegExp(String.raw`^\{${TS}"type":"(item\.(?:started|updated|completed))","item":\{"id":"${STR}","type":"reasoning","text":"${STR}"\}\}${END}`);

/**
 * Where the `"type"` key would start: after the stamp, if any. A cheap look so the patterns run
 * only on lines that can match; the patterns decide. (A look past the item's id as well, to skip
 * the pattern on command completions, measured slower than letting the pattern fail.)
 */
export function typeAt(text: string): number {
  if (text.startsWith('{"_ts":"')) {
    const q = text.indexOf('"', 8);
    return q === -1 ? -1 : q + 2;
  }
  return 1;
}

/** The value of a JSON string body the patterns above accepted (so its escapes are valid). */
function decode(body: string): string {
  return body.indexOf('\\') === -1 ? body : (JSON.parse(`"${body}"`) as string);
}

export interface StartedCommandLine {
  ts: string | undefined;
  id: string;
  command: string;
}

/**
 * `{"_ts":..,"type":"item.started","item":{"id":..,"type":"command_execution","command":..,"aggregated_output":"","exit_code":null,"status":"in_progress"}}`
 * `at`: typeAt(text), when the caller has it.
 */
export function readStartedCommand(text: string, at = typeAt(text)): StartedCommandLine | null {
  if (at === -1 || !text.startsWith('"type":"item.started","item":{"id":"', at)) return null;
  const m = STARTED_COMMAND.exec(text);
  if (!m) return null;
  return { ts: m[1] === undefined ? undefined : decode(m[1]), id: decode(m[2]!), command: decode(m[3]!) };
}

export interface ReasoningLine {
  ts: string | undefined;
  event: 'item.started' | 'item.updated' | 'item.completed';
}

/** `{"_ts":..,"type":"item.completed","item":{"id":..,"type":"reasoning","text":..}}`; `at` as for readStartedCommand. */
export function readReasoning(text: string, at = typeAt(text)): ReasoningLine | null {
  if (at === -1 || !text.startsWith('"type":"item.', at)) return null;
  const m = REASONING.exec(text);
  if (!m) return null;
  return { ts: m[1] === undefined ? undefined : decode(m[1]), event: m[2] as ReasoningLine['event'] };
}
