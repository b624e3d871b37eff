import { z } from 'zod';
import { defineTool, type ToolAnnotations } from '../src/registry.js';
import { ApplyResultSchema, RunIdSchema, type ApplyResult } from '../src/core/models.js';
import { canonicalJson, defaultIdempotencyKey, type EventType } from '../src/core/events.js';
import type { App } from '../src/app.js';

export const IdempotencyKeySchema = z
  .string()
  .min(1)
  .max(512)
  .optional()
  .describe('Optional idempotency key; a repeat with the same key changes nothing and answers duplicate');

export function describeApply(r: ApplyResult): string {
  if (r.duplicate) return `${r.run_id}: duplicate ${r.event_type} (already applied as event ${r.event_id}); state stays ${r.state}`;
  if (r.outcome === 'ignored') return `${r.run_id}: ${r.event_type} recorded but ignored (${r.note ?? 'does not fit the state'}); state stays ${r.state}`;
  if (r.outcome === 'noop') return `${r.run_id}: ${r.event_type} recorded; state stays ${r.state}${r.note ? ` (${r.note})` : ''}`;
  return `${r.run_id}: ${r.from_state} -> ${r.state} (${r.event_type})${r.last_error ? `; last error: ${r.last_error}` : ''}${r.note ? `; ${r.note}` : ''}`;
}

/**
 * The default key of a named command: the payload hashed with the id of the run's latest event.
 * When that latest event is this same command with the same payload (a blind resend, nothing
 * happened in between), its key is reused, so the resend answers duplicate and adds no event.
 */
function commandKey(app: App, eventType: EventType, runId: string, payload: Record<string, unknown>): string {
  const last = app.service.lastEvent(runId);
  if (last && last.event_type === eventType && canonicalJson(last.payload) === canonicalJson(payload)) return last.idempotency_key;
  return defaultIdempotencyKey(eventType, runId, { ...payload, after_event_id: last?.event_id ?? 0 });
}

/**
 * A command tool is a named event: it applies `eventType` with the payload built from its
 * arguments. Without an explicit key, the key hashes the payload together with the id of the
 * run's latest event, so a blind resend is a duplicate while the same command issued again after
 * the run moved on (pause, resume, pause) applies again.
 */
export function eventTool<S extends z.ZodRawShape>(opts: {
  name: string;
  title: string;
  description: string;
  eventType: EventType;
  fields: S;
  annotations?: ToolAnnotations;
  payload?: (args: z.output<z.ZodObject<S>>) => Record<string, unknown>;
  /** Refuses (throws UserInputError) before anything is written; may rewrite the payload. */
  check?: (payload: Record<string, unknown>, run: { run_id: string; workspace_dir: string }) => Record<string, unknown>;
}) {
  const input = z.object({ run_id: RunIdSchema, ...opts.fields, idempotency_key: IdempotencyKeySchema });
  return defineTool({
    name: opts.name,
    title: opts.title,
    description: opts.description,
    tier: 'write',
    annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: false, ...opts.annotations },
    input,
    output: ApplyResultSchema,
    handler: (args, { app }) => {
      const { run_id, idempotency_key, ...rest } = args as { run_id: string; idempotency_key?: string } & Record<string, unknown>;
      let payload = opts.payload ? opts.payload(rest as z.output<z.ZodObject<S>>) : rest;
      if (opts.check) payload = opts.check(payload, app.service.getRun(run_id));
      const key = idempotency_key ?? commandKey(app, opts.eventType, run_id, payload);
      const r = app.service.applyEvent({ run_id, event_type: opts.eventType, payload, idempotency_key: key });
      return { data: r, text: describeApply(r) };
    },
  });
}
