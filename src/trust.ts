import { realpathSync } from 'node:fs';
import { dirname, isAbsolute, relative, resolve, sep } from 'node:path';
import { z } from 'zod';
import { UserInputError } from './core/errors.js';

/**
 * Who may say what (docs/security.md). The CLI is a person at the terminal: the operator. MCP
 * (stdio, or HTTP with the token) acts for the operator but is driven by an assistant model.
 * Telegram, the manager model and the GitHub webhook are remote: what they send is shaped by
 * people and programs the operator does not control.
 */
export type Trust = 'operator' | 'assistant' | 'remote';

/** Directories no path input from a non-operator entry may name, whatever the roots say. */
export const NEVER_ROOTS = ['/proc', '/sys', '/dev'] as const;

/** Refusal text: the roots allowed, so the caller knows what to do. */
function rootsText(roots: readonly string[]): string {
  return roots.length ? roots.join(', ') : '(none)';
}

function inside(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel === '' || (!rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel));
}

/** realpath of the path, or of its nearest existing parent plus the rest (a file not written yet). */
function realOrParent(path: string): { real: string; exists: boolean } {
  try {
    return { real: realpathSync(path), exists: true };
  } catch {
    const parent = dirname(path);
    if (parent === path) return { real: path, exists: false };
    const p = realOrParent(parent);
    return { real: resolve(p.real, relative(parent, path)), exists: false };
  }
}

export interface PathCheckOptions {
  /** The field name, for the message. */
  field: string;
  /** Where relative paths resolve from (default the process cwd). */
  cwd?: string;
  /** Refuse a path that does not exist (default true: every path input is read). */
  mustExist?: boolean;
}

/**
 * Resolves a path input from a non-operator entry: symlinks first, then it must lie below one of
 * the allowed roots and never under /proc, /sys or /dev. Returns the real path, so the handler
 * reads exactly what was checked.
 */
export function resolveAllowedPath(input: string, roots: readonly string[], opts: PathCheckOptions): string {
  const abs = resolve(opts.cwd ?? process.cwd(), input);
  const { real, exists } = realOrParent(abs);
  for (const never of NEVER_ROOTS) {
    if (inside(never, real) || inside(never, abs)) {
      throw new UserInputError(`${opts.field}: ${input} is under ${never}, which no path input may name; give a file below ${rootsText(roots)}`);
    }
  }
  const realRoots = roots.map((r) => realOrParent(resolve(r)).real);
  if (!realRoots.some((r) => inside(r, real))) {
    const via = real === abs ? '' : ` (it resolves to ${real})`;
    throw new UserInputError(
      `${opts.field}: ${input}${via} is outside the allowed roots ${rootsText(realRoots)}; from this entry a path must lie below the agentpr home, the workspace root or a file_roots entry of the policy (security.file_roots)`,
    );
  }
  if (opts.mustExist !== false && !exists) {
    throw new UserInputError(`${opts.field}: ${input} does not exist; give the path of an existing file below ${rootsText(realRoots)}`);
  }
  return real;
}

/** A value that ends up as one argv element of git or codex: never an option. */
export function notAnOption(schema: z.ZodString, what: string): z.ZodString {
  return schema
    .refine((v) => !v.startsWith('-'), `${what} must not start with '-' (it would be read as an option)`)
    .refine((v) => !/[\0\r\n]/.test(v), `${what} must be one line without NUL characters`);
}
