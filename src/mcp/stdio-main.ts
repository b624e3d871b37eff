// The `agentpr-mcp` bin's body: parse the flags, then print (--version, --help) or serve MCP on
// stdio. The bin (stdio.ts, or the bundle's loader the build puts in its place) calls this.
import './stdio-zod.js';
import { UsageError } from '../core/errors.js';
import { withHint } from '../core/system-errors.js';
import { parseStdioArgs, serveStdio } from './serve-stdio.js';
import { loadEnvironment } from '../env-file.js';

export async function runStdioBin(argv: string[]): Promise<void> {
  try {
    // stdout belongs to the protocol: the .env and deprecation notes go to stderr.
    for (const w of loadEnvironment().warnings) process.stderr.write(`${w}\n`);
    const invocation = parseStdioArgs(argv);
    if (invocation.kind === 'print') process.stdout.write(invocation.text);
    else await serveStdio(invocation.opts);
  } catch (err) {
    process.stderr.write(`agentpr-mcp: ${withHint(err)}\n`);
    process.exit(err instanceof UsageError ? 2 : 1);
  }
}
