import { eventTool } from './_event-tool.js';

export const markLocalValidated = eventTool({
  name: 'mark-local-validated',
  title: 'Mark local validation passed',
  description: 'Record that local validation passed: IMPLEMENTING/ITERATING/PAUSED -> LOCAL_VALIDATING.',
  eventType: 'command.local.validation.passed',
  fields: {},
});
