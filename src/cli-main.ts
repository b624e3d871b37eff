import { reconcileAtStart } from './worker/reconcile.js';
import { z } from 'zod';
import { createApp, type App } from './app.js';
import { UsageError } from './core/errors.js';
import { withHint } from './core/system-errors.js';
import { createLogger } from './logger.js';
import { Registry, effectiveInput, type AnyTool } from './registry.js';
import { schemaVersion } from './store/db.js';
import { TOOLS } from '../tools/index.js';
import { COMMANDS } from './commands/index.js';
import type { CliCommand, GlobalOptions } from './commands/types.js';
import { VERSION } from './version.js';
import { serveStdio } from './mcp/serve-stdio.js';
import { startHttpServer } from './mcp/http.js';
import { TOOLSETS, parseToolsets, serverExposure, type Toolset } from './mcp/toolsets.js';
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
  /** The schema accepts null: the word `null` on the command line means null. */
  nullable?: boolean;
  description: string;
  choices?: string[];
}

/** The zod 4 definition type, unwrapping optional/default/nullable. */
function unwrap(schema: z.ZodType): { base: z.ZodType; optional: boolean; nullable: boolean } {
  let s = schema;
  let optional = false;
  let nullable = false;
  for (;;) {
    const def = s.def as { type: string; innerType?: z.ZodType; in?: z.ZodType };
    if (def.type === 'optional' || def.type === 'default' || def.type === 'prefault') optional = true;
    if (def.type === 'nullable') nullable = true;
    if ((def.type === 'optional' || def.type === 'default' || def.type === 'nullable' || def.type === 'prefault' || def.type === 'readonly') && def.innerType) {
      s = def.innerType;
      continue;
    }
    if (def.type === 'pipe' && def.in) {
      s = def.in;
      continue;
    }
    return { base: s, optional, nullable };
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
    const { base, optional, nullable } = unwrap(schema);
    const k = kindOf(base);
    return {
      name,
      flag: `--${name.replace(/_/g, '-')}`,
      kind: k.kind,
      element: k.element,
      choices: k.choices,
      required: !optional,
      nullable,
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
      out[f.name] = f.nullable && inline === 'null' ? null : convert(f.kind, inline, flag);
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
    '  --verbose             also print log lines (pino JSON) on stderr; AGENTPR_LOG_LEVEL sets the level',
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
    `  ${'serve'.padEnd(28)} MCP server: stdio (default) or --http [--host 127.0.0.1] [--port 8765] [--no-auth] [--read-only] [--toolsets LIST]`,
    ...COMMANDS.map((c) => `  ${c.name.padEnd(28)} ${c.summary}`),
    '',
    'Run `agentpr <command> --help` for its options.',
    '',
  ].join('\n');
}

function extractGlobals(argv: string[]): { globals: GlobalOptions; rest: string[]; json: boolean; verbose: boolean } {
  const globals: GlobalOptions = {};
  const rest: string[] = [];
  let json = false;
  let verbose = false;
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
    else if (flag === '--verbose') verbose = true;
    else rest.push(a);
  }
  return { globals, rest, json, verbose };
}

async function serveCommand(argv: string[], globals: GlobalOptions, openApp: () => App, io: CliIO): Promise<number> {
  let http = false;
  let host: string | undefined;
  let port: number | undefined;
  let readOnly: boolean | undefined;
  let toolsets: Toolset[] | undefined;
  let noAuth = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = (example: string) => {
      const v = argv[++i];
      if (v === undefined || v.startsWith('--')) throw new UsageError(`${a} needs a value, e.g. ${a} ${example}`);
      return v;
    };
    if (a === '--http') http = true;
    else if (a === '--no-auth') noAuth = true;
    else if (a === '--read-only') readOnly = true;
    else if (a === '--host') host = value('127.0.0.1');
    else if (a === '--toolsets') toolsets = parseToolsets(value('core,github'), '--toolsets');
    else if (a === '--port') {
      const raw = value('8765');
      port = Number(raw);
      if (!/^\d+$/.test(raw) || port > 65535) throw new UsageError(`--port expects a port number 0-65535, got '${raw}'`);
    } else if (a === '--help' || a === '-h') {
      io.stdout(SERVE_USAGE);
      return 0;
    } else throw new UsageError(`unknown option ${a} for serve; allowed: --http, --host, --port, --no-auth, --read-only, --toolsets`);
  }
  const exposure = serverExposure({ readOnly, toolsets });
  const app = openApp();
  reconcileAtStart(app);
  if (!http) {
    await serveStdio(exposure, app);
    return await new Promise<number>(() => undefined); // runs until stdin closes (serveStdio exits)
  }
  const running = await startHttpServer({ app, host, port, ...exposure, noAuth, stderr: io.stderr });
  const auth = running.auth === 'none' ? ' WITHOUT a token (--no-auth)' : running.tokenFile ? ` (token in ${running.tokenFile})` : ' (token from AGENTPR_MCP_TOKEN)';
  io.stderr(`agentpr: MCP Streamable HTTP on ${running.url}${exposure.readOnly ? ' (read-only)' : ''}${exposure.toolsets ? ` (toolsets ${exposure.toolsets.join(',')})` : ''}${auth} — run board at ${new URL('/', running.url).href}\n`);
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

const SERVE_USAGE = `usage: agentpr serve [--http [--host 127.0.0.1] [--port 8765] [--no-auth]] [--read-only] [--toolsets LIST]
MCP server: stdio by default, Streamable HTTP at /mcp with --http.
  --http also serves the run board at / (same token; see docs/board.md)
  --no-auth         HTTP on loopback without a token (a warning is printed)
  --read-only       expose only read tools (env AGENTPR_READ_ONLY=1)
  --toolsets LIST   expose only these toolsets, comma-separated: ${TOOLSETS.join(', ')} (env AGENTPR_TOOLSETS)
Flags override the environment.
`;

/** Is `--help`/`-h` among a command's arguments (before a `--` end of options)? */
function wantsHelp(args: string[]): boolean {
  const end = args.indexOf('--');
  return (end < 0 ? args : args.slice(0, end)).some((a) => a === '--help' || a === '-h');
}

/**
 * The log level of a CLI process: a tool call prints its result and, on failure, one line on
 * stderr, so its logs stay quiet unless --verbose or AGENTPR_LOG_LEVEL asks for them; the
 * long-running services log at info by default.
 */
function cliLogLevel(verbose: boolean, service: boolean): string {
  const env = process.env.AGENTPR_LOG_LEVEL?.trim();
  if (env) return env;
  if (verbose) return service ? 'debug' : 'info';
  return service ? 'info' : 'silent';
}

/** The CLI: one command per registry tool, plus init-db, serve and the long-running services. */
export async function main(argv: string[], io: CliIO = defaultIO): Promise<number> {
  const registry = new Registry(TOOLS);
  let app: App | undefined;
  try {
    const { globals, rest, json, verbose } = extractGlobals(argv);
    if (io === defaultIO) for (const w of loadEnvironment({ home: globals.home }).warnings) io.stderr(`${w}\n`);
    const [command, ...args] = rest;
    const service = command === 'serve' || COMMANDS.some((c) => c.name === command);
    const openApp = () =>
      (app ??= createApp({ home: globals.home, db: globals.db, policyFile: globals.policyFile, logger: createLogger({ level: cliLogLevel(verbose, service) }) }));
    if (!command || command === '--help' || command === '-h' || command === 'help') {
      if (command) {
        io.stdout(mainHelp(registry));
        return 0;
      }
      io.stderr(mainHelp(registry));
      return 2;
    }
    if (command === '--version' || command === '-v') {
      io.stdout(`${VERSION}\n`);
      return 0;
    }
    if (command === 'init-db') {
      if (wantsHelp(args)) {
        io.stdout(INIT_DB_USAGE);
        return 0;
      }
      if (args.length) throw new UsageError(`init-db takes no arguments besides the global options, got '${args[0]}'; see agentpr init-db --help`);
      const a = openApp();
      io.stdout(`database ready: ${a.config.dbPath} (schema version ${schemaVersion(a.db)}); data home ${a.config.home}\n`);
      return 0;
    }
    if (command === 'serve') return await serveCommand(args, globals, openApp, io);
    const extra: CliCommand | undefined = COMMANDS.find((c) => c.name === command);
    if (extra) {
      if (wantsHelp(args)) {
        io.stdout(`${extra.usage}\n`);
        return 0;
      }
      return await extra.run(args, { globals, openApp });
    }
    const tool = registry.get(command);
    if (!tool) {
      throw new UsageError(`unknown command '${command}'; run agentpr --help for the list`);
    }
    if (wantsHelp(args)) {
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
    // A report that says it failed (doctor, run-preflight, run-prepare, run-finish, approve-open-pr) exits 1.
    if (outcome.data.ok === false) {
      io.stderr(`agentpr ${command}: failed; the report above says what and how to fix it\n`);
      return 1;
    }
    // An alert check (webhook-audit-summary over a threshold) exits with its own status for timers and cron.
    return tool.cli?.exitCode?.(outcome.data) ?? 0;
  } catch (err) {
    io.stderr(`agentpr: ${withHint(err)}\n`);
    return err instanceof UsageError ? 2 : 1;
  } finally {
    if (app) await app.close();
  }
}

const INIT_DB_USAGE = `usage: agentpr [--home DIR] [--db FILE] init-db
Create the data home and the database (or open an existing one) and apply migrations.
Safe to run again: an up-to-date database is left as it is.
`;
