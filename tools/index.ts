import type { AnyTool } from '../src/registry.js';
import { createRun } from './create-run.js';
import { listRuns } from './list-runs.js';
import { showRun } from './show-run.js';
import { applyEvent } from './apply-event.js';
import { startDiscovery } from './start-discovery.js';
import { markPlanReady } from './mark-plan-ready.js';
import { startImplementation } from './start-implementation.js';
import { markLocalValidated } from './mark-local-validated.js';
import { linkPr } from './link-pr.js';
import { recordCheck } from './record-check.js';
import { recordReview } from './record-review.js';
import { pause } from './pause.js';
import { resume } from './resume.js';
import { retry } from './retry.js';
import { markDone } from './mark-done.js';

/** The one list of tools. MCP (stdio, HTTP), the CLI, Telegram, the manager LLM and the webhook all read it. */
export const TOOLS: readonly AnyTool[] = [
  createRun,
  listRuns,
  showRun,
  applyEvent,
  startDiscovery,
  markPlanReady,
  startImplementation,
  markLocalValidated,
  linkPr,
  recordCheck,
  recordReview,
  pause,
  resume,
  retry,
  markDone,
];
