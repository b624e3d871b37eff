#!/usr/bin/env node
// The `agentpr-mcp` bin: MCP over stdio.
import { errorMessage } from '../core/errors.js';
import { parseStdioArgs, serveStdio } from './serve-stdio.js';
import { loadEnvironment } from '../env-file.js';

try {
  // stdout belongs to the protocol: the .env and deprecation notes go to stderr.
  for (const w of loadEnvironment().warnings) process.stderr.write(`${w}\n`);
  await serveStdio(parseStdioArgs(process.argv.slice(2)));
} catch (err) {
  process.stderr.write(`agentpr-mcp: ${errorMessage(err)}\n`);
  process.exit(1);
}
