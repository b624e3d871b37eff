import { mkdirSync } from 'node:fs';
import { ConfigurationError } from './core/errors.js';
import { resolveConfig, type Config, type ConfigOverrides } from './config.js';
import { createLogger, type Logger } from './logger.js';
import { openDatabase, type DB } from './store/db.js';
import { Service } from './service.js';
import type { AnyTool, ToolContext } from './registry.js';
import { loadPolicyWithSource } from './policy-file.js';
import { loadSecretFiles } from './secrets.js';
import type { Policy } from './policy.js';
import { reconcileOrphanedAttempts } from './worker/reconcile.js';

/**
 * A check run before a write- or admin-tier tool. It throws to refuse the call (nothing has
 * changed yet). The worker issue installs the startup doctor here.
 */
export type PreCallHook = (tool: AnyTool, args: Record<string, unknown>, ctx: ToolContext) => Promise<void> | void;

/** Everything a tool handler may use. One per process (or per test). */
export class App {
  readonly config: Config;
  readonly db: DB;
  readonly service: Service;
  readonly logger: Logger;
  /** The effective manager policy (built-ins + policy file), validated at startup. */
  readonly policy: Policy;
  /** The policy file read, or undefined when only built-ins apply. */
  readonly policySource: string | undefined;
  /** The environment this app was created with (createApp's env, else process.env). */
  readonly env: NodeJS.ProcessEnv;
  readonly preCallHooks: PreCallHook[] = [];
  private readonly closers: Array<() => void | Promise<void>> = [];

  constructor(config: Config, logger: Logger, env: NodeJS.ProcessEnv = process.env) {
    this.config = config;
    this.logger = logger;
    this.env = env;
    // Before anything is opened: an invalid policy file is a startup error (ConfigurationError).
    const loaded = loadPolicyWithSource(config.policyFile);
    this.policy = loaded.policy;
    this.policySource = loaded.source;
    mkdirSync(config.home, { recursive: true });
    mkdirSync(config.reportsDir, { recursive: true });
    mkdirSync(config.workspaceRoot, { recursive: true });
    this.db = openDatabase(config.dbPath);
    this.service = new Service(this.db, { workspaceRoot: config.workspaceRoot, leaseTtlMs: leaseTtlFromEnv(env) });
  }

  onClose(fn: () => void | Promise<void>): void {
    this.closers.push(fn);
  }

  async close(): Promise<void> {
    for (const fn of this.closers.reverse()) await fn();
    if (this.db.open) this.db.close();
  }
}

export interface CreateAppOptions extends ConfigOverrides {
  logger?: Logger;
  env?: NodeJS.ProcessEnv;
  /** Install the startup doctor before write/admin tools (default true). */
  doctorGate?: boolean;
  /**
   * Close attempts left running by a dead process (default false). Servers and the manager loop
   * pass true when they start; a one-off CLI call (a read above all) never changes state this way.
   */
  reconcile?: boolean;
}

export function createApp(opts: CreateAppOptions = {}): App {
  // Before anything reads a secret: NAME_FILE / $CREDENTIALS_DIRECTORY keep them out of /proc/<pid>/environ.
  loadSecretFiles(opts.env ?? process.env);
  const config = resolveConfig(opts, opts.env);
  const app = new App(config, opts.logger ?? createLogger(), opts.env ?? process.env);
  if (opts.doctorGate !== false) app.preCallHooks.push(lazyDoctorGate(app));
  if (opts.reconcile === true) reconcileOrphanedAttempts(app);
  return app;
}

/**
 * The startup doctor's gate, imported on the first write or admin call: the doctor and the worker
 * modules behind it are not needed to start a server or answer a read.
 */
function lazyDoctorGate(app: App): PreCallHook {
  let gate: Promise<PreCallHook> | undefined;
  return async (tool, args, ctx) => {
    gate ??= import('./worker/doctor.js').then((m) => m.doctorGate(app));
    await (await gate)(tool, args, ctx);
  };
}

/** AGENTPR_LEASE_TTL_SEC: how long a run's lease outlives its holder's last heartbeat (default 300). */
export function leaseTtlFromEnv(env: NodeJS.ProcessEnv): number | undefined {
  const raw = env.AGENTPR_LEASE_TTL_SEC?.trim();
  if (!raw) return undefined;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 1 || n > 86_400) {
    throw new ConfigurationError(`AGENTPR_LEASE_TTL_SEC=${raw} is not a number of seconds between 1 and 86400; fix or unset it (default 300)`);
  }
  return Math.round(n * 1000);
}
