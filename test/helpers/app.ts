import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { createApp, type App } from '../../src/app.js';

/** A real App on a fresh data home in a temp dir; logs are silent unless AGENTPR_TEST_LOGS is set. */
export function makeTestApp(opts: { home?: string; env?: NodeJS.ProcessEnv } = {}): { app: App; home: string; cleanup: () => Promise<void> } {
  const home = opts.home ?? mkdtempSync(join(tmpdir(), 'agentpr-test-'));
  const logger = pino({ level: process.env.AGENTPR_TEST_LOGS ? 'debug' : 'silent' });
  const app = createApp({ home, logger, env: { ...process.env, AGENTPR_POLICY_FILE: '', ...opts.env } });
  return {
    app,
    home,
    cleanup: async () => {
      await app.close();
      rmSync(home, { recursive: true, force: true });
    },
  };
}

export function tempDir(prefix = 'agentpr-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}
