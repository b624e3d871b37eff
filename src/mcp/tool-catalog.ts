import type { StandardSchemaWithJSON } from '@modelcontextprotocol/server';
import type { ToolListing } from '../registry.js';
import { LISTED_SCHEMA_TARGET, type SchemaIo } from './listed-schema.js';

/**
 * The build's catalog of tools (`dist/tool-schemas.json`, written by `npm run build`): every tool's
 * input and output JSON Schema as MCP lists them, and its name, title, description, tier and
 * annotations in the registry's order. The bundled `agentpr-mcp` carries a copy made in the same
 * build as its code (scripts/bundle.mjs), so it answers `tools/list` from it and imports the tools
 * themselves on the first `tools/call`.
 */
export interface ToolCatalog {
  target: string;
  tools: Record<string, Partial<Record<SchemaIo, Record<string, unknown>>>>;
  listing?: Array<Omit<ToolListing, 'listedJson'>>;
}

/** Replaced by the catalog's JSON text when the build bundles agentpr-mcp; absent everywhere else. */
declare const AGENTPR_TOOL_CATALOG: string | undefined;

let catalog: readonly ToolListing[] | null | undefined;

/**
 * The tool listing the bundle was built with, or null (running from sources or the unbundled
 * build, or a catalog that lacks a listing or a schema: then the tools are imported up front).
 */
export function builtToolListing(): readonly ToolListing[] | null {
  if (catalog === undefined) catalog = typeof AGENTPR_TOOL_CATALOG === 'string' ? listingOf(JSON.parse(AGENTPR_TOOL_CATALOG) as ToolCatalog) : null;
  return catalog;
}

/** Tests run the deferred path from sources with a catalog of their own (null: none; undefined: the built one). */
export function setBuiltToolCatalog(c: ToolCatalog | null | undefined): void {
  catalog = c === undefined ? undefined : c === null ? null : listingOf(c);
}

/** The catalog as a registry listing; null when it is not complete. */
export function listingOf(c: ToolCatalog): ToolListing[] | null {
  if (c.target !== LISTED_SCHEMA_TARGET || !Array.isArray(c.listing) || !c.tools) return null;
  const out: ToolListing[] = [];
  for (const l of c.listing) {
    const input = c.tools[l.name]?.input;
    const output = c.tools[l.name]?.output;
    if (!input || !output) return null;
    out.push({ name: l.name, title: l.title, description: l.description, tier: l.tier, annotations: l.annotations, listedJson: { input, output } });
  }
  return out;
}

/**
 * A Standard Schema for registerTool built from listed JSON Schema: the SDK lists `json`; values
 * are checked by `validate` (the loaded tool's zod schema, or a pass-through where the registry
 * validates).
 */
export function jsonListedSchema(
  json: Record<string, unknown>,
  io: SchemaIo,
  validate: (value: unknown) => ReturnType<StandardSchemaWithJSON<Record<string, unknown>>['~standard']['validate']>,
): StandardSchemaWithJSON<Record<string, unknown>> {
  const text = JSON.stringify(json);
  const answer = (asked: SchemaIo) => (opts?: { target?: string }) => {
    if (asked !== io || (opts?.target && opts.target !== LISTED_SCHEMA_TARGET)) {
      throw new Error(`only the ${io} JSON Schema (${LISTED_SCHEMA_TARGET}) of this tool is built`);
    }
    // A fresh copy each time: the SDK may decorate what it gets.
    return JSON.parse(text) as Record<string, unknown>;
  };
  return {
    '~standard': {
      version: 1,
      vendor: 'agentpr',
      validate,
      jsonSchema: { input: answer('input'), output: answer('output') },
    },
  };
}
