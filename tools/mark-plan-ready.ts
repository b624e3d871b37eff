import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import { z } from 'zod';
import { UserInputError } from '../src/core/errors.js';
import { eventTool } from './_event-tool.js';

function contractFile(path: string): string {
  const abs = resolve(path);
  let isFile = false;
  try {
    isFile = statSync(abs).isFile();
  } catch {
    // reported below
  }
  if (!isFile) throw new UserInputError(`contract_path ${abs} is not a file; write the contract discovery produced to a file and give its path`);
  return abs;
}

export const markPlanReady = {
  ...eventTool({
    name: 'mark-plan-ready',
    title: 'Mark plan ready',
    description:
      'Record that discovery produced a contract: DISCOVERY -> PLAN_READY, storing the contract path as a contract artifact. The contract must be an existing file.',
    eventType: 'worker.discovery.completed',
    fields: {
      contract_path: z.string().min(1).max(4096).describe('Path of the contract file discovery produced'),
    },
    payload: (args) => ({ contract_path: contractFile(args.contract_path) }),
  }),
  paths: ['contract_path'],
};
