import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { parseJsonObject } from '../core/json.js';
import { isAbsolute, join, resolve } from 'node:path';
import type { App } from '../app.js';
import { RunStateSchema, type RunState, TERMINAL_STATES } from '../core/states.js';
import { agentPolicyFor } from '../policy.js';
import type { DigestFacts, PromptFacts, RunFacts, StepCounts } from './rules.js';

/**
 * Gathers the facts the rules decide on, for many runs at once: a handful of set queries rather
 * than a few per run, so a tick over 10,000 runs stays well under a second (bench/tick.ts).
 * Read-only SQL; every write goes through the Service.
 */

export interface PromptInput {
  /** Prompt text for the worker, given to the tick. */
  prompt?: string;
  /** Prompt file for the worker, given to the tick. */
  prompt_file?: string;
}

interface RunRow {
  run_id: string;
  owner: string;
  repo: string;
  budget_json: string;
  workspace_dir: string;
  updated_at: string;
  current_state: string;
  last_error: string | null;
  pr_number: number | null;
}

interface ArtifactRow {
  artifact_id: number;
  run_id: string;
  artifact_type: string;
  uri: string;
  metadata_json: string;
  created_at: string;
}

const TERMINAL_LIST = [...TERMINAL_STATES].map((s) => `'${s}'`).join(',');

/** Directory for contracts the manager writes itself (auto-contracts). */
export function autoContractDir(app: App): string {
  return join(app.config.home, 'contracts');
}

/** The worker-readable contracts folder inside a clone. */
export function workspaceContractDir(workspaceDir: string): string {
  return join(workspaceDir, '.agentpr_runtime', 'contracts');
}


function str(v: unknown): string | null {
  return typeof v === 'string' && v.length > 0 ? v : null;
}

function obj(v: unknown): Record<string, unknown> {
  return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

/** Grade, reason and recommendation from a digest object (or artifact metadata carrying the same keys). */
export function digestSummary(d: Record<string, unknown>): { grade: string | null; reason_code: string | null; recommendation: string | null; priority: string | null } {
  const classification = obj(d.classification);
  const verdict = obj(d.verdict);
  const rec = obj(d.manager_recommendation);
  const grade = str(classification.grade) ?? str(verdict.grade) ?? str(d.grade);
  // The digest's manager_recommendation says advance | retry | human_review; artifact metadata
  // carries the verdict's next_action (advance | retry | escalate) instead.
  const raw = str(rec.action) ?? str(d.recommendation) ?? str(rec.next_action) ?? str(d.next_action);
  return {
    grade,
    reason_code: str(classification.reason_code) ?? str(verdict.reason_code) ?? str(d.reason_code),
    recommendation: raw === 'escalate' ? 'human_review' : raw,
    priority: str(rec.priority) ?? str(d.priority) ?? (grade === null ? null : grade === 'PASS' ? 'normal' : 'high'),
  };
}

/** Reads a digest JSON file; undefined when it is missing or not JSON. */
export function readJsonFile(path: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(readFileSync(path, 'utf8'));
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function artifactPath(uri: string): string {
  return uri.startsWith('file://') ? new URL(uri).pathname : uri;
}

/** A contract file for this run in the clone's contracts folder (name contains the run id), newest first. */
function findWorkspaceContract(workspaceDir: string, runId: string): string | null {
  const dir = workspaceContractDir(workspaceDir);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return null;
  }
  let best: { path: string; mtime: number } | null = null;
  for (const name of names) {
    if (!name.includes(runId)) continue;
    const path = join(dir, name);
    try {
      const st = statSync(path);
      if (st.isFile() && st.size > 0 && (!best || st.mtimeMs > best.mtime)) best = { path, mtime: st.mtimeMs };
    } catch {
      // vanished between readdir and stat
    }
  }
  return best?.path ?? null;
}

function resolvePrompt(
  input: PromptInput,
  budget: Record<string, unknown>,
  cwd: string,
): { prompt: PromptFacts | null; problem: string | null } {
  const candidates: Array<{ kind: 'text' | 'file'; value: unknown; source: string }> = [
    { kind: 'text', value: input.prompt, source: 'tick input' },
    { kind: 'file', value: input.prompt_file, source: 'tick input' },
    { kind: 'file', value: budget.prompt_file, source: 'run budget' },
    { kind: 'text', value: budget.prompt, source: 'run budget' },
  ];
  let problem: string | null = null;
  for (const c of candidates) {
    if (typeof c.value !== 'string' || c.value.trim() === '') continue;
    if (c.kind === 'text') return { prompt: { kind: 'text', value: c.value, source: c.source }, problem: null };
    const path = isAbsolute(c.value) ? c.value : resolve(cwd, c.value);
    if (existsSync(path)) return { prompt: { kind: 'file', value: path, source: c.source }, problem: null };
    problem ??= `prompt_file ${path} from the ${c.source} does not exist`;
  }
  return { prompt: null, problem };
}

const PREPARE_BUDGET_KEYS = ['upstream_url', 'fork_url', 'base', 'feature'] as const;

/** run-prepare options a run may carry in its budget (e.g. local remotes, a fixed feature branch). */
function prepareArgs(budget: Record<string, unknown>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of PREPARE_BUDGET_KEYS) {
    const v = budget[k];
    if (typeof v === 'string' && v.trim()) out[k] = v;
  }
  return out;
}

const MAX_CHANGES_CHARS = 2000;

function firstParagraph(text: string): string | null {
  const para = text
    .split(/\n\s*\n/)
    .map((p) => p.trim())
    .find((p) => p.length > 0);
  return para ?? null;
}

function readHead(path: string): string | null {
  try {
    return readFileSync(path, 'utf8').slice(0, 64 * 1024);
  } catch {
    return null;
  }
}

/**
 * The commit for run-finish. Title: the run budget's `commit_title`, else the first line of the
 * task prompt. Body (`changes`): the budget's `changes`, else the worker's final message, else the
 * prompt's first paragraph, else a line naming the run.
 */
function finishArgs(row: RunRow, budget: Record<string, unknown>, lastMessagePath: string | null, prompt: PromptFacts | null): { changes: string; title?: string } {
  const promptText = prompt ? (prompt.kind === 'text' ? prompt.value : readHead(prompt.value)) : null;
  const promptPara = promptText ? firstParagraph(promptText) : null;
  const budgetTitle = typeof budget.commit_title === 'string' && budget.commit_title.trim() ? budget.commit_title.trim() : undefined;
  const title = budgetTitle ?? promptPara?.split('\n')[0]?.trim().slice(0, 72) ?? undefined;
  const lastMessage = lastMessagePath ? readHead(lastMessagePath)?.trim() : undefined;
  const changes =
    (typeof budget.changes === 'string' && budget.changes.trim() ? budget.changes.trim() : null) ??
    (lastMessage ? lastMessage.slice(0, MAX_CHANGES_CHARS) : null) ??
    (promptPara ? promptPara.slice(0, MAX_CHANGES_CHARS) : null) ??
    `Changes prepared by agentpr run ${row.run_id} for ${row.owner}/${row.repo}`;
  return title ? { changes, title } : { changes };
}

export interface GatherOptions extends PromptInput {
  /** One run (any state) instead of every non-terminal run. */
  run_id?: string;
  /** Base for relative prompt_file paths; default the process cwd. */
  cwd?: string;
}

/** How long GitHub has been silent about a waiting run (null: never heard from), and the policy's limit. */
function githubQuiet(app: App, runId: string, state: RunState, nowMs: number): Pick<RunFacts, 'github_quiet_sec' | 'resync_after_sec'> {
  const resync = app.policy.github.resync_after_sec;
  if (state !== 'CI_WAIT' && state !== 'REVIEW_WAIT') return { github_quiet_sec: null, resync_after_sec: resync };
  const at = app.service.github.github(runId)?.last_observed_at;
  return { github_quiet_sec: at ? Math.max(0, Math.floor((nowMs - Date.parse(at)) / 1000)) : null, resync_after_sec: resync };
}

/** Facts for one run or for every non-terminal run, oldest update first. */
export function gatherFacts(app: App, opts: GatherOptions = {}): RunFacts[] {
  const db = app.db;
  const filter = opts.run_id ? 'r.run_id = ?' : `s.current_state NOT IN (${TERMINAL_LIST})`;
  const params = opts.run_id ? [opts.run_id] : [];
  const runs = db
    .prepare(
      `SELECT r.run_id, r.owner, r.repo, r.budget_json, r.workspace_dir, r.updated_at, s.current_state, s.last_error, r.pr_number
       FROM runs r JOIN run_states s ON s.run_id = r.run_id WHERE ${filter} ORDER BY r.updated_at, r.run_id`,
    )
    .all(...params) as RunRow[];
  if (runs.length === 0) return [];

  const attempts = new Map<string, Record<string, StepCounts>>();
  const attemptRows = db
    .prepare(
      `SELECT a.run_id, a.step, a.status, COUNT(*) AS n FROM step_attempts a JOIN run_states s ON s.run_id = a.run_id
       JOIN runs r ON r.run_id = a.run_id WHERE ${filter} GROUP BY a.run_id, a.step, a.status`,
    )
    .all(...params) as Array<{ run_id: string; step: string; status: string; n: number }>;
  for (const row of attemptRows) {
    const perRun = attempts.get(row.run_id) ?? {};
    const c = (perRun[row.step] ??= { total: 0, succeeded: 0, failed: 0, running: 0 });
    c.total += row.n;
    if (row.status === 'succeeded') c.succeeded += row.n;
    else if (row.status === 'running') c.running += row.n;
    else c.failed += row.n;
    attempts.set(row.run_id, perRun);
  }

  const latest = new Map<string, ArtifactRow>();
  const artifactRows = db
    .prepare(
      `SELECT a.artifact_id, a.run_id, a.artifact_type, a.uri, a.metadata_json, a.created_at FROM artifacts a
       WHERE a.artifact_id IN (
         SELECT MAX(x.artifact_id) FROM artifacts x JOIN run_states s ON s.run_id = x.run_id JOIN runs r ON r.run_id = x.run_id
         WHERE ${filter} AND x.artifact_type IN ('contract', 'run_digest', 'agent_last_message') GROUP BY x.run_id, x.artifact_type)`,
    )
    .all(...params) as ArtifactRow[];
  for (const a of artifactRows) latest.set(`${a.run_id}:${a.artifact_type}`, a);

  const lastCommand = db.prepare(`SELECT MAX(created_at) AS at FROM events WHERE run_id = ? AND event_type LIKE 'command.%'`);
  const nowMs = Date.now();
  const cwd = opts.cwd ?? process.cwd();
  const contractsDir = autoContractDir(app);

  return runs.map((row): RunFacts => {
    const state = RunStateSchema.parse(row.current_state);
    const budget = parseJsonObject(row.budget_json);
    const contract = latest.get(`${row.run_id}:contract`);
    const digestRow = latest.get(`${row.run_id}:run_digest`);
    const autoContract = join(contractsDir, `${row.run_id}.auto-contract.md`);

    let digest: DigestFacts | null = null;
    if (digestRow) {
      let summary = digestSummary(parseJsonObject(digestRow.metadata_json));
      if (summary.grade === null && summary.recommendation === null) {
        summary = digestSummary(readJsonFile(artifactPath(digestRow.uri)) ?? {});
      }
      const cmdAt = (lastCommand.get(row.run_id) as { at: string | null }).at;
      digest = { artifact_id: digestRow.artifact_id, ...summary, current: cmdAt === null || cmdAt <= digestRow.created_at };
    }

    // Only DISCOVERY looks for a discovery contract; the file-system checks stay off the hot path.
    let discoveryContract: string | null = null;
    if (state === 'DISCOVERY') {
      discoveryContract =
        contract?.uri ?? findWorkspaceContract(row.workspace_dir, row.run_id) ?? (existsSync(autoContract) ? autoContract : null);
    }

    const needsPrompt = state === 'DISCOVERY' || state === 'IMPLEMENTING' || state === 'ITERATING' || state === 'LOCAL_VALIDATING';
    const { prompt, problem } = needsPrompt ? resolvePrompt(opts, budget, cwd) : { prompt: null, problem: null };

    let finish: RunFacts['finish'] = null;
    if (state === 'LOCAL_VALIDATING') {
      const lastMessage = latest.get(`${row.run_id}:agent_last_message`);
      finish = finishArgs(row, budget, lastMessage ? artifactPath(lastMessage.uri) : null, prompt);
    }

    return {
      run_id: row.run_id,
      owner: row.owner,
      repo: row.repo,
      state,
      last_error: row.last_error,
      workspace_dir: row.workspace_dir,
      updated_at: row.updated_at,
      attempts: attempts.get(row.run_id) ?? {},
      contract_artifact: contract?.uri ?? null,
      discovery_contract: discoveryContract,
      auto_contract_path: autoContract,
      prompt,
      prompt_problem: problem,
      digest,
      prepare_args: state === 'DISCOVERY' ? prepareArgs(budget) : {},
      finish,
      max_retryable_attempts: agentPolicyFor(app.policy, row.owner, row.repo).max_retryable_attempts,
      ...githubQuiet(app, row.run_id, state, nowMs),
      pr_number: row.pr_number,
    };
  });
}
