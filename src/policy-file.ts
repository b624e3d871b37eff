import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { ConfigurationError } from './core/errors.js';
import { PolicySchema, agentPolicyFor, type Policy, type RunAgentStepPolicy } from './policy.js';

/**
 * Loading the manager policy. The zod schema in `src/policy.ts` holds the defaults; a
 * file only names what it changes. Merge rule: objects merge key by key at every level, arrays and
 * scalars in the file replace the built-in value, `repo_overrides` keys are lower-cased.
 */

let packageRootCache: string | undefined;

/**
 * The directory holding this package's package.json. Found by walking up from this module, so
 * it is the same from `src/` (tsx, vitest) and `dist/src/` (built), and never depends on the cwd.
 */
export function packageRoot(): string {
  if (packageRootCache) return packageRootCache;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        const name = (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: unknown }).name;
        if (name === 'agentpr-mcp') return (packageRootCache = dir);
      } catch {
        // not ours; keep walking
      }
    }
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`cannot find the agentpr-mcp package root above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
}

/** policies/manager_policy.json of this package. */
export function defaultPolicyFile(): string {
  return join(packageRoot(), 'policies', 'manager_policy.json');
}

export interface LoadedPolicy {
  policy: Policy;
  /** The file read, or undefined when only built-ins apply (the project file is absent). */
  source?: string;
}

/**
 * Read, merge and validate the policy. `file` is --policy-file / AGENTPR_POLICY_FILE (relative to
 * the cwd); without it the project's policies/manager_policy.json is used when present. Throws
 * ConfigurationError naming the file, the key path and the allowed values.
 */
export function loadPolicyWithSource(file?: string): LoadedPolicy {
  let path: string;
  if (file !== undefined && file !== '') {
    path = resolve(file);
    if (!existsSync(path)) {
      throw new ConfigurationError(
        `policy file ${path} does not exist (from --policy-file / AGENTPR_POLICY_FILE); fix the path or unset it to use the project default ${defaultPolicyFile()}`,
      );
    }
  } else {
    path = defaultPolicyFile();
    if (!existsSync(path)) return { policy: PolicySchema.parse({}) };
  }
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigurationError(`cannot read policy file ${path}: ${(err as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ConfigurationError(`policy file ${path} is not valid JSON (${(err as Error).message}); fix the syntax`);
  }
  return { policy: parsePolicy(raw, path), source: path };
}

export function loadPolicy(file?: string): Policy {
  return loadPolicyWithSource(file).policy;
}

/** Validate an already-parsed policy object (what a file holds); `where` names it in errors. */
export function parsePolicy(raw: unknown, where = 'policy'): Policy {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigurationError(`invalid policy in ${where}: the top level must be a JSON object with keys ${keysOf(PolicySchema).join(', ')}`);
  }
  const normalized = normalizeRepoOverrides(raw as Record<string, unknown>, where);
  const parsed = PolicySchema.safeParse(normalized);
  if (!parsed.success) {
    throw new ConfigurationError(`invalid policy in ${where}: ${parsed.error.issues.map((i) => describeIssue(i, normalized)).join('; ')}`);
  }
  const policy = parsed.data;
  checkRegexes(policy.run_agent_step.known_test_failure_allowlist, 'run_agent_step.known_test_failure_allowlist', where);
  for (const [key, o] of Object.entries(policy.run_agent_step.repo_overrides)) {
    if (o.known_test_failure_allowlist) checkRegexes(o.known_test_failure_allowlist, `run_agent_step.repo_overrides.${key}.known_test_failure_allowlist`, where);
  }
  return policy;
}

/** The effective run_agent_step for one repository (case-insensitive owner/repo). */
export function effectiveAgentPolicy(policy: Policy, owner?: string, repo?: string): RunAgentStepPolicy {
  return agentPolicyFor(policy, owner, repo);
}

function normalizeRepoOverrides(raw: Record<string, unknown>, where: string): Record<string, unknown> {
  const ras = raw.run_agent_step;
  if (!ras || typeof ras !== 'object' || Array.isArray(ras)) return raw;
  const overrides = (ras as Record<string, unknown>).repo_overrides;
  if (!overrides || typeof overrides !== 'object' || Array.isArray(overrides)) return raw;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(overrides)) {
    const key = k.trim().toLowerCase();
    if (key in out) {
      throw new ConfigurationError(
        `invalid policy in ${where}: run_agent_step.repo_overrides has two entries for '${key}' (keys are compared lower-case); merge them into one`,
      );
    }
    out[key] = v;
  }
  return { ...raw, run_agent_step: { ...(ras as Record<string, unknown>), repo_overrides: out } };
}

function checkRegexes(patterns: string[], path: string, where: string): void {
  patterns.forEach((p, i) => {
    try {
      new RegExp(p);
    } catch (err) {
      throw new ConfigurationError(`invalid policy in ${where}: ${path}.${i}: '${p}' is not a valid regular expression (${(err as Error).message})`);
    }
  });
}

// ---- error messages -----------------------------------------------------------------------------

type AnySchema = z.ZodType;

function unwrap(s: AnySchema): AnySchema {
  let cur: AnySchema = s;
  for (let i = 0; i < 10; i++) {
    if (cur instanceof z.ZodDefault || cur instanceof z.ZodOptional || cur instanceof z.ZodNullable) cur = cur.unwrap() as AnySchema;
    else break;
  }
  return cur;
}

/** The schema at a key path inside PolicySchema (record keys step into the record's value). */
function schemaAt(path: readonly PropertyKey[]): AnySchema | undefined {
  let cur: AnySchema | undefined = PolicySchema;
  for (const seg of path) {
    if (!cur) return undefined;
    const s = unwrap(cur);
    if (s instanceof z.ZodObject) cur = (s.shape as Record<string, AnySchema>)[String(seg)];
    else if (s instanceof z.ZodRecord) cur = s.valueType as AnySchema;
    else if (s instanceof z.ZodArray) cur = s.element as AnySchema;
    else return undefined;
  }
  return cur;
}

function keysOf(s: AnySchema | undefined): string[] {
  const u = s ? unwrap(s) : undefined;
  return u instanceof z.ZodObject ? Object.keys(u.shape) : [];
}

/** What a value at this schema may be, in words. */
function allowedText(s: AnySchema | undefined): string {
  if (!s) return 'see policies/manager_policy.json';
  const u = unwrap(s);
  if (u instanceof z.ZodEnum) return `one of ${(u.options as string[]).join(', ')}`;
  if (u instanceof z.ZodNumber) {
    const min = u.minValue;
    const max = u.maxValue;
    const kind = u.format === 'safeint' || u.isInt ? 'an integer' : 'a number';
    if (min !== null && min !== -Infinity && max !== null && max !== Infinity && Math.abs(max) < Number.MAX_SAFE_INTEGER) return `${kind} from ${min} to ${max}`;
    if (min !== null && min !== -Infinity && Math.abs(min) < Number.MAX_SAFE_INTEGER) return `${kind} >= ${min}`;
    return kind;
  }
  if (u instanceof z.ZodString) return 'a non-empty string';
  if (u instanceof z.ZodBoolean) return 'true or false';
  if (u instanceof z.ZodArray) return `a list (${allowedText(u.element as AnySchema)} each)`;
  if (u instanceof z.ZodRecord) return 'an object keyed by lower-case owner/repo';
  if (u instanceof z.ZodObject) return `an object with keys ${Object.keys(u.shape).join(', ')}`;
  return 'see policies/manager_policy.json';
}

function valueAt(raw: unknown, path: readonly PropertyKey[]): unknown {
  let cur: unknown = raw;
  for (const seg of path) {
    if (!cur || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[String(seg)];
  }
  return cur;
}

function describeIssue(issue: z.core.$ZodIssue, raw: unknown): string {
  const path = issue.path.map(String).join('.');
  const at = path || '(top level)';
  const got = JSON.stringify(valueAt(raw, issue.path)) ?? 'nothing';
  const shown = got.length > 60 ? `${got.slice(0, 57)}...` : got;
  switch (issue.code) {
    case 'unrecognized_keys': {
      const allowed = keysOf(schemaAt(issue.path));
      return issue.keys
        .map((k) => `${path ? `${path}.` : ''}${k}: unknown key; allowed keys${path ? ` in ${path}` : ''}: ${allowed.join(', ')}`)
        .join('; ');
    }
    case 'invalid_key':
      return `${at}: '${String(issue.path[issue.path.length - 1])}' is not an owner/repo key; use lower-case owner/repo, e.g. octocat/hello-world`;
    case 'invalid_value':
      return `${at}: invalid value ${shown}; allowed: ${issue.values.map((v) => String(v)).join(', ')}`;
    default:
      return `${at}: ${issue.message.replace(/^Invalid input: /, '')} (got ${shown}); allowed: ${allowedText(schemaAt(issue.path))}`;
  }
}
