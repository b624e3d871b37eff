import { z } from 'zod';
import { createApp, type App } from './app.js';
import { UsageError, errorMessage } from './core/errors.js';
import { Registry, effectiveInput, type AnyTool } from './registry.js';
import { schemaVersion } from './store/db.js';
import { TOOLS } from '../tools/index.js';
import { COMMANDS } from './commands/index.js';
import type { CliCommand, GlobalOptions } from './commands/types.js';
import { VERSION } from './version.js';
import { serveStdio } from './mcp/serve-stdio.js';
import { startHttpServer } from './mcp/http.js';
import { loadEnvironment } from './env-file.js';

export interface CliIO {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}

const defaultIO: CliIO = {
  stdout: (t) => process.stdout.write(t),
  stderr: (t) => process.stderr.write(t),
};

export { UsageError };

type FieldKind = 'string' | 'number' | 'boolean' | 'json' | 'array' | 'union';

interface FieldInfo {
  name: string;
  flag: string;
  kind: FieldKind;
  /** Element kind for arrays. */
  element?: FieldKind;
  required: boolean;
  description: string;
  choices?: string[];
}

/** The zod 4 definition type, unwrapping optional/default/nullable. */
function unwrap(schema: z.ZodType): { base: z.ZodType; optional: boolean } {
  let s = schema;
  let optional = false;
  for (;;) {
    const def = s.def as { type: string; innerType?: z.ZodType; in?: z.ZodType };
    if (def.type === 'optional' || def.type === 'default' || def.type === 'prefault') optional = true;
    if ((def.type === 'optional' || def.type === 'default' || def.type === 'nullable' || def.type === 'prefault' || def.type === 'readonly') && def.innerType) {
      s = def.innerType;
      continue;
    }
    if (def.type === 'pipe' && def.in) {
      s = def.in;
      continue;
    }
    return { base: s, optional };
  }
}

function kindOf(schema: z.ZodType): { kind: FieldKind; element?: FieldKind; choices?: string[] } {
  const def = schema.def as { type: string; element?: z.ZodType; entries?: Record<string, string> };
  switch (def.type) {
    case 'string':
      return { kind: 'string' };
    case 'number':
    case 'int':
      return { kind: 'number' };
    case 'boolean':
      return { kind: 'boolean' };
    case 'enum':
      return { kind: 'string', choices: Object.values(def.entries ?? {}) };
    case 'literal':
      return { kind: 'string' };
    case 'array': {
      const el = def.element ? kindOf(unwrap(def.element).base) : { kind: 'string' as FieldKind };
      return { kind: 'array', element: el.kind, choices: el.choices };
    }
    case 'union':
      return { kind: 'union' };
    default:
      return { kind: 'json' };
  }
}

export function toolFields(tool: AnyTool): FieldInfo[] {
  const shape = effectiveInput(tool).shape as Record<string, z.ZodType>;
  return Object.entries(shape).map(([name, schema]) => {
    const { base, optional } = unwrap(schema);
    const k = kindOf(base);
    return {
      name,
      flag: `--${name.replace(/_/g, '-')}`,
      kind: k.kind,
      element: k.element,
      choices: k.choices,
      required: !optional,
      description: schema.description ?? base.description ?? '',
    };
  });
}

function convert(kind: FieldKind, raw: string, flag: string): unknown {
  switch (kind) {
    case 'number': {
      const n = Number(raw);
      if (raw.trim() === '' || !Number.isFinite(n)) throw new UsageError(`${flag} expects a number, got '${raw}'`);
      return n;
    }
    case 'boolean':
      if (['true', '1', 'yes'].includes(raw)) return true;
      if (['false', '0', 'no'].includes(raw)) return false;
      throw new UsageError(`${flag} expects true or false, got '${raw}'`);
    case 'json':
      try {
        return JSON.parse(raw) as unknown;
      } catch {
        throw new UsageError(`${flag} expects JSON, e.g. ${flag} '{"key":"value"}'; got '${raw}'`);
      }
    case 'union':
      if (/^[[{"]/.test(raw.trim())) {
        try {
          return JSON.parse(raw) as unknown;
        } catch {
          return raw;
        }
      }
      return raw;
    default:
      return raw;
  }
}

/** Turns `--flag value` arguments into the tool's input object, using the input schema for types. */
export function parseToolArgs(tool: AnyTool, argv: string[]): Record<string, unknown> {
  const fields = toolFields(tool);
  const byFlag = new Map<string, FieldInfo>();
  for (const f of fields) {
    byFlag.set(f.flag, f);
    byFlag.set(`--${f.name}`, f);
  }
  const positional = [...(tool.cli?.positional ?? [])];
  const out: Record<string, unknown> = {};
  const multi: Record<string, unknown[]> = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--')) {
      const name = positional.shift();
      if (!name) throw new UsageError(`unexpected argument '${arg}'; ${tool.name} takes flags (see agentpr ${tool.name} --help)`);
      const f = fields.find((x) => x.name === name)!;
      out[name] = convert(f.kind === 'array' ? f.element ?? 'string' : f.kind, arg, name);
      continue;
    }
    const eq = arg.indexOf('=');
    let flag = eq > 0 ? arg.slice(0, eq) : arg;
    let inline = eq > 0 ? arg.slice(eq + 1) : undefined;
    let negated = false;
    if (!byFlag.has(flag) && flag.startsWith('--no-') && byFlag.get(`--${flag.slice(5)}`)?.kind === 'boolean') {
      negated = true;
      flag = `--${flag.slice(5)}`;
    }
    const f = byFlag.get(flag);
    if (!f) {
      throw new UsageError(`unknown option ${flag} for ${tool.name}; allowed: ${fields.map((x) => x.flag).join(', ')}`);
    }
    if (f.kind === 'boolean') {
      out[f.name] = negated ? false : inline === undefined ? true : convert('boolean', inline, flag);
      continue;
    }
    if (inline === undefined) {
      inline = argv[++i];
      if (inline === undefined) throw new UsageError(`${flag} needs a value`);
    }
    if (f.kind === 'array' || f.kind === 'union') {
      (multi[f.name] ??= []).push(convert(f.kind === 'array' ? f.element ?? 'string' : 'union', inline, flag));
    } else {
      out[f.name] = convert(f.kind, inline, flag);
    }
  }
  for (const [name, values] of Object.entries(multi)) {
    const f = fields.find((x) => x.name === name)!;
    out[name] = f.kind === 'union' && values.length === 1 ? values[0] : values;
  }
  return out;
}

function toolHelp(tool: AnyTool): string {
  const fields = toolFields(tool).filter((f) => f.name !== 'skip_doctor');
  const pos = tool.cli?.positional ?? [];
  const lines = [
    `agentpr ${tool.name}${pos.map((p) => ` [${p.toUpperCase()}]`).join('')} [options]   (${tool.tier} tier)`,
    '',
    `${tool.title}: ${tool.description}`,
    '',
    'Options:',
    ...fields.map((f) => {
      const type = f.kind === 'array' ? `${f.element ?? 'value'}... (repeatable)` : f.kind === 'json' ? 'JSON' : f.kind === 'union' ? 'value (repeatable)' : f.kind;
      const choices = f.choices ? ` one of: ${f.choices.join(', ')}.` : '';
      return `  ${`${f.flag}${f.kind === 'boolean' ? '' : ` <${type}>`}`.padEnd(34)} ${f.required ? '(required) ' : ''}${f.description}${choices}`;
    }),
    `  ${'--json'.padEnd(34)} print the structured result as JSON`,
    ...(tool.tier !== 'read' ? [`  ${'--skip-doctor'.padEnd(34)} skip the automatic startup doctor check`] : []),
  ];
  return `${lines.join('\n')}\n`;
}

function mainHelp(registry: Registry): string {
  const byTier = (tier: string) =>
    registry.tools.filter((t) => t.tier === tier).map((t) => `  ${t.name.padEnd(28)} ${t.title}`);
  return [
    `agentpr ${VERSION}: orchestrate AI coding agent runs against GitHub repositories.`,
    '',
    'Usage: agentpr [global options] <command> [options]',
    '',
    'Global options:',
    '  --db FILE             database file (default $AGENTPR_HOME/agentpr.db)',
    '  --home DIR            data home (default $AGENTPR_HOME or ~/.agentpr)',
    '  --policy-file FILE    manager policy JSON (default $AGENTPR_POLICY_FILE or policies/manager_policy.json)',
    '  --skip-doctor         skip the automatic startup doctor check before write/admin tools',
    '  --json                print structured results as JSON',
    '  --version, --help',
    '',
    'Read tools:',
    ...byTier('read'),
    '',
    'Write tools:',
    ...byTier('write'),
    '',
    'Admin tools:',
    ...byTier('admin'),
    '',
    'Other commands:',
    `  ${'init-db'.padEnd(28)} create the data home and database, apply migrations`,
    `  ${'serve'.padEnd(28)} MCP server: stdio (default) or --http [--host 127.0.0.1] [--port 8765] [--read-only]`,
    ...COMMANDS.map((c) => `  ${c.name.padEnd(28)} ${c.summary}`),
    '',
    'Run `agentpr <command> --help` for its options.',
    '',
  ].join('\n');
}

function extractGlobals(argv: string[]): { globals: GlobalOptions; rest: string[]; json: boolean } {
  const globals: GlobalOptions = {};
  const rest: string[] = [];
  let json = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const [flag, inline] = a.includes('=') && a.startsWith('--') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    const value = () => {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new UsageError(`${flag} needs a value`);
      return v;
    };
    if (flag === '--db') globals.db = value();
    else if (flag === '--home') globals.home = value();
    else if (flag === '--policy-file') globals.policyFile = value();
    else if (flag === '--skip-doctor') globals.skipDoctor = true;
    else if (flag === '--json') json = true;
    else if (flag === '--markdown') json = false;
    else rest.push(a);
  }
  return { globals, rest, json };
}

async function serveCommand(argv: string[], globals: GlobalOptions, openApp: () => App, io: CliIO): Promise<number> {
  let http = false;
  let host: string | undefined;
  let port: number | undefined;
  let readOnly = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--http') http = true;
    else if (a === '--read-only') readOnly = true;
    else if (a === '--host') host = argv[++i];
    else if (a === '--port') {
      port = Number(argv[++i]);
      if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`--port expects a port number 0-65535, got '${argv[i]}'`);
    } else if (a === '--help') {
      io.stdout('usage: agentpr serve [--http [--host 127.0.0.1] [--port 8765]] [--read-only]\n');
      return 0;
    } else throw new UsageError(`unknown option ${a} for serve; allowed: --http, --host, --port, --read-only`);
  }
  const app = openApp();
  if (!http) {
    await serveStdio({ readOnly }, app);
    return await new Promise<number>(() => undefined); // runs until stdin closes (serveStdio exits)
  }
  const running = await startHttpServer({ app, host, port, readOnly });
  io.stderr(`agentpr: MCP Streamable HTTP on ${running.url}${readOnly ? ' (read-only)' : ''}\n`);
  return await new Promise<number>((resolve) => {
    const stop = () => {
      void running.close().then(async () => {
        await app.close();
        resolve(0);
      });
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}

/** The CLI: one command per registry tool, plus init-db, serve and the long-running services. */
export async function main(argv: string[], io: CliIO = defaultIO): Promise<number> {
  const registry = new Registry(TOOLS);
  let app: App | undefined;
  try {
    const { globals, rest, json } = extractGlobals(argv);
    if (io === defaultIO) for (const w of loadEnvironment({ home: globals.home }).warnings) io.stderr(`${w}\n`);
    const openApp = () => (app ??= createApp({ home: globals.home, db: globals.db, policyFile: globals.policyFile }));
    const [command, ...args] = rest;
    if (!command || command === '--help' || command === '-h' || command === 'help') {
      io.stdout(mainHelp(registry));
      return command ? 0 : 2;
    }
    if (command === '--version' || command === '-v') {
      io.stdout(`${VERSION}\n`);
      return 0;
    }
    if (command === 'init-db') {
      const a = openApp();
      io.stdout(`database ready: ${a.config.dbPath} (schema version ${schemaVersion(a.db)}); data home ${a.config.home}\n`);
      return 0;
    }
    if (command === 'serve') return await serveCommand(args, globals, openApp, io);
    const extra: CliCommand | undefined = COMMANDS.find((c) => c.name === command);
    if (extra) {
      if (args.includes('--help')) {
        io.stdout(`${extra.usage}\n`);
        return 0;
      }
      return await extra.run(args, { globals, openApp });
    }
    const tool = registry.get(command);
    if (!tool) {
      throw new UsageError(`unknown command '${command}'; run agentpr --help for the list`);
    }
    if (args.includes('--help') || args.includes('-h')) {
      io.stdout(toolHelp(tool));
      return 0;
    }
    const input = parseToolArgs(tool, args);
    const outcome = await registry.call(command, input, {
      app: openApp(),
      entry: 'cli',
      actor: `cli:${process.env.USER ?? process.env.LOGNAME ?? 'unknown'}`,
      skipDoctor: globals.skipDoctor,
    });
    if (!outcome.ok) {
      io.stderr(`agentpr ${command}: ${outcome.error}\n`);
      return 1;
    }
    io.stdout(json ? `${JSON.stringify(outcome.data, null, 2)}\n` : `${outcome.text}\n`);
    return tool.cli?.exitCode?.(outcome.data) ?? 0;
  } catch (err) {
    io.stderr(`agentpr: ${errorMessage(err)}\n`);
    return err instanceof UsageError ? 2 : 1;
  } finally {
    if (app) await app.close();
  }
}
