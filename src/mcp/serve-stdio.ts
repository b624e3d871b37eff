import { createApp, type App } from '../app.js';
import { createMcpServer } from './server.js';
import { LineStdioTransport } from './stdio-transport.js';

export interface StdioOptions {
  home?: string;
  db?: string;
  policyFile?: string;
  readOnly?: boolean;
}

/** Serves MCP on stdin/stdout until stdin closes or a signal arrives. stdout carries only protocol. */
export async function serveStdio(opts: StdioOptions = {}, existing?: App): Promise<void> {
  // A server start closes attempts a dead process left running (the CLI's serve already did).
  const app = existing ?? createApp({ home: opts.home, db: opts.db, policyFile: opts.policyFile, reconcile: true });
  const server = createMcpServer(app, { readOnly: opts.readOnly, notifyChanges: true });
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
  app.logger.info({ db: app.config.dbPath, readOnly: Boolean(opts.readOnly) }, 'agentpr-mcp serving on stdio');
}

export function parseStdioArgs(argv: string[]): StdioOptions {
  const opts: StdioOptions = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const next = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--read-only') opts.readOnly = true;
    else if (a === '--db') opts.db = next();
    else if (a === '--home') opts.home = next();
    else if (a === '--policy-file') opts.policyFile = next();
    else if (a === '--help' || a === '-h') {
      process.stderr.write('usage: agentpr-mcp [--read-only] [--db FILE] [--home DIR] [--policy-file FILE]\nServes MCP over stdio. See `agentpr --help` for the CLI.\n');
      process.exit(0);
    } else throw new Error(`unknown option ${a}; allowed: --read-only, --db FILE, --home DIR, --policy-file FILE`);
  }
  return opts;
}

