import { readFileSync } from 'node:fs';
import type { z } from 'zod';

/**
 * Tool schemas as MCP lists them, converted to JSON Schema once per process instead of on every
 * `tools/list` (and every HTTP request's fresh server), and read from `dist/tool-schemas.json`
 * when the build wrote one, so a cold start does not convert 68 schemas before its first answer.
 *
 * The SDK asks a Standard Schema for its JSON Schema through `~standard.jsonSchema`; the wrapper
 * answers from the cache and validates with the tool's own zod schema, so what clients see and
 * what is enforced stay the same as with the bare zod schema.
 */

export type SchemaIo = 'input' | 'output';

/** The JSON Schema draft the MCP SDK asks for. */
export const LISTED_SCHEMA_TARGET = 'draft-2020-12';

/** The build's file: `{ target, tools: { <tool name>: { input, output } } }`. */
export const PREBUILT_SCHEMAS_FILE = new URL('../../tool-schemas.json', import.meta.url);

type Json = Record<string, unknown>;
type Prebuilt = Record<string, Partial<Record<SchemaIo, Json>>>;

let prebuilt: Prebuilt | null | undefined;

function readPrebuilt(): Prebuilt | null {
  if (prebuilt !== undefined) return prebuilt;
  try {
    const file = JSON.parse(readFileSync(PREBUILT_SCHEMAS_FILE, 'utf8')) as { target?: string; tools?: Prebuilt };
    prebuilt = file.target === LISTED_SCHEMA_TARGET && file.tools && typeof file.tools === 'object' ? file.tools : null;
  } catch {
    prebuilt = null; // no build output (tests on sources, a bare tsc): convert on first use
  }
  return prebuilt;
}

/** Tests point the cache at another file's contents (or at none with `null`). */
export function setPrebuiltSchemas(tools: Prebuilt | null | undefined): void {
  prebuilt = tools;
  converted = new WeakMap();
}

/** What zod itself answers, the same call the SDK makes on a bare zod schema. */
export function convertSchema(schema: z.ZodType, io: SchemaIo): Json {
  const std = schema['~standard'] as unknown as { jsonSchema: Record<SchemaIo, (o: { target: string }) => Json> };
  return std.jsonSchema[io]({ target: LISTED_SCHEMA_TARGET });
}

/**
 * A prebuilt entry is used only when its top-level properties are exactly the schema's fields, so
 * a build file left over from other sources is ignored rather than listed.
 */
function matches(schema: z.ZodType, json: Json | undefined): json is Json {
  if (!json || typeof json !== 'object') return false;
  const shape = (schema as unknown as { shape?: Record<string, unknown> }).shape;
  const props = json.properties as Record<string, unknown> | undefined;
  if (!shape || !props || typeof props !== 'object') return false;
  const a = Object.keys(shape).sort();
  const b = Object.keys(props).sort();
  return a.length === b.length && a.every((k, i) => k === b[i]);
}

let converted = new WeakMap<z.ZodType, Partial<Record<SchemaIo, string>>>();

/** The JSON Schema text for one tool schema, from the build file or converted once. */
export function listedJsonText(name: string, schema: z.ZodType, io: SchemaIo): string {
  let entry = converted.get(schema);
  if (!entry) converted.set(schema, (entry = {}));
  let text = entry[io];
  if (text === undefined) {
    const built = readPrebuilt()?.[name]?.[io];
    text = JSON.stringify(matches(schema, built) ? built : convertSchema(schema, io));
    entry[io] = text;
  }
  return text;
}

/** The schema handed to `registerTool`: zod validates, the cache answers JSON Schema requests. */
export function listedSchema(name: string, schema: z.ZodType, io: SchemaIo): z.ZodType {
  const std = schema['~standard'];
  const json = (asked: SchemaIo) => (opts?: { target?: string }) =>
    // A fresh copy each time: the SDK may decorate what it gets, and the cache must not change.
    asked !== io || (opts?.target && opts.target !== LISTED_SCHEMA_TARGET)
      ? (std as unknown as { jsonSchema: Record<SchemaIo, (o: unknown) => Json> }).jsonSchema[asked](opts)
      : (JSON.parse(listedJsonText(name, schema, asked)) as Json);
  const wrapper = {
    '~standard': {
      version: std.version,
      vendor: std.vendor,
      validate: (value: unknown) => std.validate(value),
      jsonSchema: { input: json('input'), output: json('output') },
    },
  };
  // The SDK only reads `~standard`; typed as the zod schema for registerTool's generics.
  return wrapper as unknown as z.ZodType;
}
