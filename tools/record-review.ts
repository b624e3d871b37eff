import { eventTool } from './_event-tool.js';
import { ReviewStateSchema } from '../src/core/events.js';

export const recordReview = eventTool({
  name: 'record-review',
  title: 'Record PR review',
  description:
    'Record a submitted review (github.review.submitted): changes_requested -> ITERATING; approved or commented changes nothing.',
  eventType: 'github.review.submitted',
  fields: {
    state: ReviewStateSchema.describe('Review state as GitHub reports it (lower case)'),
  },
});
