#!/usr/bin/env node
// The `agentpr-mcp` bin: MCP over stdio. `npm run build` replaces the compiled file with a loader
// of the bundled bin (scripts/bundle.mjs), which runs the same runStdioBin.
import { runStdioBin } from './stdio-main.js';

await runStdioBin(process.argv.slice(2));
