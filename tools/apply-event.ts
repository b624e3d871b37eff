import { z } from 'zod';
import { ENTRY_TRUST, allowedFileRoots, defineTool } from '../src/registry.js';
import { resolveAllowedPath } from '../src/trust.js';
import { ApplyResultSchema, RunIdSchema } from '../src/core/models.js';
import { EVENT_TYPES, type EventType } from '../src/core/events.js';
import { UserInputError } from '../src/core/errors.js';
import { describeApply, IdempotencyKeySchema } from './_event-tool.js';

const APPLICABLE_EVENT_TYPES = EVENT_TYPES.filter((t) => t !== 'command.run.create') as [EventType, ...EventType[]];

export const applyEvent = defineTool({
  name: 'apply-event',
  title: 'Apply event',
  description: `Apply any run event to a run in one transaction. Without idempotency_key the default key <event_type>:<run_id>:<sha1(canonical payload)[:12]> is used, so the same event and payload twice is applied once. Event types: ${APPLICABLE_EVENT_TYPES.join(', ')}.`,
  tier: 'write',
  annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
  input: z.object({
    run_id: RunIdSchema,
    event_type: z.enum(APPLICABLE_EVENT_TYPES).describe('Event type, e.g. command.pause or worker.push.completed (create-run writes command.run.create)'),
    payload: z.record(z.string().max(128), z.unknown()).default({}).describe('Event payload; the named fields of each type are checked (see the README section on events)'),
    idempotency_key: IdempotencyKeySchema,
  }),
  output: ApplyResultSchema,
  handler: (args, { app, entry }) => {
    // The contract is later copied into the worker's clone: the same roots as mark-plan-ready.
    if (args.event_type === 'worker.discovery.completed' && typeof args.payload.contract_path === 'string' && ENTRY_TRUST[entry] !== 'operator') {
      args.payload.contract_path = resolveAllowedPath(args.payload.contract_path, allowedFileRoots(app), { field: 'payload.contract_path' });
    }
    const payloadBytes = Buffer.byteLength(JSON.stringify(args.payload));
    if (payloadBytes > 64 * 1024) {
      throw new UserInputError(`payload is ${payloadBytes} bytes; the limit is 65536 bytes`);
    }
    const r = app.service.applyEvent(args);
    return { data: r, text: describeApply(r) };
  },
});
