import { createApp, type App } from '../app.js';
import { createMcpServer } from './server.js';
import { LineStdioTransport } from './stdio-transport.js';
import { TOOLSETS, parseToolsets, serverExposure, type Toolset } from './toolsets.js';
import { UsageError } from '../core/errors.js';
import { VERSION } from '../version.js';

export interface StdioOptions {
  home?: string;
  db?: string;
  policyFile?: string;
  readOnly?: boolean;
  toolsets?: Toolset[];
}

/** Serves MCP on stdin/stdout until stdin closes or a signal arrives. stdout carries only protocol. */
export async function serveStdio(opts: StdioOptions = {}, existing?: App): Promise<void> {
  // A server start closes attempts a dead process left running (the CLI's serve already did).
  const app = existing ?? createApp({ home: opts.home, db: opts.db, policyFile: opts.policyFile, reconcile: true });
  const exposure = serverExposure(opts, app.env);
  const server = createMcpServer(app, { ...exposure, notifyChanges: true });
  const transport = new LineStdioTransport();
  let closing = false;
  const shutdown = async (why: string) => {
    if (closing) return;
    closing = true;
    app.logger.info({ why }, 'stdio server stopping');
    await server.close().catch(() => undefined);
    await app.close();
    app.logger.flush?.();
    process.exit(0);
  };
  transport.onerror = (err) => app.logger.warn({ err: err.message }, 'stdio transport error');
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.stdin.on('end', () => void shutdown('stdin closed'));
  await server.connect(transport);
  app.logger.info({ db: app.config.dbPath, readOnly: exposure.readOnly, toolsets: exposure.toolsets ?? 'all' }, 'agentpr-mcp serving on stdio');
}

export const STDIO_USAGE = `usage: agentpr-mcp [--read-only] [--toolsets LIST] [--db FILE] [--home DIR] [--policy-file FILE]
       agentpr-mcp --version | --help
Serves MCP over stdio (stdout carries only the protocol; logs go to stderr).
  --read-only        expose only read tools (env AGENTPR_READ_ONLY=1)
  --toolsets LIST    expose only these toolsets, comma-separated: ${TOOLSETS.join(', ')} (env AGENTPR_TOOLSETS)
  --db FILE          database file (env AGENTPR_DB; default $AGENTPR_HOME/agentpr.db)
  --home DIR         data home (env AGENTPR_HOME; default ~/.agentpr)
  --policy-file FILE manager policy JSON (env AGENTPR_POLICY_FILE)
Flags override the environment. See \`agentpr --help\` for the CLI.
`;

/** `--version` / `--help` answers, or the options to serve with. */
export type StdioInvocation = { kind: 'serve'; opts: StdioOptions } | { kind: 'print'; text: string };

export function parseStdioArgs(argv: string[]): StdioInvocation {
  const opts: StdioOptions = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const [flag, inline] = a.startsWith('--') && a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    const next = () => {
      const v = inline ?? argv[++i];
      if (v === undefined || (inline === undefined && v.startsWith('--'))) throw new UsageError(`${flag} needs a value`);
      return v;
    };
    if (flag === '--read-only') opts.readOnly = true;
    else if (flag === '--toolsets') opts.toolsets = parseToolsets(next(), '--toolsets');
    else if (flag === '--db') opts.db = next();
    else if (flag === '--home') opts.home = next();
    else if (flag === '--policy-file') opts.policyFile = next();
    else if (flag === '--help' || flag === '-h') return { kind: 'print', text: STDIO_USAGE };
    else if (flag === '--version' || flag === '-v') return { kind: 'print', text: `${VERSION}\n` };
    else throw new UsageError(`unknown option ${a}; allowed: --read-only, --toolsets LIST, --db FILE, --home DIR, --policy-file FILE, --version, --help`);
  }
  return { kind: 'serve', opts };
}
