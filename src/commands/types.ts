import type { App } from '../app.js';

/** Global CLI options already parsed by src/cli.ts (--db, --home, --policy-file, --skip-doctor). */
export interface GlobalOptions {
  home?: string;
  db?: string;
  policyFile?: string;
  skipDoctor?: boolean;
}

/**
 * A CLI command that is not a tool: long-running services (serve, run-telegram-bot,
 * run-github-webhook, run-manager-loop) and housekeeping (init-db, demo). Tools get their CLI
 * commands generated from the registry; these are listed in src/commands/index.ts.
 */
export interface CliCommand {
  name: string;
  summary: string;
  /** Usage lines shown by `agentpr <name> --help`. */
  usage: string;
  /** argv is everything after the command name (global options already removed). Returns the exit code. */
  run(argv: string[], ctx: { globals: GlobalOptions; openApp: () => App }): Promise<number>;
}
