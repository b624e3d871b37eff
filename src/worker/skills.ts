import { createHash } from 'node:crypto';
import { copyFileSync, cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { basename, join, relative, resolve } from 'node:path';
import { z } from 'zod';
import { packageRoot } from '../policy-file.js';
import type { RunAgentStepPolicy } from '../policy.js';
import type { RunView } from '../core/models.js';
import { RUNTIME_DIR_NAME, runtimeDir } from './env.js';

/**
 * Skills mode (`skills_mode: agentpr`): the worker gets codex skills from the project's `skills/`
 * (installed into `$CODEX_HOME/skills`), a prompt envelope naming the stage's skills, a task packet
 * and the contract copied under `.agentpr_runtime/contracts/`.
 */
export const TASK_PACKET_SCHEMA = 'agentpr.task_packet.v1';

/** Which skills each worker stage uses, in order. */
export const STAGE_SKILLS: Readonly<Record<string, readonly string[]>> = {
  DISCOVERY: ['agentpr-discovery'],
  IMPLEMENTING: ['agentpr-implement-and-validate'],
  LOCAL_VALIDATING: ['agentpr-implement-and-validate'],
  ITERATING: ['agentpr-fix-ci', 'agentpr-address-comments', 'agentpr-iterate-on-feedback', 'agentpr-implement-and-validate'],
};

export function projectSkillsDir(): string {
  return join(packageRoot(), 'skills');
}

export function codexHome(env: NodeJS.ProcessEnv = process.env): string {
  return resolve(env.CODEX_HOME?.trim() || join(homedir(), '.codex'));
}

export function installedSkillsDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(codexHome(env), 'skills');
}

export interface SkillInfo {
  name: string;
  description: string;
  dir: string;
  /** sha1 over the folder's files (relative path + bytes), to tell an outdated install. */
  digest: string;
}

function frontMatter(text: string): Record<string, string> {
  const m = /^---\r?\n([\s\S]*?)\r?\n---/.exec(text);
  if (!m) return {};
  const out: Record<string, string> = {};
  for (const line of m[1]!.split(/\r?\n/)) {
    const kv = /^([A-Za-z_][\w-]*):\s*(.*)$/.exec(line);
    if (kv) out[kv[1]!] = kv[2]!.replace(/^["']|["']$/g, '');
  }
  return out;
}

function filesUnder(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) out.push(p);
    }
  };
  walk(dir);
  return out;
}

function dirDigest(dir: string): string {
  const h = createHash('sha1');
  for (const f of filesUnder(dir)) {
    h.update(relative(dir, f));
    h.update('\0');
    h.update(readFileSync(f));
    h.update('\0');
  }
  return h.digest('hex');
}

/** Skill folders (with a SKILL.md) in a directory, sorted by name. */
export function readSkills(dir: string): SkillInfo[] {
  if (!existsSync(dir)) return [];
  const out: SkillInfo[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (!e.isDirectory()) continue;
    const skillDir = join(dir, e.name);
    const md = join(skillDir, 'SKILL.md');
    if (!existsSync(md)) continue;
    const fm = frontMatter(readFileSync(md, 'utf8'));
    out.push({ name: fm.name || e.name, description: fm.description ?? '', dir: skillDir, digest: dirDigest(skillDir) });
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : 1));
}

/** The skills a stage needs: the stage's plan, then the policy's required_skills. */
export function stageSkillPlan(stage: string, policy: Pick<RunAgentStepPolicy, 'required_skills'>): string[] {
  return [...new Set([...(STAGE_SKILLS[stage] ?? []), ...policy.required_skills])];
}

export interface SkillStatus {
  name: string;
  description: string;
  in_project: boolean;
  installed: boolean;
  /** Installed, but its files differ from the project's copy (run install-skills). */
  outdated: boolean;
  installed_path: string;
  stages: string[];
}

export interface SkillsStatusReport {
  project_dir: string;
  codex_home: string;
  installed_dir: string;
  skills: SkillStatus[];
  /** Per stage: the plan and which of it is missing from $CODEX_HOME/skills. */
  stages: Array<{ stage: string; plan: string[]; missing: string[] }>;
  ready: boolean;
}

export function skillsStatus(policy: Pick<RunAgentStepPolicy, 'required_skills'>, env: NodeJS.ProcessEnv = process.env): SkillsStatusReport {
  const projectDir = projectSkillsDir();
  const installedDir = installedSkillsDir(env);
  const project = readSkills(projectDir);
  const installed = new Map(readSkills(installedDir).map((s) => [s.name, s]));
  const names = new Set<string>([...project.map((s) => s.name), ...policy.required_skills]);
  const stagesOf = (name: string) => Object.keys(STAGE_SKILLS).filter((st) => stageSkillPlan(st, policy).includes(name));
  const skills: SkillStatus[] = [...names].sort().map((name) => {
    const p = project.find((s) => s.name === name);
    const i = installed.get(name);
    return {
      name,
      description: p?.description ?? i?.description ?? '',
      in_project: Boolean(p),
      installed: Boolean(i),
      outdated: Boolean(p && i && p.digest !== i.digest),
      installed_path: i?.dir ?? join(installedDir, name),
      stages: stagesOf(name),
    };
  });
  const stages = Object.keys(STAGE_SKILLS).map((stage) => {
    const plan = stageSkillPlan(stage, policy);
    return { stage, plan, missing: plan.filter((n) => !installed.has(n)) };
  });
  return {
    project_dir: projectDir,
    codex_home: codexHome(env),
    installed_dir: installedDir,
    skills,
    stages,
    ready: stages.every((s) => s.missing.length === 0),
  };
}

export interface InstallResult {
  installed_dir: string;
  skills: Array<{ name: string; action: 'installed' | 'updated' | 'unchanged'; path: string }>;
}

/** Copies every project skill into $CODEX_HOME/skills/<name>, replacing an outdated copy. */
export function installSkills(env: NodeJS.ProcessEnv = process.env, opts: { only?: string[] } = {}): InstallResult {
  const target = installedSkillsDir(env);
  mkdirSync(target, { recursive: true });
  const project = readSkills(projectSkillsDir()).filter((s) => !opts.only?.length || opts.only.includes(s.name));
  const results: InstallResult['skills'] = [];
  for (const s of project) {
    const dest = join(target, s.name);
    let action: 'installed' | 'updated' | 'unchanged' = 'installed';
    if (existsSync(dest)) {
      if (existsSync(join(dest, 'SKILL.md')) && dirDigest(dest) === s.digest) action = 'unchanged';
      else {
        action = 'updated';
        rmSync(dest, { recursive: true, force: true });
      }
    }
    if (action !== 'unchanged') cpSync(s.dir, dest, { recursive: true });
    results.push({ name: s.name, action, path: dest });
  }
  return { installed_dir: target, skills: results };
}

/** Names of the plan that are not installed in $CODEX_HOME/skills. */
export function missingSkills(plan: readonly string[], env: NodeJS.ProcessEnv = process.env): string[] {
  const dir = installedSkillsDir(env);
  return plan.filter((n) => !existsSync(join(dir, n, 'SKILL.md')));
}

// ---- task packet and envelope ---------------------------------------------------------------------

export const TaskPacketSchema = z.object({
  schema: z.literal(TASK_PACKET_SCHEMA),
  created_at: z.string(),
  run: z.object({
    run_id: z.string(),
    owner: z.string(),
    repo: z.string(),
    state: z.string(),
    prompt_version: z.string(),
    workspace_dir: z.string(),
  }),
  stage: z.string(),
  attempt_no: z.number().int(),
  skills: z.object({
    mode: z.literal('agentpr'),
    installed_dir: z.string(),
    plan: z.array(z.object({ name: z.string(), path: z.string() })),
  }),
  contract: z.object({ source: z.string(), path: z.string(), relative_path: z.string() }).nullable(),
  limits: z.object({
    sandbox: z.string(),
    max_agent_seconds: z.number().int(),
    max_changed_files: z.number().int(),
    max_added_lines: z.number().int(),
    min_test_commands: z.number().int(),
    max_retryable_attempts: z.number().int(),
  }),
  paths: z.object({ runtime_dir: z.string(), task_packet: z.string(), last_message: z.string() }),
  /** ITERATING: the iteration packet copied into the runtime dir (failed checks, logs, review comments; untrusted text). */
  iteration_packet: z.object({ markdown: z.string(), json: z.string() }).nullable().optional(),
});
export type TaskPacket = z.infer<typeof TaskPacketSchema>;

/**
 * Copies the run's contract into `<repo>/.agentpr_runtime/contracts/` so the worker can read it
 * inside its sandbox. Returns undefined when the run has no readable contract.
 */
export function materializeContract(repoDir: string, contractUri: string | undefined): TaskPacket['contract'] {
  if (!contractUri) return null;
  // A contract given as a web address is recorded, not fetched; only a path or file:// names a file here.
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(contractUri) && !/^file:\/\//i.test(contractUri)) return null;
  const src = resolve(contractUri.replace(/^file:\/\//, ''));
  if (!existsSync(src) || !statSync(src).isFile()) return null;
  const dir = join(runtimeDir(repoDir), 'contracts');
  mkdirSync(dir, { recursive: true });
  const dest = join(dir, basename(src));
  if (resolve(dest) !== src) copyFileSync(src, dest);
  return { source: src, path: dest, relative_path: relative(resolve(repoDir), dest) };
}

export function buildTaskPacket(opts: {
  run: RunView;
  stage: string;
  attemptNo: number;
  plan: string[];
  policy: RunAgentStepPolicy;
  sandbox: string;
  maxAgentSeconds: number;
  contract: TaskPacket['contract'];
  env?: NodeJS.ProcessEnv;
  iterationPacket?: { markdown: string; json: string } | null;
}): TaskPacket {
  const repo = resolve(opts.run.workspace_dir);
  const rt = runtimeDir(repo);
  const installed = installedSkillsDir(opts.env);
  return {
    schema: TASK_PACKET_SCHEMA,
    created_at: new Date().toISOString(),
    run: {
      run_id: opts.run.run_id,
      owner: opts.run.owner,
      repo: opts.run.repo,
      state: opts.run.state,
      prompt_version: opts.run.prompt_version,
      workspace_dir: repo,
    },
    stage: opts.stage,
    attempt_no: opts.attemptNo,
    skills: { mode: 'agentpr', installed_dir: installed, plan: opts.plan.map((name) => ({ name, path: join(installed, name, 'SKILL.md') })) },
    contract: opts.contract,
    limits: {
      sandbox: opts.sandbox,
      max_agent_seconds: opts.maxAgentSeconds,
      max_changed_files: opts.policy.max_changed_files,
      max_added_lines: opts.policy.max_added_lines,
      min_test_commands: opts.policy.min_test_commands,
      max_retryable_attempts: opts.policy.max_retryable_attempts,
    },
    paths: {
      runtime_dir: rt,
      task_packet: join(rt, 'task_packet.json'),
      last_message: join(rt, 'codex_last_message.txt'),
    },
    ...(opts.iterationPacket ? { iteration_packet: opts.iterationPacket } : {}),
  };
}

/** Writes the packet where the worker reads it and returns that path. */
export function writeTaskPacket(packet: TaskPacket): string {
  mkdirSync(packet.paths.runtime_dir, { recursive: true });
  writeFileSync(packet.paths.task_packet, `${JSON.stringify(packet, null, 2)}\n`);
  return packet.paths.task_packet;
}

/** The skills-mode prompt envelope: which skills to use, where the packet and contract are, then the task. */
export function skillsEnvelope(packet: TaskPacket, prompt: string): string {
  const lines = [
    `AGENTPR SKILLS MODE — stage ${packet.stage}, attempt ${packet.attempt_no}`,
    `Use these skills, in this order: ${packet.skills.plan.map((s) => `$${s.name}`).join(', ')}.`,
    `Task packet (run, stage, limits): ${RUNTIME_DIR_NAME}/task_packet.json`,
    packet.contract ? `Contract: ${packet.contract.relative_path}` : 'Contract: none yet (this stage writes the plan).',
    `Limits: at most ${packet.limits.max_changed_files || 'any number of'} changed files and ${packet.limits.max_added_lines || 'any number of'} added lines; at least ${packet.limits.min_test_commands} test command(s).`,
    '',
    'TASK',
    prompt,
  ];
  return lines.join('\n');
}
