import { execFileSync, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { accessSync, appendFileSync, constants, cpSync, createWriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync, type WriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { sign } from '@octokit/webhooks-methods';
import { createApp, type App } from '../app.js';
import { UsageError, errorMessage } from '../core/errors.js';
import { createLogger } from '../logger.js';
import { packageRoot } from '../policy-file.js';
import { VERSION } from '../version.js';
import { resolveCodexBin } from '../worker/runner.js';
import { startWebhookServer, type WebhookServer } from '../github/webhook-server.js';
import { GitHubSim } from './github-sim.js';

/**
 * `npm run demo` / `agentpr demo`: one whole run, offline, driven through the real MCP server
 * over stdio by the real SDK client, on the embedded default policy. Local stand-ins replace
 * what cannot be reached here: bare git repositories for upstream and fork, a GitHub REST
 * simulator (src/demo/github-sim.ts) and, unless `--worker codex`, a replay worker
 * (demo/replay-codex.mjs) that replays a recorded codex stream and then really fixes the demo
 * project's bug and runs its tests. Everything is kept in the data home afterwards.
 */

export type DemoWorker = 'replay' | 'codex';

export interface DemoOptions {
  /** Data home; default AGENTPR_HOME, else a new temporary directory. */
  home?: string;
  worker: DemoWorker;
  /** The environment to start from (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** Where the report goes (default stdout). */
  write?: (text: string) => void;
}

export const DEMO_USAGE = `usage: npm run demo [-- --worker replay|codex] [--home DIR]
       agentpr [--home DIR] demo [--worker replay|codex]

Runs one whole agentpr run end to end, offline, with no tokens: local bare "upstream" and "fork"
git repositories with a small project, the real MCP server over stdio driven by the SDK client
(create-run -> run-prepare -> mark-plan-ready -> start-implementation -> run-agent-step ->
run-finish -> request-open-pr -> approve-open-pr -> CI fails, a review comment -> sync-github ->
ITERATING -> run-agent-step with the iteration packet -> run-finish pushes again -> CI green ->
sync-github -> signed review and merge webhooks -> DONE), a local GitHub simulator and the real
webhook receiver.

  --worker replay   (default) a REPLAY of a recorded codex run that then makes the fix and runs
                    the tests for real; not a live model
  --worker codex    the real codex CLI (AGENTPR_CODEX_BIN or codex on PATH); needs its login and
                    network, takes minutes, and may not reach PASS
  --home DIR        data home (default: AGENTPR_HOME, else a new temporary directory); kept afterwards

See docs/demo.md.`;

export function parseDemoArgs(argv: string[]): { worker: DemoWorker; home?: string; help: boolean } {
  let worker: DemoWorker = 'replay';
  let home: string | undefined;
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const eq = a.startsWith('--') ? a.indexOf('=') : -1;
    const flag = eq > 0 ? a.slice(0, eq) : a;
    const value = (): string => {
      const v = eq > 0 ? a.slice(eq + 1) : argv[++i];
      if (v === undefined || v === '') throw new UsageError(`${flag} needs a value`);
      return v;
    };
    if (flag === '--help' || flag === '-h') help = true;
    else if (flag === '--worker') {
      const w = value();
      if (w !== 'replay' && w !== 'codex') throw new UsageError(`--worker must be replay or codex, got '${w}'`);
      worker = w;
    } else if (flag === '--home') home = value();
    else throw new UsageError(`unknown option ${a} for demo; allowed: --worker replay|codex, --home DIR`);
  }
  return { worker, home, help };
}

// ---- the demo project and its story ------------------------------------------------------------

const OWNER = 'demo-org';
const REPO = 'demo-calc';
const BRANCH = 'fix/sum-first-value';
const TITLE = 'Fix sum() skipping the first value';
const DEMO_TOKEN = 'demo-token-not-secret';
const DEMO_WEBHOOK_SECRET = 'demo-webhook-secret-not-secret';
const REPLAY_STREAM = 'run_policy_smoke_20260224_20260224T235433957166Z.jsonl';
const REVIEWER = 'demo-reviewer';
const ITERATION_TITLE = 'Iterate with for...of in sum()';
const REVIEW_COMMENT = 'Please iterate with for...of here: the index loop is what hid this bug.';
const ITERATE_PROMPT = [
  'The PR for the sum() fix got feedback: fix what CI reports and address the review comments below.',
  'Keep the change minimal, do not edit the tests, and run the checks CI runs (`npm test`, `npm run lint`).',
  'Do not commit or push; agentpr does that after reviewing the result.',
].join('\n');
const PROMPT = [
  'Fix the bug in src/calc.js that makes `npm test` fail: sum() must add every value of the list (mean() depends on it).',
  'Keep the change minimal, do not edit the tests, and run `npm test` to confirm that every test passes.',
  'Do not commit or push; agentpr does that after reviewing the result.',
].join('\n');
const CONTRACT = `# Contract: ${OWNER}/${REPO} — ${TITLE}

Produced for the agentpr demo (in a real run, the discovery step writes this).

- Problem: \`sum()\` in \`src/calc.js\` skips the first value; \`npm test\` fails on \`main\`.
- Change: the smallest fix in \`src/calc.js\`; tests stay as they are.
- Required check: \`npm test\` passes (Node's built-in test runner).
- Budget: at most 6 changed files and 120 added lines (policy defaults).
- The worker does not commit or push; \`run-finish\` does, then a PR is requested and approved.
`;

class DemoFailure extends Error {}

interface ToolResult {
  isError?: boolean;
  content: Array<{ type: string; text?: string }>;
  structuredContent?: Record<string, unknown>;
}

type Json = Record<string, unknown>;

function obj(v: unknown): Json {
  return v && typeof v === 'object' ? (v as Json) : {};
}

function str(v: unknown): string {
  return typeof v === 'string' ? v : v === null || v === undefined ? '' : String(v);
}

function stampNow(): string {
  return new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
}

function secs(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

function isExecutable(p: string): boolean {
  try {
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The built stdio server next to this module (dist/src/demo -> dist/src/mcp), else the package's dist. */
function stdioServerPath(): string {
  const beside = fileURLToPath(new URL('../mcp/stdio.js', import.meta.url));
  if (existsSync(beside)) return beside;
  const built = join(packageRoot(), 'dist', 'src', 'mcp', 'stdio.js');
  if (existsSync(built)) return built;
  throw new DemoFailure(`the MCP server is not built (${built} is missing); run npm run build first`);
}

function tailOf(file: string, lines: number): string[] {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines);
  } catch {
    return [];
  }
}

/** Runs the demo; resolves to the process exit code (0 success, 1 a step failed, 2 bad usage). */
export async function runDemo(opts: DemoOptions): Promise<number> {
  const write = opts.write ?? ((t: string) => void process.stdout.write(t));
  const say = (line = '') => write(`${line}\n`);
  const baseEnv = opts.env ?? process.env;
  const started = Date.now();

  // The worker first: a missing codex must fail before anything is created.
  let codexBin: string;
  let workerLine: string;
  if (opts.worker === 'codex') {
    try {
      codexBin = resolveCodexBin(baseEnv);
    } catch (err) {
      say(`agentpr demo --worker codex: ${errorMessage(err)}`);
      say('Without --worker codex the demo uses the replay worker, which needs nothing installed.');
      return 1;
    }
    workerLine = `real codex (${codexBin}): a live model run; it needs your codex login and network access, takes minutes, and may not reach PASS`;
  } else {
    codexBin = join(packageRoot(), 'demo', 'replay-codex.mjs');
    if (!existsSync(codexBin)) {
      say(`agentpr demo: the replay worker ${codexBin} is missing; reinstall agentpr-mcp (the package ships demo/)`);
      return 1;
    }
    workerLine = `REPLAY of a recorded codex run (${REPLAY_STREAM}) — not a live model; use --worker codex to run the real codex`;
  }

  const explicitHome = opts.home ?? baseEnv.AGENTPR_HOME?.trim();
  const home = explicitHome ? resolve(explicitHome) : mkdtempSync(join(tmpdir(), 'agentpr-demo-'));
  mkdirSync(home, { recursive: true });
  const demoDir = join(home, 'demo', `${stampNow()}-${randomUUID().slice(0, 4)}`);
  mkdirSync(demoDir, { recursive: true });
  const dbPath = join(home, 'agentpr.db');
  const workspaceRoot = join(home, 'workspaces');
  const serverLog = join(demoDir, 'mcp-server.log');
  const demoLog = join(demoDir, 'webhook-receiver.log');
  const simLog = join(demoDir, 'github-requests.jsonl');
  const gitConfig = join(demoDir, 'gitconfig');
  writeFileSync(gitConfig, '# empty: the demo does not use your global git settings (signing, hooks, url rewrites)\n');

  if (opts.worker === 'replay' && !isExecutable(codexBin)) {
    // A package manager may drop the mode bit; a wrapper runs the same file with this node.
    const wrapper = join(demoDir, 'replay-codex');
    writeFileSync(wrapper, `#!/bin/sh\nexec '${process.execPath.replaceAll("'", `'\\''`)}' '${codexBin.replaceAll("'", `'\\''`)}' "$@"\n`, { mode: 0o755 });
    codexBin = wrapper;
  }

  say(`agentpr demo ${VERSION}: one whole run, offline, through the real MCP server`);
  say(`  data home  ${home}${explicitHome ? '' : ' (temporary; kept afterwards)'}`);
  say(`  worker     ${workerLine}`);
  say();

  // The server's environment: the demo home and local stand-ins only. Variables that could send
  // the demo to another database, real GitHub or other scripts are dropped.
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(baseEnv)) if (v !== undefined) env[k] = v;
  for (const k of [
    'AGENTPR_DB',
    'AGENTPR_WORKSPACE_ROOT',
    'AGENTPR_POLICY_FILE',
    'AGENTPR_RUNTIME_ENV_OVERRIDES',
    'AGENTPR_FORGE_SCRIPTS_DIR',
    'AGENTPR_FORGE_UPSTREAM_URL',
    'AGENTPR_FORGE_FORK_URL',
    'AGENTPR_FORGE_CLONE_DIR',
    'GITHUB_TOKEN',
    'GH_TOKEN',
    'AGENTPR_GITHUB_WEBHOOK_SECRETS',
    'NODE_TEST_CONTEXT',
  ]) {
    delete env[k];
  }
  Object.assign(env, {
    AGENTPR_HOME: home,
    AGENTPR_CODEX_BIN: codexBin,
    AGENTPR_GITHUB_TOKEN: DEMO_TOKEN,
    AGENTPR_GITHUB_WEBHOOK_SECRET: DEMO_WEBHOOK_SECRET,
    AGENTPR_LOG_LEVEL: baseEnv.AGENTPR_LOG_LEVEL ?? 'info',
    PATH: [dirname(process.execPath), baseEnv.PATH ?? ''].filter(Boolean).join(delimiter),
    GIT_CONFIG_GLOBAL: gitConfig,
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_TERMINAL_PROMPT: '0',
    npm_config_update_notifier: 'false',
    npm_config_fund: 'false',
    npm_config_audit: 'false',
  });
  const gitEnv = {
    ...env,
    GIT_AUTHOR_NAME: 'agentpr demo',
    GIT_AUTHOR_EMAIL: 'demo@agentpr.invalid',
    GIT_COMMITTER_NAME: 'agentpr demo',
    GIT_COMMITTER_EMAIL: 'demo@agentpr.invalid',
  };
  const git = (cwd: string, args: string[]): string => {
    try {
      return execFileSync('git', args, { cwd, env: gitEnv, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      throw new DemoFailure(`git ${args.join(' ')} in ${cwd} failed: ${e.stderr?.trim() || e.message}`);
    }
  };
  const npmRun = (cwd: string, script: 'test' | 'lint'): { exitCode: number; counts: string; output: string } => {
    const r = spawnSync('npm', script === 'test' ? ['test'] : ['run', script], { cwd, env, encoding: 'utf8', timeout: 120_000 });
    if (r.error) throw new DemoFailure(`npm ${script} in ${cwd} could not run: ${r.error.message}; npm must be installed next to node`);
    const out = `${r.stdout ?? ''}${r.stderr ?? ''}`;
    const counts = out.split('\n').map((l) => /^#\s*(pass|fail)\s+(\d+)/.exec(l.trim())).filter((m) => m !== null).map((m) => `${m[1]} ${m[2]}`).join(', ');
    return { exitCode: r.status ?? 1, counts, output: out };
  };
  const npmTest = (cwd: string) => npmRun(cwd, 'test');

  // ---- step printing -----------------------------------------------------------------------------
  let stepNo = 0;
  /** One numbered line per step with the resulting state; a `live` step announces itself first (its progress follows). */
  const step = async (name: string, fn: () => Promise<{ state?: string; lines?: string[] }>, live = false): Promise<void> => {
    stepNo++;
    const t0 = Date.now();
    const head = `${String(stepNo).padStart(3)}. ${name.padEnd(22)}`;
    if (live) say(`${head} running…`);
    const lead = live ? `${' '.repeat(5)}${'└'.padEnd(22)}` : head;
    try {
      const r = await fn();
      const state = r.state ? `-> ${r.state}` : '';
      say(`${lead} ${state.padEnd(20)} ${secs(Date.now() - t0)}`);
      for (const l of r.lines ?? []) say(`       ${l}`);
    } catch (err) {
      say(`${lead} FAILED after ${secs(Date.now() - t0)}`);
      for (const l of errorMessage(err).split('\n')) say(`       ${l}`);
      throw err instanceof DemoFailure ? err : new DemoFailure(`${name}: ${errorMessage(err)}`);
    }
  };

  const upstreamDir = join(demoDir, 'git', 'upstream', `${REPO}.git`);
  const forkDir = join(demoDir, 'git', 'fork', `${REPO}.git`);
  let client: Client | undefined;
  let serverLogStream: WriteStream | undefined;
  let hookApp: App | undefined;
  let webhook: WebhookServer | undefined;
  const sim = new GitHubSim({
    token: DEMO_TOKEN,
    resolveHeadSha: (_owner, _repo, branch) => {
      try {
        return git(forkDir, ['rev-parse', '--verify', '-q', `refs/heads/${branch}`]) || undefined;
      } catch {
        return undefined;
      }
    },
    onRequest: (r) => appendFileSync(simLog, `${JSON.stringify(r)}\n`),
  });
  let runId = '';
  let prUrl = '';
  let prNumber = 0;
  let pushedSha = '';
  let firstSha = '';
  let mergeSha = '';
  let packetLines: string[] = [];
  let verdict = { grade: '', reason_code: '' };
  let finalState = '';

  const call = async (name: string, args: Json, options: { timeout?: number; progress?: boolean } = {}): Promise<{ data: Json; text: string }> => {
    if (!client) throw new DemoFailure('the MCP client is not connected');
    const r = (await client.callTool(
      { name, arguments: args },
      {
        timeout: options.timeout ?? 120_000,
        ...(options.progress
          ? { resetTimeoutOnProgress: true, onprogress: (p: { message?: string }) => p.message && say(`       … ${p.message}`) }
          : {}),
      },
    )) as ToolResult;
    const text = r.content.map((c) => c.text ?? '').join('\n').trim();
    if (r.isError) throw new DemoFailure(`${name} refused: ${text}`);
    return { data: r.structuredContent ?? {}, text };
  };
  const stateOf = async (): Promise<string> => str(obj((await call('show-run', { run_id: runId, events_limit: 1 })).data.run).state);
  const expectState = async (want: string, why: string): Promise<string> => {
    const s = await stateOf();
    if (s !== want) throw new DemoFailure(`${runId} is in ${s}, expected ${want} (${why})`);
    return s;
  };

  const onSignal = () => {
    say('\ninterrupted; stopping the demo (the data home is kept)');
    void client?.close().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);

  try {
    await step('set-up', async () => {
      const seed = join(demoDir, 'git', 'seed');
      cpSync(join(packageRoot(), 'demo', 'project'), seed, { recursive: true });
      const before = npmTest(seed);
      git(seed, ['init', '-q', '-b', 'main']);
      git(seed, ['add', '-A']);
      git(seed, ['commit', '-q', '-m', 'demo-calc: sum and mean']);
      mkdirSync(dirname(upstreamDir), { recursive: true });
      mkdirSync(dirname(forkDir), { recursive: true });
      git(demoDir, ['clone', '-q', '--bare', seed, upstreamDir]);
      git(demoDir, ['clone', '-q', '--bare', upstreamDir, forkDir]);
      writeFileSync(join(demoDir, 'contract.md'), CONTRACT);
      return {
        lines: [
          `upstream ${upstreamDir}`,
          `fork     ${forkDir}   (bare git repositories, branch main)`,
          `project  ${OWNER}/${REPO}: src/calc.js, test/calc.test.js, "test": "node --test", "lint": "node scripts/lint.mjs"`,
          `npm test on main: exit ${before.exitCode}${before.counts ? ` (${before.counts})` : ''}${before.exitCode !== 0 ? ' — the bug the worker is asked to fix' : ''}`,
        ],
      };
    });

    await step('local GitHub', async () => {
      await sim.start();
      sim.addRepo(OWNER, REPO, 'main');
      env.GITHUB_API_URL = sim.url;
      // The webhook receiver runs here, on the same database file as the MCP server.
      hookApp = createApp({
        home,
        env,
        logger: createLogger({ level: env.AGENTPR_LOG_LEVEL, destination: createWriteStream(demoLog, { flags: 'a' }) }),
      });
      webhook = await startWebhookServer({ app: hookApp, host: '127.0.0.1', port: 0, secrets: [DEMO_WEBHOOK_SECRET] });
      return {
        lines: [
          `GitHub REST simulator ${sim.url} (GITHUB_API_URL; token "${DEMO_TOKEN}")`,
          `webhook receiver      ${webhook.url} (signed deliveries, secret "${DEMO_WEBHOOK_SECRET}")`,
        ],
      };
    });

    await step('MCP server (stdio)', async () => {
      const transport = new StdioClientTransport({ command: process.execPath, args: [stdioServerPath()], env, cwd: demoDir, stderr: 'pipe' });
      serverLogStream = createWriteStream(serverLog, { flags: 'a' });
      transport.stderr?.pipe(serverLogStream);
      client = new Client({ name: 'agentpr-demo', version: VERSION });
      await client.connect(transport);
      const tools = await client.listTools();
      return { lines: [`agentpr-mcp pid ${transport.pid ?? '?'}: ${tools.tools.length} tools; its log: ${serverLog}`] };
    });

    await step('create-run', async () => {
      const preferred = join(workspaceRoot, REPO);
      const workspace = existsSync(preferred) ? join(workspaceRoot, `${REPO}-${basename(demoDir).toLowerCase()}`) : preferred;
      const { data } = await call('create-run', { owner: OWNER, repo: REPO, workspace_dir: workspace, budget: { demo: true } });
      const run = obj(data.run);
      runId = str(run.run_id);
      return { state: str(run.state), lines: [`${runId} for ${OWNER}/${REPO}, workspace ${str(run.workspace_dir)}`] };
    });

    await step('run-prepare', async () => {
      const { data } = await call('run-prepare', { run_id: runId, upstream_url: upstreamDir, fork_url: forkDir, feature: BRANCH }, { timeout: 300_000 });
      if (data.ok !== true) throw new DemoFailure(`prepare.sh failed: ${str(data.error) || str(data.last_error)}; logs ${str(data.stderr_log)}`);
      const outputs = obj(data.outputs);
      return { state: str(data.state), lines: [`prepare.sh cloned the fork, added upstream, branch ${str(outputs.branch)} from ${str(outputs.base)} @ ${str(outputs.base_sha).slice(0, 7)}`] };
    });

    await step('mark-plan-ready', async () => {
      const contract = join(demoDir, 'contract.md');
      const { data } = await call('mark-plan-ready', { run_id: runId, contract_path: contract });
      return { state: str(data.state), lines: [`contract ${contract}`] };
    });

    await step('start-implementation', async () => {
      const { data } = await call('start-implementation', { run_id: runId });
      return { state: str(data.state) };
    });

    await step('run-agent-step', async () => {
      const codex = opts.worker === 'codex';
      const { data } = await call(
        'run-agent-step',
        { run_id: runId, prompt: PROMPT, ...(codex ? {} : { max_agent_seconds: 120 }) },
        { timeout: codex ? 20 * 60_000 : 180_000, progress: true },
      );
      verdict = { grade: str(data.grade), reason_code: str(data.reason_code) };
      const evidence = Array.isArray(data.evidence) ? data.evidence.map(str) : [];
      const lines = [
        `verdict: ${verdict.grade || 'none'} ${verdict.reason_code} (next: ${str(data.next_action) || '-'}); worker exit ${str(data.exit_code)}`,
        ...evidence.slice(0, 4).map((e) => `  - ${e}`),
        `reports: ${str(data.reports_dir)}`,
      ];
      if (verdict.grade !== 'PASS') {
        throw new DemoFailure(
          [
            `the worker's verdict is ${verdict.grade || 'none'} ${verdict.reason_code}, not PASS: the definition-of-done gate would refuse the PR, so the demo stops here (run ${runId} is in ${str(data.state_after)})`,
            ...lines,
          ].join('\n'),
        );
      }
      return { state: str(data.state_after), lines };
    }, true);

    await step('run-finish', async () => {
      const { data } = await call('run-finish', { run_id: runId, changes: `${TITLE}: the loop started at index 1.`, title: TITLE }, { timeout: 300_000 });
      if (data.ok !== true) throw new DemoFailure(`finish.sh failed: ${str(data.error) || str(data.last_error)}; logs ${str(data.stderr_log)}`);
      const outputs = obj(data.outputs);
      pushedSha = str(outputs.head_sha);
      firstSha = pushedSha;
      const inFork = git(forkDir, ['log', '-1', '--format=%h %s', `refs/heads/${BRANCH}`]);
      return { state: str(data.state), lines: [`finish.sh committed and pushed ${pushedSha.slice(0, 12)} to the fork: ${inFork}`] };
    });

    let token = '';
    await step('request-open-pr', async () => {
      const body = [
        '`sum()` started its loop at index 1, so the first value was never added and `mean()` was wrong too.',
        '',
        `Worker verdict: ${verdict.grade} ${verdict.reason_code}; \`npm test\` passes.`,
        '',
        '_Opened by the agentpr demo._',
      ].join('\n');
      const { data } = await call('request-open-pr', { run_id: runId, title: TITLE, body });
      token = str(data.token);
      const gate = obj(data.gate);
      const failed = Array.isArray(gate.failed_checks) ? gate.failed_checks.map((c) => `${str(obj(c).code)}: ${str(obj(c).message)}`) : [];
      if (gate.ok !== true) throw new DemoFailure(`the definition-of-done gate fails:\n${failed.join('\n')}`);
      return {
        state: await stateOf(),
        lines: [`request ${str(data.request_id)}, confirm token ${token} (expires ${str(data.expires_at)}); DoD gate ok; ${str(data.head)} @ ${str(data.head_sha).slice(0, 12)}`],
      };
    });

    await step('approve-open-pr', async () => {
      const { data } = await call('approve-open-pr', { run_id: runId, confirm: true, token }, { timeout: 180_000 });
      prUrl = str(data.pr_url);
      prNumber = Number(data.pr_number);
      const approval = obj(data.approval);
      return {
        state: str(obj(data.run).state),
        lines: [`${str(data.status)} PR #${prNumber}: ${prUrl}`, `approved by ${str(approval.approved_by)} via ${str(approval.entry)}, head ${str(approval.head_sha).slice(0, 12)}, gate ${approval.gate_ok === true ? 'ok' : 'bypassed'}`],
      };
    });

    /**
     * CI on a fresh clone of the PR's head, as a GitHub Actions job: `npm test` and `npm run lint`,
     * reported to the simulator as the check run `ci / test and lint` with the job's log, and an
     * annotation for each lint finding.
     */
    let ciFailed = false;
    let ciFindings: Array<{ path: string; line: number }> = [];
    const ciRound = async (round: number): Promise<{ state?: string; lines: string[] }> => {
      const ci = join(demoDir, `ci-${round}`);
      git(demoDir, ['clone', '-q', '--branch', BRANCH, forkDir, ci]);
      const sha = git(ci, ['rev-parse', 'HEAD']);
      sim.setPullHead(OWNER, REPO, prNumber, sha);
      const test = npmTest(ci);
      const lint = npmRun(ci, 'lint');
      const findings = [...lint.output.matchAll(/^(src\/[^:\s]+):(\d+):\d+: error ([\w-]+): (.+)$/gm)];
      const failed = test.exitCode !== 0 || lint.exitCode !== 0;
      ciFailed = failed;
      ciFindings = findings.map((f) => ({ path: f[1]!, line: Number(f[2]) }));
      const log = [`##[group]Run npm test`, test.output.trimEnd(), '##[endgroup]', `##[group]Run npm run lint`, lint.output.trimEnd(), '##[endgroup]', ...(failed ? ['##[error]Process completed with exit code 1.'] : [])].join('\n');
      sim.setCheckRuns(OWNER, REPO, sha, [
        {
          id: 4_200_000 + round,
          name: 'ci / test and lint',
          status: 'completed',
          conclusion: failed ? 'failure' : 'success',
          app: 'github-actions',
          output: {
            title: failed ? `npm test exit ${test.exitCode}, npm run lint exit ${lint.exitCode}` : 'all checks passed',
            summary: `npm test: ${test.counts || `exit ${test.exitCode}`}; npm run lint: ${findings.length} error(s)`,
            text: null,
          },
          annotations: findings.map((f) => ({ path: f[1]!, start_line: Number(f[2]), annotation_level: 'failure' as const, message: `${f[3]}: ${f[4]}`, title: 'lint' })),
          log,
        },
      ]);
      return {
        lines: [
          `fresh clone of ${sha.slice(0, 12)}: npm test exit ${test.exitCode}${test.counts ? ` (${test.counts})` : ''}, npm run lint exit ${lint.exitCode}`,
          `-> check run "ci / test and lint" ${failed ? 'failure' : 'success'} on the simulator${findings.length ? `, annotations: ${findings.map((f) => `${f[1]}:${f[2]} ${f[3]}`).join(', ')}` : ''}`,
        ],
      };
    };

    /** A delivery to the webhook receiver, signed like GitHub (HMAC-SHA256 of the raw body). */
    const deliver = async (event: string, payload: Json): Promise<string[]> => {
      if (!webhook) throw new DemoFailure('the webhook receiver is not running');
      const raw = JSON.stringify(payload);
      const delivery = randomUUID();
      const res = await fetch(webhook.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'user-agent': 'GitHub-Hookshot/agentpr-demo',
          'x-github-event': event,
          'x-github-delivery': delivery,
          'x-hub-signature-256': await sign(DEMO_WEBHOOK_SECRET, raw),
        },
        body: raw,
      });
      const answer = obj(await res.json().catch(() => ({})));
      if (res.status !== 200 || answer.outcome !== 'processed') {
        throw new DemoFailure(`the webhook receiver answered ${res.status} ${str(answer.outcome)}: ${str(answer.error) || JSON.stringify(answer.notes ?? answer.calls ?? '')}`);
      }
      const calls = Array.isArray(answer.calls) ? answer.calls.map(obj) : [];
      return [`${event} "${str(payload.action)}" delivery ${delivery.slice(0, 8)} (HMAC-SHA256 signed) -> 200 processed`, ...calls.map((c) => `${str(c.tool)}: ${str(c.text)}`)];
    };
    const repository = { name: REPO, full_name: `${OWNER}/${REPO}`, owner: { login: OWNER } };

    await step('CI (round 1)', () => ciRound(1));

    // With the replay worker the first fix keeps the index loop, so CI fails and the run iterates.
    // A live codex may write for...of at once; then there is nothing to iterate on.
    if (ciFailed) {
      await step('review comment', async () => {
        // The line the reviewer comments on, with the diff hunk GitHub shows around it.
        const { path, line } = ciFindings[0] ?? { path: 'src/calc.js', line: 1 };
        const hunk = git(forkDir, ['diff', '-U1', `${firstSha}^`, firstSha, '--', path]).split('\n');
        const diffHunk = hunk.slice(Math.max(0, hunk.findIndex((l) => l.startsWith('@@')))).join('\n');
        const at = new Date().toISOString();
        sim.addReviewComment(OWNER, REPO, prNumber, { id: 70_000 + prNumber, user: REVIEWER, path, line, diff_hunk: diffHunk, body: REVIEW_COMMENT, position: 1, created_at: at });
        sim.addReview(OWNER, REPO, prNumber, { id: 80_000 + prNumber, user: REVIEWER, state: 'CHANGES_REQUESTED', body: `One change, see the comment on ${path}.`, submitted_at: at });
        return { lines: [`${REVIEWER} requests changes on ${path}:${line}: "${REVIEW_COMMENT}"`] };
      });

      await step('sync-github', async () => {
        const { data } = await call('sync-github', { run_id: runId }, { timeout: 180_000 });
        const r = (Array.isArray(data.results) ? data.results.map(obj) : [])[0] ?? {};
        if (r.status !== 'synced') throw new DemoFailure(`sync-github answered ${str(r.status)}: ${str(r.message)}`);
        return { state: await expectState('ITERATING', 'the check failed'), lines: [str(r.message)] };
      });

      await step('run-agent-step', async () => {
        const codex = opts.worker === 'codex';
        const { data } = await call(
          'run-agent-step',
          { run_id: runId, prompt: ITERATE_PROMPT, ...(codex ? {} : { max_agent_seconds: 120 }) },
          { timeout: codex ? 20 * 60_000 : 180_000, progress: true },
        );
        const grade = str(data.grade);
        const iteration = await client!.readResource({ uri: `agentpr://runs/${runId}/iteration` });
        const md = iteration.contents[0] && 'text' in iteration.contents[0] ? str(iteration.contents[0].text) : '';
        packetLines = md.trimEnd().split('\n');
        const lines = [
          `iteration packet (agentpr://runs/${runId}/iteration): ${packetLines[0]?.replace(/^#\s*/, '') ?? ''}`,
          `verdict: ${grade || 'none'} ${str(data.reason_code)} (next: ${str(data.next_action) || '-'}); worker exit ${str(data.exit_code)}`,
        ];
        if (grade !== 'PASS') throw new DemoFailure([`the iteration's verdict is ${grade || 'none'} ${str(data.reason_code)}, not PASS (run ${runId} is in ${str(data.state_after)})`, ...lines].join('\n'));
        return { state: str(data.state_after), lines };
      }, true);

      await step('run-finish', async () => {
        const { data } = await call('run-finish', { run_id: runId, changes: 'sum() iterates with for...of, as the lint and the review asked.', title: ITERATION_TITLE }, { timeout: 300_000 });
        if (data.ok !== true) throw new DemoFailure(`finish.sh failed: ${str(data.error) || str(data.last_error)}; logs ${str(data.stderr_log)}`);
        pushedSha = str(obj(data.outputs).head_sha);
        if (!pushedSha || pushedSha === firstSha) throw new DemoFailure(`the iteration pushed no new commit (head ${pushedSha || 'none'})`);
        const inFork = git(forkDir, ['log', '-1', '--format=%h %s', `refs/heads/${BRANCH}`]);
        return { state: await expectState('CI_WAIT', 'an iteration push goes back to CI on the same PR'), lines: [`pushed ${pushedSha.slice(0, 12)} to PR #${prNumber} with no second approval: ${inFork}`] };
      });

      await step('CI (round 2)', () => ciRound(2));
    } else if (opts.worker === 'replay') {
      throw new DemoFailure('CI passed on the first push, so there is nothing to iterate on; the replay worker\'s first fix should fail the lint (is demo/replay-plan.json changed?)');
    } else {
      say('       (CI is green on codex\'s first push: nothing to iterate on, so the review-and-fix round is skipped)');
    }


    await step('sync-github', async () => {
      const { data } = await call('sync-github', { run_id: runId }, { timeout: 180_000 });
      const r = (Array.isArray(data.results) ? data.results.map(obj) : [])[0] ?? {};
      if (r.status !== 'synced') throw new DemoFailure(`sync-github answered ${str(r.status)}: ${str(r.message)}`);
      return { state: await expectState('REVIEW_WAIT', 'all checks green'), lines: [str(r.message)] };
    });

    await step('webhook (review)', async () => {
      const reviewId = 80_001 + prNumber;
      const submittedAt = new Date().toISOString();
      sim.addReview(OWNER, REPO, prNumber, { id: reviewId, user: REVIEWER, state: 'APPROVED', body: 'Looks good, thanks!', submitted_at: submittedAt });
      const lines = await deliver('pull_request_review', {
        action: 'submitted',
        review: { id: reviewId, user: { login: REVIEWER, type: 'User' }, body: 'Looks good, thanks!', state: 'approved', commit_id: pushedSha, submitted_at: submittedAt, html_url: `${prUrl}#pullrequestreview-${reviewId}` },
        pull_request: { number: prNumber, html_url: prUrl, state: 'open', head: { ref: BRANCH, sha: pushedSha }, base: { ref: 'main' } },
        repository,
        sender: { login: REVIEWER },
      });
      return { state: await stateOf(), lines };
    });

    await step('webhook (merged)', async () => {
      // The maintainer merges: upstream main fast-forwards to the PR's head.
      git(demoDir, ['--git-dir', upstreamDir, 'fetch', '-q', forkDir, `refs/heads/${BRANCH}:refs/heads/main`]);
      mergeSha = git(demoDir, ['--git-dir', upstreamDir, 'rev-parse', 'refs/heads/main']);
      const pr = sim.mergePull(OWNER, REPO, prNumber, mergeSha);
      const lines = await deliver('pull_request', {
        action: 'closed',
        number: prNumber,
        pull_request: {
          number: prNumber,
          html_url: prUrl,
          state: 'closed',
          merged: true,
          merge_commit_sha: mergeSha,
          closed_at: pr.closed_at,
          merged_by: { login: OWNER },
          head: { ref: BRANCH, sha: pushedSha },
          base: { ref: 'main' },
        },
        repository,
        sender: { login: OWNER },
      });
      finalState = await expectState('DONE', 'the PR was merged');
      return { state: finalState, lines: [`upstream main is now ${mergeSha.slice(0, 12)}`, ...lines] };
    });

    const insight = await client!.readResource({ uri: `agentpr://runs/${runId}/insight` });
    const first = insight.contents[0];
    const markdown = first && 'text' in first && typeof first.text === 'string' ? first.text : '(no insight text)';
    const shown = await call('show-run', { run_id: runId, events_limit: 1000 });
    const events = Array.isArray(shown.data.recent_events) ? shown.data.recent_events.length : 0;
    const reportsDir = join(home, 'reports', runId);
    const duration = Date.now() - started;

    say();
    say(`insight (agentpr://runs/${runId}/insight):`);
    say('  ' + '-'.repeat(76));
    for (const l of markdown.trimEnd().split('\n')) say(`  ${l}`);
    say('  ' + '-'.repeat(76));
    say();
    say(`verdict: ${verdict.grade} ${verdict.reason_code}`);
    say(`done: ${runId} is ${finalState} after ${stepNo} steps and ${events} events, in ${secs(duration)} (no network, no tokens)`);
    say(`  PR          ${prUrl} (served by the local simulator while the demo runs)`);
    say(`  loop        first push ${firstSha.slice(0, 12)} failed CI and got a review comment; the iteration pushed ${pushedSha.slice(0, 12)}; merged as ${mergeSha.slice(0, 12)}`);
    say(`  fork        ${forkDir} has ${BRANCH} at ${pushedSha.slice(0, 12)}`);
    say(`  database    ${dbPath}`);
    say(`  reports     ${reportsDir} (digest, insight, runtime report, worker logs)`);
    say(`  demo files  ${demoDir} (repositories, contract, server log, GitHub request log, summary.json)`);
    say(`  look at it  node ${join(packageRoot(), 'dist', 'src', 'cli.js')} --home ${home} show-run ${runId}`);

    writeFileSync(
      join(demoDir, 'summary.json'),
      `${JSON.stringify(
        {
          ok: true,
          run_id: runId,
          state: finalState,
          worker: opts.worker,
          verdict,
          pr_number: prNumber,
          pr_url: prUrl,
          branch: BRANCH,
          first_sha: firstSha,
          pushed_sha: pushedSha,
          merge_sha: mergeSha,
          iteration_packet: packetLines[0] ?? null,
          home,
          database: dbPath,
          reports: reportsDir,
          demo_dir: demoDir,
          upstream: upstreamDir,
          fork: forkDir,
          github_requests: simLog,
          server_log: serverLog,
          duration_ms: duration,
        },
        null,
        2,
      )}\n`,
    );
    return 0;
  } catch (err) {
    say();
    say(`demo FAILED${runId ? ` (run ${runId})` : ''}: ${err instanceof DemoFailure ? err.message.split('\n')[0] : errorMessage(err)}`);
    const tail = tailOf(serverLog, 5);
    if (tail.length) {
      say(`  last lines of the MCP server log (${serverLog}):`);
      for (const l of tail) say(`    ${l.length > 300 ? `${l.slice(0, 300)}…` : l}`);
    }
    say(`  everything is kept in ${home}${runId ? `; inspect with: node ${join(packageRoot(), 'dist', 'src', 'cli.js')} --home ${home} show-run ${runId}` : ''}`);
    writeFileSync(join(demoDir, 'summary.json'), `${JSON.stringify({ ok: false, run_id: runId || null, error: errorMessage(err), home, demo_dir: demoDir }, null, 2)}\n`);
    return 1;
  } finally {
    process.off('SIGINT', onSignal);
    await client?.close().catch(() => undefined);
    await webhook?.close().catch(() => undefined);
    await hookApp?.close().catch(() => undefined);
    await sim.stop().catch(() => undefined);
    if (serverLogStream) await new Promise<void>((r) => serverLogStream!.end(() => r()));
  }
}
