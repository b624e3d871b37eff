import { z } from 'zod';
import { defineTool } from '../src/registry.js';
import { DELIVERY_SOURCE } from '../src/github/ledger.js';

export const cleanupWebhookDeliveries = defineTool({
  name: 'cleanup-webhook-deliveries',
  title: 'Clean up webhook delivery ledger',
  description:
    'Delete webhook delivery ledger rows older than keep_days (reservations still being processed are kept). A redelivery of a deleted delivery id would be processed again, so keep at least as long as GitHub may redeliver.',
  tier: 'write',
  annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
  input: z.object({
    keep_days: z.number().min(0).max(3650).default(30).describe('Keep deliveries received in the last N days (default 30)'),
    dry_run: z.boolean().default(false).describe('Only count what would be deleted'),
  }),
  output: z.object({ deleted: z.number().int(), before: z.string(), dry_run: z.boolean(), remaining: z.number().int() }),
  handler: (args, { app }) => {
    const before = new Date(Date.now() - args.keep_days * 86_400_000).toISOString();
    const count = (sql: string, ...p: unknown[]) => (app.db.prepare(sql).get(...p) as { n: number }).n;
    const deleted = args.dry_run
      ? count(`SELECT COUNT(*) AS n FROM webhook_deliveries WHERE received_at < ? AND outcome != 'reserved' AND source = ?`, before, DELIVERY_SOURCE)
      : app.service.cleanupDeliveries(before, DELIVERY_SOURCE);
    const remaining = count(`SELECT COUNT(*) AS n FROM webhook_deliveries`) - (args.dry_run ? deleted : 0);
    return {
      data: { deleted, before, dry_run: args.dry_run, remaining },
      text: `${args.dry_run ? 'would delete' : 'deleted'} ${deleted} webhook deliveries received before ${before}; ${remaining} remain`,
    };
  },
});
