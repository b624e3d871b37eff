import type { z } from 'zod';

/** The value at `path` inside `input`, for quoting in a message (undefined when absent). */
function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let cur = input;
  for (const key of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[key];
  }
  return cur;
}

function quote(value: unknown): string {
  if (value === undefined) return 'nothing';
  const text = typeof value === 'string' ? `'${value}'` : JSON.stringify(value) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

/** The allowed values of an enum or literal issue, or undefined for other issues. */
function allowedValues(issue: z.core.$ZodIssue): unknown[] | undefined {
  if (issue.code === 'invalid_value') return [...issue.values];
  if (issue.code === 'invalid_union') {
    // A value-or-list field (list-runs' state): the branch that lists allowed values says most.
    for (const branch of issue.errors) for (const inner of branch) {
      const values = allowedValues(inner);
      if (values) return values;
    }
  }
  return undefined;
}

/** `<field>: <what was wrong>, got <value>` per issue, joined with '; '; enums list their allowed values. */
export function describeIssues(err: z.ZodError, input?: unknown, prefix: readonly PropertyKey[] = []): string {
  const parts = err.issues.map((issue) => {
    const full = [...prefix, ...issue.path];
    const path = full.length ? full.join('.') : '(input)';
    if (issue.code === 'unrecognized_keys') {
      return `${path === '(input)' ? '' : `${path}: `}unknown field${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `'${k}'`).join(', ')}`;
    }
    const value = input === undefined ? undefined : valueAt(input, issue.path);
    if (issue.code === 'invalid_type' && (input === undefined ? issue.message.includes('received undefined') : value === undefined)) {
      return `${path}: required (${issue.expected})`;
    }
    const allowed = allowedValues(issue);
    if (allowed) {
      return `${path}: ${quote(value)} is not allowed; allowed: ${allowed.map((v) => String(v)).join(', ')}`;
    }
    if (input === undefined) return `${path}: ${issue.message}`;
    return `${path}: ${issue.message.replace(/^Invalid input: /, '')}, got ${quote(value)}`;
  });
  return parts.join('; ');
}
