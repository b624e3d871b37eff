import { UserInputError } from '../src/core/errors.js';
import { z } from 'zod';
import { defineTool } from '../src/registry.js';
import { notAnOption } from '../src/trust.js';
import { RunIdSchema } from '../src/core/models.js';
import { RunStateSchema } from '../src/core/states.js';
import { MAX_PROMPT_CHARS, startAgentStep } from '../src/worker/agent-step.js';
import { STATE_AFTER_VERDICT } from '../src/policy.js';

/** How long a waiting MCP call waits for the verdict before answering 'running' (below a 60 s client timeout). */
export const MCP_RETURN_AFTER_SECONDS = 45;

const OutputSchema = z.object({
  run_id: z.string(),
  attempt_no: z.number().int(),
  status: z.enum(['running', 'finished']),
  state_before: RunStateSchema,
  state_after: RunStateSchema,
  grade: z.enum(['PASS', 'RETRYABLE', 'HUMAN_REVIEW']).nullable(),
  reason_code: z.string().nullable(),
  next_action: z.string().nullable(),
  evidence: z.array(z.string()),
  exit_code: z.number().int().nullable(),
  timed_out: z.boolean(),
  duration_ms: z.number().int().nullable(),
  event: z.object({ event_type: z.string(), outcome: z.string(), from_state: z.string(), state: z.string() }).nullable(),
  note: z.string().nullable(),
  kept_event_stream: z.boolean().nullable(),
  artifacts: z.array(z.object({ type: z.string(), uri: z.string() })),
  reports_dir: z.string(),
});

export const runAgentStep = defineTool({
  name: 'run-agent-step',
  title: 'Run agent step',
  description: [
    "Run the codex worker once in the run's workspace (codex exec --json with the safety contract, isolated caches and a hard timeout),",
    'then classify the attempt (PASS / RETRYABLE / HUMAN_REVIEW with a reason code), store the digest, insight, runtime report and last message,',
    'and move the run as the policy says (PASS -> LOCAL_VALIDATING from IMPLEMENTING/ITERATING; DISCOVERY stays; failures -> FAILED_RETRYABLE or NEEDS_HUMAN_REVIEW; timeout -> FAILED_RETRYABLE).',
    'Allowed from QUEUED (moved to DISCOVERY first), DISCOVERY, IMPLEMENTING, LOCAL_VALIDATING, ITERATING.',
    'Refuses without changing anything when the workspace is outside the root, the worktree is dirty, skills are missing in skills mode, or codex is not installed.',
    'With wait=false it returns at once with the attempt number; follow it with inspect-run.',
    `Over MCP a waiting call answers within return_after_seconds (default ${MCP_RETURN_AFTER_SECONDS} s, under the usual 60 s client request timeout):`,
    "if the worker is still running then, it answers status 'running' with the attempt number and the step goes on in the server;",
    'follow it with progress notifications, log notifications (notifications/message), a subscription to agentpr://runs/{run_id}, or inspect-run.',
    'Cancelling a waiting call (notifications/cancelled) stops the worker: the attempt is recorded cancelled and the run goes to FAILED_RETRYABLE. Pausing the run stops a step that runs on in the server.',
    'Clients with MCP tasks (2025-11-25) can call it as an MCP task instead: the call answers at once with a task id, tasks/get shows the run and attempt it follows,',
    'tasks/result gives this same result with the verdict when the step ends (wait and return_after_seconds do not apply), and tasks/cancel stops the worker as a cancelled call does.',
  ].join(' '),
  tier: 'write',
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true },
  cli: { positional: ['run_id'] },
  paths: ['prompt_file', 'allowed_read_only_roots'],
  input: z.object({
    run_id: RunIdSchema,
    prompt: z.string().min(1).max(MAX_PROMPT_CHARS).optional().describe('The task for the worker (or prompt_file)'),
    prompt_file: z.string().min(1).max(4096).optional().describe('Path of a text file with the task (or prompt)'),
    max_agent_seconds: z.number().int().min(1).max(86_400).optional().describe('Hard timeout; default: the run budget, else policy run_agent_step.max_agent_seconds'),
    sandbox: z.enum(['read-only', 'workspace-write', 'danger-full-access']).optional().describe("codex --sandbox; default from policy; 'read-only' is refused"),
    model: notAnOption(z.string().min(1).max(200), 'model').optional().describe('codex --model; default from policy (codex_model) or codex itself'),
    allowed_read_only_roots: z.array(z.string().min(1).max(4096)).max(50).optional().describe('Absolute paths outside the repo the worker may read (added to the policy list)'),
    codex_args: z
      .array(z.string().min(1).max(4096))
      .max(40)
      .optional()
      .describe('Extra codex exec flags for this call, after the policy codex_extra_args: -c key=value for model_reasoning_effort, model_reasoning_summary, model_verbosity, model_context_window, model_auto_compact_token_limit, hide_agent_reasoning, show_raw_agent_reasoning; --ephemeral, --skip-git-repo-check, --strict-config. Anything else is refused'),
    success_state: z.enum(STATE_AFTER_VERDICT).optional().describe('Override policy success_state for this call (recorded on the attempt)'),
    on_retryable_state: z.enum(STATE_AFTER_VERDICT).optional().describe('Override policy on_retryable_state for this call'),
    on_human_review_state: z.enum(STATE_AFTER_VERDICT).optional().describe('Override policy on_human_review_state for this call'),
    min_test_commands: z.number().int().min(0).max(100).optional().describe('Override policy min_test_commands for this call'),
    max_changed_files: z.number().int().min(0).max(100_000).optional().describe('Override policy max_changed_files for this call (0 = no budget)'),
    max_added_lines: z.number().int().min(0).max(10_000_000).optional().describe('Override policy max_added_lines for this call (0 = no budget)'),
    skills_mode: z.enum(['off', 'agentpr']).optional().describe('Override policy skills_mode for this call'),
    allow_missing_skills: z.boolean().optional().describe('Run in skills mode even when skills of the stage plan are not installed'),
    allow_dirty_worktree: z.boolean().optional().describe('Run although the worktree has uncommitted changes (they count in the diff budget)'),
    skip_preflight: z.boolean().optional().describe('Skip the workspace preflight before the worker'),
    task_packet_file: z
      .string()
      .min(1)
      .max(4096)
      .optional()
      .describe('Skills mode: an agentpr.task_packet.v1 JSON file whose skills plan and contract replace the stage defaults (run, attempt, limits and paths stay agentpr\'s)'),
    wait: z.boolean().default(true).describe('Wait for the verdict (default); false returns at once and the step continues in the server'),
    return_after_seconds: z
      .number()
      .int()
      .min(1)
      .max(86_400)
      .optional()
      .describe(`MCP only: answer with status 'running' after this many seconds if the worker has not finished (default ${MCP_RETURN_AFTER_SECONDS}); the step goes on in the server`),
  }),
  output: OutputSchema,
  handler: async (args, ctx) => {
    const { wait, return_after_seconds, ...req } = args;
    if (!wait && ctx.entry === 'cli') {
      // The CLI process ends when the call returns, and the worker would be cancelled with it.
      throw new UserInputError('wait=false needs a long-running server (agentpr serve / agentpr-mcp); from the CLI the step runs until its verdict, so drop --no-wait');
    }
    // As an MCP task the call follows the step to its verdict; wait and return_after_seconds do not apply.
    const follow = wait || ctx.task !== undefined;
    // Over MCP, cancelling the waiting request (or the task) stops the worker; the CLI's own signal
    // handling already kills the worker with the process.
    const started = await startAgentStep(ctx.app, req, follow ? { progress: ctx.progress, signal: ctx.signal, stopOnCallerAbort: ctx.entry === 'mcp' } : {});
    ctx.task?.follows({ run_id: started.run_id, attempt_no: started.attempt_no, state: started.state });
    const returnAfterMs = ctx.entry === 'mcp' && !ctx.task ? (return_after_seconds ?? MCP_RETURN_AFTER_SECONDS) * 1000 : undefined;
    let timer: NodeJS.Timeout | undefined;
    const finished =
      follow && returnAfterMs !== undefined
        ? await Promise.race([started.done, new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), returnAfterMs)))]).finally(() => clearTimeout(timer))
        : follow
          ? await started.done
          : undefined;
    if (!finished) {
      if (follow) started.detach();
      return {
        data: {
          run_id: started.run_id,
          attempt_no: started.attempt_no,
          status: 'running' as const,
          state_before: started.state,
          state_after: started.state,
          grade: null,
          reason_code: null,
          next_action: null,
          evidence: [],
          exit_code: null,
          timed_out: false,
          duration_ms: null,
          event: null,
          note: null,
          kept_event_stream: null,
          artifacts: [],
          reports_dir: started.reports_dir,
        },
        text: wait
          ? `${started.run_id}: agent#${started.attempt_no} still running after ${Math.round((returnAfterMs ?? 0) / 1000)} s; it continues in the server (follow it with inspect-run ${started.run_id} or the agentpr://runs/${started.run_id} resource; pause the run to stop it)`
          : `${started.run_id}: agent#${started.attempt_no} started in ${started.state}; it continues in the server (follow it with inspect-run ${started.run_id})`,
      };
    }
    const r = finished;
    const head = r.timed_out
      ? `${r.run_id}: agent#${r.attempt_no} timed out and was killed; ${r.state_before} -> ${r.state_after}`
      : `${r.run_id}: agent#${r.attempt_no} ${r.grade ?? 'ERROR'} ${r.reason_code ?? ''} (${r.next_action ?? 'see evidence'}); ${r.state_before} -> ${r.state_after}`;
    const lines = [head, ...r.evidence.slice(0, 5).map((e) => `  - ${e}`)];
    if (r.note) lines.push(`note: ${r.note}`);
    lines.push(`reports: ${r.reports_dir}`);
    return { data: r, text: lines.join('\n') };
  },
});
