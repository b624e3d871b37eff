import { randomBytes } from 'node:crypto';

/** `run_` + 12 hex (SPEC §1). */
export function newRunId(): string {
  return `run_${randomBytes(6).toString('hex')}`;
}

export const RUN_ID_PATTERN = /^run_[0-9a-f]{12}$/;

export function nowIso(): string {
  return new Date().toISOString();
}
