import { z } from 'zod';
import { defineTool, type ToolAnnotations } from '../src/registry.js';
import { ApplyResultSchema, RunIdSchema, type ApplyResult } from '../src/core/models.js';
import { defaultIdempotencyKey, type EventType } from '../src/core/events.js';

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
      const payload = opts.payload ? opts.payload(rest as z.output<z.ZodObject<S>>) : rest;
      const key =
        idempotency_key ??
        defaultIdempotencyKey(opts.eventType, run_id, { ...payload, after_event_id: app.service.lastEventId(run_id) });
      const r = app.service.applyEvent({ run_id, event_type: opts.eventType, payload, idempotency_key: key });
      return { data: r, text: describeApply(r) };
    },
  });
}
