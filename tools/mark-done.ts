import { eventTool } from './_event-tool.js';

export const markDone = eventTool({
  name: 'mark-done',
  title: 'Mark done',
  description: 'Complete a run explicitly: PUSHED, REVIEW_WAIT or NEEDS_HUMAN_REVIEW -> DONE.',
  eventType: 'command.mark.done',
  fields: {},
  annotations: { destructiveHint: true },
});
