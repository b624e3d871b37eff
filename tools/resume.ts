import { RunStateSchema } from '../src/core/states.js';
import { eventTool } from './_event-tool.js';

export const resume = eventTool({
  name: 'resume',
  title: 'Resume run',
  description: 'Resume a PAUSED (or NEEDS_HUMAN_REVIEW) run into target_state; the transition table decides what is allowed.',
  eventType: 'command.resume',
  fields: { target_state: RunStateSchema.describe('State to resume into') },
});
