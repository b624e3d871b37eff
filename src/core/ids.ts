import { randomBytes } from 'node:crypto';

/** `run_` + 12 hex. */
export function newRunId(): string {
  return `run_${randomBytes(6).toString('hex')}`;
}

/**
 * A run id: `run_` + 12 hex when agentpr picks it, or a name the operator chose
 * (`create-run --run-id calib_mem0_r1`): lower-case letters, digits, `_`, `.`, `-`, starting with a
 * letter or digit, at most 64 characters. Never a path separator, never `.` or `..`.
 */
export const RUN_ID_PATTERN = /^[a-z0-9][a-z0-9_.-]{0,63}$/;

export function nowIso(): string {
  return new Date().toISOString();
}
