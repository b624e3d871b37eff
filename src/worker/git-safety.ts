import { SECRET_ENV_VARS, SECRET_LIST_ENV_VARS } from '../logger.js';

/**
 * agentpr's own git runs in clones the upstream and the worker have written to. A hook in
 * .git/hooks, a core.fsmonitor command or a core.hooksPath in .git/config would run with agentpr's
 * environment. Every git agentpr starts (directly or from the forge scripts) gets hooks and the
 * fsmonitor switched off through GIT_CONFIG_* (which outranks the repository's config) and an
 * environment without agentpr's secrets, except the GitHub credential a fork or push needs.
 * The rest of .git/config (filters, textconv, pagers, remotes, includes) is the git guard's
 * (git-guard.ts): it puts back what run-prepare recorded before agentpr's git runs after a worker.
 */
export const GIT_SAFE_CONFIG: ReadonlyArray<readonly [string, string]> = [
  ['core.hooksPath', '/dev/null'],
  ['core.fsmonitor', 'false'],
  // The ext:: transport runs a command named in the URL; never for agentpr's git.
  ['protocol.ext.allow', 'never'],
];

/** What a push or a fork may use: the GitHub token gh and git credential helpers read. */
export const GIT_PUSH_CREDENTIALS = ['GH_TOKEN', 'GITHUB_TOKEN'] as const;

export function safeGitEnv(base: NodeJS.ProcessEnv, opts: { credentials?: readonly string[] } = {}): Record<string, string> {
  const keep = new Set(opts.credentials ?? []);
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(base)) {
    if (v === undefined) continue;
    if (/^GIT_CONFIG_(?:COUNT|KEY_\d+|VALUE_\d+|PARAMETERS)$/.test(k)) continue;
    env[k] = v;
  }
  for (const k of [...SECRET_ENV_VARS, ...SECRET_LIST_ENV_VARS]) if (!keep.has(k)) delete env[k];
  env.GIT_CONFIG_COUNT = String(GIT_SAFE_CONFIG.length);
  GIT_SAFE_CONFIG.forEach(([key, value], i) => {
    env[`GIT_CONFIG_KEY_${i}`] = key;
    env[`GIT_CONFIG_VALUE_${i}`] = value;
  });
  env.GIT_TERMINAL_PROMPT = '0';
  // No pager or editor a config could name: agentpr's git never needs either.
  env.GIT_PAGER = 'cat';
  env.GIT_EDITOR = ':';
  env.GIT_SEQUENCE_EDITOR = ':';
  return env;
}
