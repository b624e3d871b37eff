import { z } from 'zod';
import { defineTool } from '../src/registry.js';
import { AuditLineSchema, summarizeAudit, webhookAuditPath } from '../src/github/audit.js';
import { DELIVERY_SOURCE } from '../src/github/ledger.js';

const counts = z.record(z.string(), z.number().int());

export const webhookAuditSummary = defineTool({
  name: 'webhook-audit-summary',
  title: 'Webhook audit summary',
  description:
    'Summarize the GitHub webhook audit log over the last N hours: requests by outcome, HTTP status and event, deliveries processed/ignored, the most recent errors, and the delivery ledger by outcome.',
  tier: 'read',
  annotations: { readOnlyHint: true, openWorldHint: false },
  input: z.object({
    hours: z.number().positive().max(24 * 365).default(24).describe('Window in hours (default 24)'),
    last_errors: z.number().int().min(0).max(100).default(10).describe('How many recent error lines to include'),
  }),
  output: z.object({
    file: z.string(),
    window_hours: z.number(),
    since: z.string(),
    total: z.number().int(),
    by_outcome: counts,
    by_status_code: counts,
    by_event: counts,
    processed: z.number().int(),
    ignored: z.number().int(),
    last_errors: z.array(AuditLineSchema),
    unreadable_lines: z.number().int(),
    ledger_by_outcome: counts,
  }),
  handler: async (args, { app }) => {
    const s = await summarizeAudit(webhookAuditPath(app), { hours: args.hours, lastErrors: args.last_errors });
    const ledger = app.service.deliveryCounts(s.since, DELIVERY_SOURCE);
    const fmt = (r: Record<string, number>) =>
      Object.entries(r)
        .sort((a, b) => b[1] - a[1])
        .map(([k, v]) => `${k} ${v}`)
        .join(', ') || 'none';
    const text = [
      `webhook requests in the last ${args.hours} h: ${s.total} (${s.file})`,
      `by outcome: ${fmt(s.by_outcome)}`,
      `by status: ${fmt(s.by_status_code)}`,
      `by event: ${fmt(s.by_event)}`,
      `tool calls applied ${s.processed}, ignored ${s.ignored}; ledger: ${fmt(ledger)}`,
      ...(s.last_errors.length ? ['last errors:', ...s.last_errors.map((e) => `  ${e.ts} ${e.status_code} ${e.outcome} ${e.event ?? '-'} ${e.delivery ?? '-'}: ${e.error}`)] : []),
      ...(s.unreadable_lines ? [`${s.unreadable_lines} unreadable lines skipped`] : []),
    ].join('\n');
    return { data: { ...s, ledger_by_outcome: ledger }, text };
  },
});
