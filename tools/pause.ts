import { eventTool } from './_event-tool.js';

export const pause = eventTool({
  name: 'pause',
  title: 'Pause run',
  description: 'Pause a non-terminal run (-> PAUSED); resume it later with resume.',
  eventType: 'command.pause',
  fields: {},
});
