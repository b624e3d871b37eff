#!/usr/bin/env node
// `npm run demo` (node dist/src/demo/main.js [--worker replay|codex] [--home DIR]): see src/demo/run.ts.
import { UsageError, errorMessage } from '../core/errors.js';
import { DEMO_USAGE, parseDemoArgs, runDemo } from './run.js';

let code: number;
try {
  const args = parseDemoArgs(process.argv.slice(2));
  if (args.help) {
    process.stdout.write(`${DEMO_USAGE}\n`);
    code = 0;
  } else {
    code = await runDemo({ worker: args.worker, home: args.home });
  }
} catch (err) {
  process.stderr.write(`agentpr demo: ${errorMessage(err)}\n${err instanceof UsageError ? `${DEMO_USAGE}\n` : ''}`);
  code = err instanceof UsageError ? 2 : 1;
}
process.exitCode = code;
