import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { App } from '../../src/app.js';
import { Registry, type CallOutcome, type ProgressUpdate } from '../../src/registry.js';
import { TOOLS } from '../../tools/index.js';
import { makeTestApp, tempDir } from '../helpers/app.js';
import { GIT_TEST_ENV, makeUpstreamAndFork, type UpstreamAndFork } from '../helpers/git.js';

const HERE = dirname(fileURLToPath(import.meta.url));
export const FIXTURES = resolve(HERE, '..', 'fixtures');
export const FAKE_CODEX = join(FIXTURES, 'bin', 'fake-codex');
export const scenario = (name: string) => join(FIXTURES, 'codex-scenarios', `${name}.json`);

export interface Harness {
  app: App;
  registry: Registry;
  tmp: string;
  home: string;
  codexHome: string;
  forge: UpstreamAndFork;
  /** Calls a tool through the registry as the CLI would. */
  call: (name: string, args: Record<string, unknown>, extra?: { progress?: (u: ProgressUpdate) => Promise<void> }) => Promise<CallOutcome>;
  /** Sets the fake worker's scenario (and other env) for the next worker start. */
  setEnv: (vars: Record<string, string | undefined>) => void;
  cleanup: () => Promise<void>;
}

/**
 * A real App (temp SQLite, doctor gate on) whose worker is test/fixtures/bin/fake-codex, with a
 * local bare upstream and fork for prepare/finish, and CODEX_HOME in the temp dir.
 */
export function makeHarness(opts: { policy?: Record<string, unknown>; files?: Record<string, string>; env?: Record<string, string> } = {}): Harness {
  const tmp = tempDir('agentpr-worker-');
  const home = join(tmp, 'home');
  const codexHome = join(tmp, 'codex-home');
  mkdirSync(codexHome, { recursive: true });
  const forge = makeUpstreamAndFork(tmp, opts.files ?? { 'README.md': '# demo\n', 'src/greeting.txt': 'hello\n' });
  let policyFile = '';
  if (opts.policy) {
    policyFile = join(tmp, 'policy.json');
    writeFileSync(policyFile, JSON.stringify(opts.policy));
  }
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    ...GIT_TEST_ENV,
    AGENTPR_CODEX_BIN: FAKE_CODEX,
    CODEX_HOME: codexHome,
    AGENTPR_FORGE_UPSTREAM_URL: forge.upstreamUrl,
    AGENTPR_FORGE_FORK_URL: forge.forkUrl,
    AGENTPR_KILL_GRACE_MS: '300',
    // The fake worker reports its pids for the tests to check; inside a PID namespace it would see
    // only its namespace's pids. test/worker/containment.test.ts covers the namespace mode.
    AGENTPR_WORKER_CONTAINMENT: 'session',
    AGENTPR_POLICY_FILE: policyFile,
    ...opts.env,
  };
  delete env.FAKE_CODEX_SCENARIO;
  const t = makeTestApp({ home, env });
  const registry = new Registry(TOOLS);
  return {
    app: t.app,
    registry,
    tmp,
    home,
    codexHome,
    forge,
    call: (name, args, extra) => registry.call(name, args, { app: t.app, entry: 'mcp', progress: extra?.progress }),
    setEnv: (vars) => {
      for (const [k, v] of Object.entries(vars)) {
        if (v === undefined) delete t.app.env[k];
        else t.app.env[k] = v;
      }
    },
    cleanup: t.cleanup,
  };
}

export function ok(o: CallOutcome): Record<string, unknown> {
  if (!o.ok) throw new Error(`expected success, got ${o.code}: ${o.error}`);
  return o.data;
}

/** create-run + run-prepare: a run in DISCOVERY with a real clone in its workspace. */
export async function preparedRun(h: Harness, repo = 'demo'): Promise<{ runId: string; workspace: string }> {
  const created = ok(await h.call('create-run', { owner: 'octo', repo }));
  const run = created.run as { run_id: string; workspace_dir: string };
  const prepared = ok(await h.call('run-prepare', { run_id: run.run_id }));
  if (prepared.ok !== true) throw new Error(`run-prepare failed: ${JSON.stringify(prepared)}`);
  return { runId: run.run_id, workspace: run.workspace_dir };
}

/** Moves a prepared DISCOVERY run to IMPLEMENTING with a contract file. */
export async function toImplementing(h: Harness, runId: string): Promise<string> {
  const contract = join(h.app.config.home, 'contract.md');
  writeFileSync(contract, '# Contract\n\nAppend a greeting to src/greeting.txt; validate with npm test.\n');
  ok(await h.call('mark-plan-ready', { run_id: runId, contract_path: contract }));
  ok(await h.call('start-implementation', { run_id: runId }));
  return contract;
}

/** Running and not a zombie (a killed orphan stays a zombie until init reaps it). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  const stat = `/proc/${pid}/stat`;
  if (!existsSync(stat)) return existsSync('/proc/self/stat') ? false : true;
  try {
    const text = readFileSync(stat, 'utf8');
    const state = text.slice(text.lastIndexOf(')') + 2).split(' ')[0];
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

export async function waitFor<T>(what: string, fn: () => T | undefined | false, timeoutMs = 20_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
