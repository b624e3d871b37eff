import { RunStateSchema } from '../src/core/states.js';
import { eventTool } from './_event-tool.js';

export const retry = eventTool({
  name: 'retry',
  title: 'Retry run',
  description:
    'Retry a FAILED_RETRYABLE (or NEEDS_HUMAN_REVIEW) run from target_state, e.g. DISCOVERY or IMPLEMENTING; the transition table decides what is allowed.',
  eventType: 'command.retry',
  fields: { target_state: RunStateSchema.describe('State to retry from') },
});
