import type { CliCommand } from './types.js';
import { DEMO_USAGE, parseDemoArgs, runDemo } from '../demo/run.js';

/**
 * `agentpr demo`: the offline end-to-end demo (src/demo/run.ts). The global --home applies;
 * the demo never opens the CLI's own app, it starts the MCP server itself.
 */
export const demoCommand: CliCommand = {
  name: 'demo',
  summary: 'one whole run end to end, offline, through the real MCP server (docs/demo.md)',
  usage: DEMO_USAGE,
  async run(argv, { globals }) {
    const args = parseDemoArgs(argv);
    return await runDemo({ worker: args.worker, home: args.home ?? globals.home });
  },
};
