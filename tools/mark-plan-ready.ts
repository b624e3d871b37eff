import { z } from 'zod';
import { eventTool } from './_event-tool.js';

export const markPlanReady = eventTool({
  name: 'mark-plan-ready',
  title: 'Mark plan ready',
  description:
    'Record that discovery produced a contract: DISCOVERY -> PLAN_READY, storing the contract path as a contract artifact.',
  eventType: 'worker.discovery.completed',
  fields: {
    contract_path: z.string().min(1).max(4096).describe('Path (or URI) of the contract discovery produced'),
  },
});
