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

export function resolveConfig(overrides: ConfigOverrides = {}, env: NodeJS.ProcessEnv = process.env): Config {
  const home = resolve(overrides.home ?? env.AGENTPR_HOME ?? join(homedir(), '.agentpr'));
  return {
    home,
    dbPath: resolve(overrides.db ?? env.AGENTPR_DB ?? join(home, 'agentpr.db')),
    reportsDir: join(home, 'reports'),
    workspaceRoot: resolve(overrides.workspaceRoot ?? env.AGENTPR_WORKSPACE_ROOT ?? join(home, 'workspaces')),
    policyFile: overrides.policyFile ?? env.AGENTPR_POLICY_FILE ?? undefined,
  };
}
