import { z } from 'zod';
import { eventTool } from './_event-tool.js';

export const recordCheck = eventTool({
  name: 'record-check',
  title: 'Record CI check result',
  description:
    'Record a completed CI check (github.check.completed): success/neutral/skipped -> REVIEW_WAIT, any other conclusion -> ITERATING. A result that does not fit the run state is recorded as ignored.',
  eventType: 'github.check.completed',
  fields: {
    conclusion: z
      .string()
      .min(1)
      .max(64)
      .describe('Check conclusion: success, neutral, skipped, failure, cancelled, timed_out, action_required, ...'),
    pr_number: z.number().int().positive().optional().describe('Pull request the check ran on'),
  },
});
