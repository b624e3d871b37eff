import { z } from 'zod';
import { eventTool } from './_event-tool.js';
import { CheckConclusionSchema } from '../src/core/events.js';

export const recordCheck = eventTool({
  name: 'record-check',
  title: 'Record CI check result',
  description:
    'Record a completed CI check (github.check.completed): success/neutral/skipped -> REVIEW_WAIT, any other conclusion -> ITERATING. A result for a commit that is not the run\'s current PR head is recorded as ignored; one that arrives while the run is PAUSED or busy (IMPLEMENTING, ...) is kept pending and applied when the run reaches a state it fits.',
  eventType: 'github.check.completed',
  fields: {
    conclusion: CheckConclusionSchema.describe('Check conclusion as GitHub reports it (lower case)'),
    pr_number: z.number().int().positive().optional().describe('Pull request the check ran on'),
    head_sha: z
      .string()
      .regex(/^[0-9a-fA-F]{7,64}$/, { message: 'head_sha must be a commit SHA (7 to 64 hex digits)' })
      .optional()
      .describe('Commit the check ran on; only a result for the run\'s current PR head moves it'),
  },
});
