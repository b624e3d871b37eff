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
import { recordPrState } from './record-pr-state.js';
import { pause } from './pause.js';
import { resume } from './resume.js';
import { retry } from './retry.js';
import { markDone } from './mark-done.js';
import { showPolicy } from './show-policy.js';
import { runPrepareTool } from './run-prepare.js';
import { runFinishTool } from './run-finish.js';
import { runPreflightTool } from './run-preflight.js';
import { doctorTool } from './doctor.js';
import { syncGithub } from './sync-github.js';
import { cleanupWebhookDeliveries } from './cleanup-webhook-deliveries.js';
import { webhookAuditSummary } from './webhook-audit-summary.js';
import { requestOpenPrTool } from './request-open-pr.js';
import { approveOpenPrTool } from './approve-open-pr.js';
import { managerTick } from './manager-tick.js';
import { analyzeStream } from './analyze-stream.js';
import { runAgentStep } from './run-agent-step.js';
import { inspectRunTool } from './inspect-run.js';
import { runBottlenecksTool } from './run-bottlenecks.js';
import { skillsStatusTool } from './skills-status.js';
import { installSkillsTool } from './install-skills.js';
import { skillsMetricsTool } from './skills-metrics.js';
import { skillsFeedbackTool } from './skills-feedback.js';
import { reconcileRunsTool } from './reconcile-runs.js';
import { cleanupWorkspacesTool } from './cleanup-workspaces.js';

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
  recordPrState,
  pause,
  resume,
  retry,
  markDone,
  showPolicy,
  runPrepareTool,
  runFinishTool,
  runPreflightTool,
  doctorTool,
  syncGithub,
  cleanupWebhookDeliveries,
  webhookAuditSummary,
  requestOpenPrTool,
  approveOpenPrTool,
  managerTick,
  analyzeStream,
  runAgentStep,
  inspectRunTool,
  runBottlenecksTool,
  skillsStatusTool,
  installSkillsTool,
  skillsMetricsTool,
  skillsFeedbackTool,
  reconcileRunsTool,
  cleanupWorkspacesTool,
];
