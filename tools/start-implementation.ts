import { eventTool } from './_event-tool.js';

export const startImplementation = eventTool({
  name: 'start-implementation',
  title: 'Start implementation',
  description: 'Move a run to IMPLEMENTING (from PLAN_READY, ITERATING or PAUSED).',
  eventType: 'command.start.implementation',
  fields: {},
});
