import { statSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { UserInputError } from '../src/core/errors.js';
import { eventTool } from './_event-tool.js';

/** A URI such as https://... or file://... is recorded as given; a path must name a file. */
const URI = /^[a-z][a-z0-9+.-]*:\/\//i;

export const markPlanReady = {
  ...eventTool({
  name: 'mark-plan-ready',
  title: 'Mark plan ready',
  description:
    "Record that discovery produced a contract: DISCOVERY -> PLAN_READY, storing the contract as a contract artifact. A path (absolute, or relative to the run's workspace) must name an existing file and is stored absolute; a URI (https://...) is stored as given.",
  eventType: 'worker.discovery.completed',
  fields: {
    contract_path: z.string().min(1).max(4096).describe("Path of the contract file (absolute or relative to the run's workspace), or a URI"),
  },
  check: (payload, run) => {
    const given = String(payload.contract_path);
    if (URI.test(given)) return payload;
    const path = isAbsolute(given) ? given : resolve(run.workspace_dir, given);
    let isFile = false;
    try {
      isFile = statSync(path).isFile();
    } catch {
      isFile = false;
    }
    if (!isFile) {
      throw new UserInputError(
        `invalid input for mark-plan-ready: contract_path: '${given}' is not a file${path !== given ? ` (looked at ${path})` : ''}; write the contract first, or give its URI`,
      );
    }
    return { ...payload, contract_path: path };
  },
  }),
  paths: ['contract_path'],
  webAddressFields: ['contract_path'],
};
