#!/usr/bin/env node
// The `agentpr-mcp` bin: MCP over stdio.
import { errorMessage } from '../core/errors.js';
import { parseStdioArgs, serveStdio } from './serve-stdio.js';

try {
  await serveStdio(parseStdioArgs(process.argv.slice(2)));
} catch (err) {
  process.stderr.write(`agentpr-mcp: ${errorMessage(err)}\n`);
  process.exit(1);
}
