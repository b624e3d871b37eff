import { z } from 'zod';
import { defineTool } from '../src/registry.js';
import { ArtifactViewSchema, AttemptViewSchema, EventViewSchema, RunIdSchema, RunViewSchema } from '../src/core/models.js';
import { TRANSITIONS } from '../src/core/states.js';

export const showRun = defineTool({
  name: 'show-run',
  title: 'Show run',
  description: 'Show one run: state, last error, allowed next states, recent events, step attempts and artifacts.',
  tier: 'read',
  annotations: { readOnlyHint: true, openWorldHint: false },
  cli: { positional: ['run_id'] },
  input: z.object({
    run_id: RunIdSchema,
    events_limit: z.number().int().min(1).max(1000).default(20).describe('How many recent events to include'),
  }),
  output: z.object({
    run: RunViewSchema,
    allowed_next_states: z.array(z.string()),
    recent_events: z.array(EventViewSchema),
    attempts: z.array(AttemptViewSchema),
    artifacts: z.array(ArtifactViewSchema),
  }),
  handler: (args, { app }) => {
    const run = app.service.getRun(args.run_id);
    const recent = app.service.listEvents(run.run_id, { limit: args.events_limit, newestFirst: true }).reverse();
    const attempts = app.service.listAttempts(run.run_id);
    const artifacts = app.service.listArtifacts(run.run_id);
    const text = [
      `${run.run_id} ${run.owner}/${run.repo}: ${run.state}${run.pr_number ? ` (PR #${run.pr_number})` : ''}`,
      run.last_error ? `last error: ${run.last_error}` : null,
      `workspace: ${run.workspace_dir}`,
      `events (${recent.length} most recent):`,
      ...recent.map((e) => `  #${e.event_id} ${e.created_at} ${e.event_type} ${e.from_state ?? '-'} -> ${e.to_state} [${e.outcome}]`),
      attempts.length ? `attempts: ${attempts.map((a) => `${a.step}#${a.attempt_no} ${a.status}${a.exit_code !== null ? ` exit ${a.exit_code}` : ''}`).join(', ')}` : null,
      artifacts.length ? `artifacts: ${artifacts.map((a) => `${a.artifact_type}=${a.uri}`).join(', ')}` : null,
    ]
      .filter((l): l is string => l !== null)
      .join('\n');
    return {
      data: { run, allowed_next_states: [...TRANSITIONS[run.state]], recent_events: recent, attempts, artifacts },
      text,
    };
  },
});
