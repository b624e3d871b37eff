import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import * as util from 'node:util';

/**
 * Variable names of the Python agentpr, accepted with a one-line deprecation warning: the value
 * moves to the current name unless that one is set already. `keyFrom`: the old variable named
 * the variable that holds the key, not the key itself.
 */
export const LEGACY_ENV: ReadonlyArray<{ old: string; now: string; keyFrom?: true }> = [
  { old: 'AGENTPR_BASE_DIR', now: 'AGENTPR_WORKSPACE_ROOT' },
  { old: 'AGENTPR_MANAGER_API_BASE', now: 'AGENTPR_MANAGER_BASE_URL' },
  { old: 'AGENTPR_TELEGRAM_NL_MODEL', now: 'AGENTPR_TELEGRAM_LLM_MODEL' },
  { old: 'AGENTPR_TELEGRAM_NL_API_BASE', now: 'AGENTPR_TELEGRAM_LLM_BASE_URL' },
  { old: 'AGENTPR_TELEGRAM_NL_API_KEY_ENV', now: 'AGENTPR_TELEGRAM_LLM_API_KEY', keyFrom: true },
  { old: 'AGENTPR_TELEGRAM_NL_TIMEOUT_SEC', now: 'AGENTPR_TELEGRAM_LLM_TIMEOUT_SEC' },
];

export interface LoadedEnvironment {
  /** The .env file read, if there was one. */
  file?: string;
  /** Keys the file set (those not already in the environment). */
  loaded: string[];
  warnings: string[];
}

/** The data home as the CLI resolves it: --home, else AGENTPR_HOME, else ~/.agentpr. */
export function dataHome(home: string | undefined, env: NodeJS.ProcessEnv): string {
  return resolve(home ?? env.AGENTPR_HOME ?? join(homedir(), '.agentpr'));
}

/**
 * Reads `<data home>/.env` into `env` without overriding anything already set (the real
 * environment always wins), then maps the old variable names. Each warning is one line for stderr.
 */
export function loadEnvironment(opts: { home?: string; env?: NodeJS.ProcessEnv } = {}): LoadedEnvironment {
  const env = opts.env ?? process.env;
  const out: LoadedEnvironment = { loaded: [], warnings: [] };
  const file = join(dataHome(opts.home, env), '.env');
  if (existsSync(file)) {
    out.file = file;
    const parseEnv = (util as { parseEnv?: (content: string) => Record<string, string> }).parseEnv;
    if (!parseEnv) {
      out.warnings.push(`agentpr: ${file} was not read: reading .env files needs Node.js 20.12 or later (this is ${process.version})`);
    } else {
      let parsed: Record<string, string> = {};
      try {
        parsed = parseEnv(readFileSync(file, 'utf8'));
      } catch (err) {
        out.warnings.push(`agentpr: ${file} was not read: ${(err as Error).message}`);
      }
      for (const [k, v] of Object.entries(parsed)) {
        if (env[k] !== undefined) continue;
        env[k] = v;
        out.loaded.push(k);
      }
    }
  }
  for (const { old, now, keyFrom } of LEGACY_ENV) {
    const value = env[old];
    if (value === undefined || value === '') continue;
    if (env[now] !== undefined && env[now] !== '') {
      out.warnings.push(`agentpr: ${old} is deprecated and ignored because ${now} is set; remove ${old}`);
      continue;
    }
    if (keyFrom) {
      const key = env[value];
      if (!key) {
        out.warnings.push(`agentpr: ${old} is deprecated; it names ${value}, which is not set; set ${now} instead`);
        continue;
      }
      env[now] = key;
      out.warnings.push(`agentpr: ${old} is deprecated; the key in ${value} is used as ${now}; set ${now} instead`);
      continue;
    }
    env[now] = value;
    out.warnings.push(`agentpr: ${old} is deprecated; its value is used as ${now}; rename it`);
  }
  return out;
}
