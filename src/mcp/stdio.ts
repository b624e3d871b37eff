#!/usr/bin/env node
// The `agentpr-mcp` bin: MCP over stdio.
import { UsageError } from '../core/errors.js';
import { withHint } from '../core/system-errors.js';
import { parseStdioArgs, serveStdio } from './serve-stdio.js';
import { loadEnvironment } from '../env-file.js';

try {
  // stdout belongs to the protocol: the .env and deprecation notes go to stderr.
  for (const w of loadEnvironment().warnings) process.stderr.write(`${w}\n`);
  const invocation = parseStdioArgs(process.argv.slice(2));
  if (invocation.kind === 'print') process.stdout.write(invocation.text);
  else await serveStdio(invocation.opts);
} catch (err) {
  process.stderr.write(`agentpr-mcp: ${withHint(err)}\n`);
  process.exit(err instanceof UsageError ? 2 : 1);
}
