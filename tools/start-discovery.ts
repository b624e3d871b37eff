import { eventTool } from './_event-tool.js';

export const startDiscovery = eventTool({
  name: 'start-discovery',
  title: 'Start discovery',
  description: 'Move a run to DISCOVERY (from QUEUED, PAUSED or FAILED_RETRYABLE).',
  eventType: 'command.start.discovery',
  fields: {},
});
