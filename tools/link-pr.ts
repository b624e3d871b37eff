import { z } from 'zod';
import { eventTool } from './_event-tool.js';

export const linkPr = eventTool({
  name: 'link-pr',
  title: 'Link pull request',
  description: 'Link an opened pull request to a PUSHED run: -> CI_WAIT and sets pr_number.',
  eventType: 'command.pr.linked',
  fields: {
    pr_number: z.number().int().positive().describe('Pull request number on GitHub'),
  },
});
