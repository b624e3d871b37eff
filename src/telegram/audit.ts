import { appendFileSync, mkdirSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import { scrubSecrets } from '../logger.js';
import type { Tier } from '../registry.js';

export type AuditOutcome = 'ok' | 'error' | 'unauthorized' | 'rate_limited' | 'poll_error';

/** One JSONL line per update (and per failed poll). Never holds a secret. */
export interface AuditEntry {
  ts: string;
  update_id: number | null;
  chat_id: number | null;
  user_id: number | null;
  /** The chat's tier from the allowlists (null: not allowed). */
  chat_tier: Tier | null;
  /** command: a /command; text: natural language; other: no text; poll: a failed getUpdates. */
  kind: 'command' | 'text' | 'other' | 'poll';
  command: string | null;
  text: string | null;
  /** How the tool was chosen. */
  route: 'command' | 'rules' | 'llm' | null;
  tool: string | null;
  /** The tier of the tool called (from its definition). */
  tier: Tier | null;
  args: Record<string, unknown> | null;
  outcome: AuditOutcome;
  /** The registry's error code when the call failed (forbidden, invalid_input, conflict, ...). */
  code: string | null;
  error: string | null;
  duplicate: boolean;
  note: string | null;
}

const SECRET_KEY = /token|secret|password|passwd|api_?key|authorization/i;
const MAX_TEXT = 500;

export function redactArgs(args: Record<string, unknown> | null): Record<string, unknown> | null {
  if (!args) return null;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(args)) {
    // idempotency keys are ours (telegram:<bot>:<update>), not secrets.
    out[k] = SECRET_KEY.test(k) && k !== 'idempotency_key' ? '[REDACTED]' : typeof v === 'string' && v.length > MAX_TEXT ? `${v.slice(0, MAX_TEXT)}…` : v;
  }
  return out;
}

/** The audit file: `audit_log_file` from the policy; a relative path lives under the reports dir. */
export function resolveAuditPath(file: string, reportsDir: string): string {
  return isAbsolute(file) ? file : join(reportsDir, file);
}

export class AuditLog {
  private readonly secrets: string[];

  constructor(
    readonly path: string,
    secrets: Array<string | undefined> = [],
  ) {
    mkdirSync(dirname(path), { recursive: true });
    this.secrets = secrets.filter((s): s is string => typeof s === 'string' && s.length >= 6);
  }

  scrub(text: string): string {
    let out = scrubSecrets(text);
    for (const s of this.secrets) out = out.split(s).join('[REDACTED]');
    return out;
  }

  /** Appends one line synchronously: lines stay in update order and survive a crash right after. */
  write(entry: AuditEntry): void {
    const clean: AuditEntry = {
      ...entry,
      text: entry.text === null ? null : this.scrub(entry.text.length > MAX_TEXT ? `${entry.text.slice(0, MAX_TEXT)}…` : entry.text),
      error: entry.error === null ? null : this.scrub(entry.error),
      note: entry.note === null ? null : this.scrub(entry.note),
      args: redactArgs(entry.args),
    };
    appendFileSync(this.path, `${this.scrub(JSON.stringify(clean))}\n`);
  }
}
