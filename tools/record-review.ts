import { z } from 'zod';
import { eventTool } from './_event-tool.js';

export const recordReview = eventTool({
  name: 'record-review',
  title: 'Record PR review',
  description:
    'Record a submitted review (github.review.submitted): changes_requested -> ITERATING; approved or commented changes nothing.',
  eventType: 'github.review.submitted',
  fields: {
    state: z.string().min(1).max(64).describe('Review state: approved, changes_requested, commented, dismissed'),
  },
});
