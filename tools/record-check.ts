import { z } from 'zod';
import { eventTool } from './_event-tool.js';
import { CheckConclusionSchema } from '../src/core/events.js';

export const recordCheck = eventTool({
  name: 'record-check',
  title: 'Record CI check result',
  description:
    'Record a completed CI check (github.check.completed): success/neutral/skipped -> REVIEW_WAIT, any other conclusion -> ITERATING. A result that does not fit the run state is recorded as ignored.',
  eventType: 'github.check.completed',
  fields: {
    conclusion: CheckConclusionSchema.describe('Check conclusion as GitHub reports it (lower case)'),
    pr_number: z.number().int().positive().optional().describe('Pull request the check ran on'),
  },
});
