import { z } from 'zod';
import { defineTool } from '../src/registry.js';
import { AuditLineSchema, summarizeAudit, webhookAuditPath } from '../src/github/audit.js';
import { DELIVERY_SOURCE } from '../src/github/ledger.js';

const counts = z.record(z.string(), z.number().int());

export const webhookAuditSummary = defineTool({
  name: 'webhook-audit-summary',
  title: 'Webhook audit summary',
  description:
    'Summarize the GitHub webhook audit log over the last N hours (or since_minutes): requests by outcome, HTTP status and event, deliveries processed/ignored, retryable failures and the 5xx rate, the most recent errors, and the delivery ledger by outcome. With fail_on_* thresholds it is an alert check: alert is true when one is exceeded, and the CLI then exits with status 3.',
  tier: 'read',
  annotations: { readOnlyHint: true, openWorldHint: false },
  input: z.object({
    hours: z.number().positive().max(24 * 365).default(24).describe('Window in hours (default 24)'),
    since_minutes: z.number().int().min(1).max(525_600).optional().describe('Window in minutes; wins over hours (e.g. 30 for an alert timer)'),
    max_lines: z.number().int().min(1).max(10_000_000).default(5000).describe('Read at most the newest N lines of the audit log (default 5000)'),
    last_errors: z.number().int().min(0).max(100).default(10).describe('How many recent error lines to include'),
    fail_on_retryable_failures: z
      .number()
      .int()
      .min(0)
      .optional()
      .describe('Alert when more than this many requests in the window were answered 5xx or 429 (GitHub must deliver them again); 0 alerts on any'),
    fail_on_http5xx_rate: z.number().min(0).max(100).optional().describe('Alert when the share of requests answered 5xx exceeds this percentage'),
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
    retryable_failures: z.number().int(),
    http_5xx: z.number().int(),
    http_5xx_rate_pct: z.number(),
    lines_read: z.number().int(),
    last_errors: z.array(AuditLineSchema),
    unreadable_lines: z.number().int(),
    ledger_by_outcome: counts,
    alert: z.boolean(),
    alerts: z.array(z.string()),
  }),
  cli: { exitCode: (data) => (data.alert === true ? 3 : 0) },
  handler: async (args, { app }) => {
    const hours = args.since_minutes !== undefined ? args.since_minutes / 60 : args.hours;
    const s = await summarizeAudit(webhookAuditPath(app), { hours, lastErrors: args.last_errors, maxLines: args.max_lines });
    const ledger = app.service.deliveryCounts(s.since, DELIVERY_SOURCE);
    const alerts: string[] = [];
    if (args.fail_on_retryable_failures !== undefined && s.retryable_failures > args.fail_on_retryable_failures) {
      alerts.push(`retryable failures ${s.retryable_failures} > ${args.fail_on_retryable_failures}`);
    }
    if (args.fail_on_http5xx_rate !== undefined && s.http_5xx_rate_pct > args.fail_on_http5xx_rate) {
      alerts.push(`HTTP 5xx rate ${s.http_5xx_rate_pct}% > ${args.fail_on_http5xx_rate}%`);
    }
    const fmt = (r: Record<string, number>) =>
      Object.entries(r)
        .sort((a, b) => b[1] - a[1])
        .map(([k, v]) => `${k} ${v}`)
        .join(', ') || 'none';
    const window = args.since_minutes !== undefined ? `${args.since_minutes} min` : `${args.hours} h`;
    const text = [
      ...(alerts.length ? [`ALERT: ${alerts.join('; ')}`] : []),
      `webhook requests in the last ${window}: ${s.total} (${s.file}, newest ${s.lines_read} line(s) read, at most ${args.max_lines})`,
      `by outcome: ${fmt(s.by_outcome)}`,
      `by status: ${fmt(s.by_status_code)}`,
      `by event: ${fmt(s.by_event)}`,
      `retryable failures ${s.retryable_failures}; 5xx ${s.http_5xx} (${s.http_5xx_rate_pct}%)`,
      `tool calls applied ${s.processed}, ignored ${s.ignored}; ledger: ${fmt(ledger)}`,
      ...(s.last_errors.length ? ['last errors:', ...s.last_errors.map((e) => `  ${e.ts} ${e.status_code} ${e.outcome} ${e.event ?? '-'} ${e.delivery ?? '-'}: ${e.error}`)] : []),
      ...(s.unreadable_lines ? [`${s.unreadable_lines} unreadable lines skipped`] : []),
    ].join('\n');
    return { data: { ...s, ledger_by_outcome: ledger, alert: alerts.length > 0, alerts }, text };
  },
});
