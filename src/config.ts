import { ConfigurationError } from './core/errors.js';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

export interface Config {
  /** Data home: AGENTPR_HOME, default ~/.agentpr. */
  home: string;
  dbPath: string;
  reportsDir: string;
  workspaceRoot: string;
  /** Manager policy file (AGENTPR_POLICY_FILE / --policy-file); undefined = built-in defaults + policies/manager_policy.json. */
  policyFile?: string;
}

export interface ConfigOverrides {
  home?: string;
  db?: string;
  workspaceRoot?: string;
  policyFile?: string;
}

/**
 * A path that still holds `${VAR}` or `$VAR` was meant to be expanded by whoever launched us (an
 * MCP client's config, a shell); using it literally would create a directory named `${HOME}`.
 */
function assertExpanded(name: string, value: string | undefined): void {
  if (value !== undefined && /\$(\{[A-Za-z_][A-Za-z0-9_]*\}|[A-Za-z_][A-Za-z0-9_]*)/.test(value)) {
    throw new ConfigurationError(
      `${name} is '${value}', which still holds an unexpanded variable (your MCP client or shell did not expand it); give an absolute path instead`,
    );
  }
}

export function resolveConfig(overrides: ConfigOverrides = {}, env: NodeJS.ProcessEnv = process.env): Config {
  assertExpanded(overrides.home !== undefined ? '--home' : 'AGENTPR_HOME', overrides.home ?? env.AGENTPR_HOME);
  assertExpanded(overrides.db !== undefined ? '--db' : 'AGENTPR_DB', overrides.db ?? env.AGENTPR_DB);
  assertExpanded('AGENTPR_WORKSPACE_ROOT', overrides.workspaceRoot ?? env.AGENTPR_WORKSPACE_ROOT);
  assertExpanded(overrides.policyFile !== undefined ? '--policy-file' : 'AGENTPR_POLICY_FILE', overrides.policyFile ?? env.AGENTPR_POLICY_FILE);
  const home = resolve(overrides.home ?? env.AGENTPR_HOME ?? join(homedir(), '.agentpr'));
  return {
    home,
    dbPath: resolve(overrides.db ?? env.AGENTPR_DB ?? join(home, 'agentpr.db')),
    reportsDir: join(home, 'reports'),
    workspaceRoot: resolve(overrides.workspaceRoot ?? env.AGENTPR_WORKSPACE_ROOT ?? join(home, 'workspaces')),
    policyFile: overrides.policyFile ?? env.AGENTPR_POLICY_FILE ?? undefined,
  };
}
