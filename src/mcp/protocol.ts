import { ProtocolError, ProtocolErrorCode, completable, type McpServer, type ResourceTemplate } from '@modelcontextprotocol/server';
import { z } from 'zod';
import type { App } from '../app.js';
import type { ApplyResult, ArtifactView, RunView } from '../core/models.js';
import { RUN_STATES } from '../core/states.js';

/** Entries per resources/list page. */
export const RESOURCE_PAGE_SIZE = 100;

type Listed = { uri: string; name: string; [key: string]: unknown };

function encodeCursor(offset: number): string {
  return Buffer.from(`o:${offset}`).toString('base64url');
}

function decodeCursor(cursor: string | undefined): number {
  if (cursor === undefined) return 0;
  const m = /^o:(\d{1,9})$/.exec(Buffer.from(cursor, 'base64url').toString());
  if (!m) throw new ProtocolError(ProtocolErrorCode.InvalidParams, `invalid cursor '${cursor.slice(0, 40)}'; pass the nextCursor of the previous resources/list answer, or none for the first page`);
  return Number(m[1]);
}

/** The parts of McpServer's resource registry the paged list reads (the SDK keeps them private). */
interface ResourceRegistryView {
  _registeredResources: Record<string, { name: string; enabled: boolean; metadata?: Record<string, unknown> }>;
  _registeredResourceTemplates: Record<
    string,
    { enabled: boolean; metadata?: Record<string, unknown>; resourceTemplate: ResourceTemplate }
  >;
}

/**
 * resources/list in pages of `pageSize` with an opaque nextCursor, replacing the SDK's one-answer
 * list. The entries are the SDK's, read at request time (so resources registered later count):
 * fixed resources first, then each listable template's entries.
 */
export function paginateResourceList(server: McpServer, pageSize = RESOURCE_PAGE_SIZE): void {
  const registry = server as unknown as ResourceRegistryView;
  server.server.removeRequestHandler('resources/list');
  server.server.setRequestHandler('resources/list', async (request, ctx) => {
    const offset = decodeCursor(request.params?.cursor);
    const all: Listed[] = Object.entries(registry._registeredResources)
      .filter(([, r]) => r.enabled)
      .map(([uri, r]) => ({ uri, name: r.name, ...r.metadata }));
    for (const template of Object.values(registry._registeredResourceTemplates)) {
      const list = template.resourceTemplate.listCallback;
      if (!template.enabled || !list) continue;
      for (const entry of (await list(ctx)).resources) all.push({ ...template.metadata, ...entry });
    }
    const page = all.slice(offset, offset + pageSize);
    const next = offset + page.length < all.length ? encodeCursor(offset + page.length) : undefined;
    return { resources: page, ...(next ? { nextCursor: next } : {}) };
  });
}

/** The resource URIs a change touches, for notifications/resources/updated. */
function touched(runId: string): string[] {
  return ['agentpr://runs', `agentpr://runs/${runId}`, `agentpr://runs/${runId}/events`];
}

/**
 * resources/subscribe and resources/unsubscribe for one connection, and the updates: a run that
 * changes (an event, a new artifact, a new run) notifies every subscribed URI it touches. Returns
 * the function that detaches from the service when the connection closes.
 */
export function enableSubscriptions(server: McpServer, app: App): () => void {
  const subscribed = new Set<string>();
  server.server.registerCapabilities({ resources: { subscribe: true, listChanged: true } });
  server.server.setRequestHandler('resources/subscribe', (request) => {
    subscribed.add(request.params.uri);
    return {};
  });
  server.server.setRequestHandler('resources/unsubscribe', (request) => {
    subscribed.delete(request.params.uri);
    return {};
  });
  const notify = (uris: string[]) => {
    if (!server.isConnected()) return;
    for (const uri of uris) {
      if (subscribed.has(uri)) void server.server.sendResourceUpdated({ uri }).catch(() => undefined);
    }
  };
  const onEvent = (r: ApplyResult) => {
    if (!r.duplicate) notify(touched(r.run_id));
  };
  const onArtifact = (a: ArtifactView) => {
    const kind = a.artifact_type === 'run_digest' ? 'digest' : a.artifact_type === 'manager_insight' ? 'insight' : undefined;
    notify([`agentpr://runs/${a.run_id}`, ...(kind ? [`agentpr://runs/${a.run_id}/${kind}`] : [])]);
  };
  const onRun = (r: RunView) => notify(['agentpr://runs', `agentpr://runs/${r.run_id}`]);
  app.service.on('event', onEvent);
  app.service.on('artifact', onArtifact);
  app.service.on('run', onRun);
  return () => {
    app.service.off('event', onEvent);
    app.service.off('artifact', onArtifact);
    app.service.off('run', onRun);
  };
}

/**
 * notifications/message for the worker's progress on a long-lived connection: a step that starts,
 * finishes, fails or times out is logged at info (warning for failures), filtered by the level the
 * client set with logging/setLevel.
 */
export function forwardStepLogs(server: McpServer, app: App): () => void {
  const onEvent = (r: ApplyResult) => {
    if (r.duplicate || !server.isConnected()) return;
    if (!/^(worker\.|timer\.)/.test(r.event_type)) return;
    const failed = r.event_type === 'worker.step.failed' || r.event_type === 'timer.timeout';
    void server
      .sendLoggingMessage({
        level: failed ? 'warning' : 'info',
        logger: 'agentpr',
        data: { message: `${r.run_id}: ${r.event_type} (${r.from_state} -> ${r.state})${r.last_error ? `; ${r.last_error}` : ''}`, run_id: r.run_id, event_type: r.event_type, state: r.state },
      })
      .catch(() => undefined);
  };
  app.service.on('event', onEvent);
  return () => app.service.off('event', onEvent);
}

function startsWith(values: readonly string[], prefix: string): string[] {
  const p = prefix.toLowerCase();
  return values.filter((v) => v.toLowerCase().startsWith(p)).slice(0, 100);
}

/** Completion sources shared by prompts and resource templates. */
export function completers(app: App) {
  const runs = () => app.service.listRuns({ limit: 500 }).runs;
  return {
    run_id: (value: string) => startsWith(runs().map((r) => r.run_id), value),
    owner: (value: string) => startsWith([...new Set(runs().map((r) => r.owner))], value),
    repo: (value: string, context?: { arguments?: Record<string, string> }) => {
      const owner = context?.arguments?.owner?.toLowerCase();
      return startsWith([...new Set(runs().filter((r) => !owner || r.owner.toLowerCase() === owner).map((r) => r.repo))], value);
    },
    state: (value: string) => startsWith(RUN_STATES, value),
  };
}

const text = (body: string) => ({ messages: [{ role: 'user' as const, content: { type: 'text' as const, text: body } }] });

/** Prompts for the common jobs, with completion on their arguments. */
export function registerPrompts(server: McpServer, app: App): void {
  const complete = completers(app);
  server.registerPrompt(
    'start-contribution',
    {
      title: 'Start a contribution run',
      description: 'Create a run for a repository and drive it to a pull request with the agentpr tools.',
      argsSchema: z.object({
        owner: completable(z.string().min(1).max(100).describe('Repository owner (user or organisation)'), complete.owner),
        repo: completable(z.string().min(1).max(100).describe('Repository name'), complete.repo),
        task: z.string().min(1).max(4000).describe('What the contribution should change'),
      }),
    },
    ({ owner, repo, task }) =>
      text(
        [
          `Start a contribution to ${owner}/${repo}: ${task}`,
          '',
          `1. create-run with owner=${owner}, repo=${repo}; note the run_id.`,
          '2. run-prepare (fork, clone, branch), then run-preflight; stop and report if a check fails.',
          '3. Write a short contract of the change, then mark-plan-ready with its path and start-implementation.',
          `4. run-agent-step with the task as prompt; follow progress with inspect-run or the agentpr://runs/<run_id> resource.`,
          '5. When the verdict is PASS: run-finish, then request-open-pr; a person confirms with approve-open-pr.',
          'Report each state change; never bypass a refusal.',
        ].join('\n'),
      ),
  );
  server.registerPrompt(
    'triage-run',
    {
      title: 'Triage a run that needs a person',
      description: 'Explain why a run stopped (NEEDS_HUMAN_REVIEW, FAILED_*, PAUSED) and propose the next step.',
      argsSchema: z.object({
        run_id: completable(z.string().min(1).max(64).describe('The run to triage'), complete.run_id),
        state: completable(z.string().max(32).describe('The state you expect it in (default NEEDS_HUMAN_REVIEW)'), complete.state).optional(),
      }),
    },
    ({ run_id, state }) =>
      text(
        [
          `Triage run ${run_id}${state ? ` (expected in ${state})` : ''}.`,
          '',
          `1. inspect-run ${run_id}: read the state, last_error, the latest verdict, reason code and recommendation.`,
          `2. Read agentpr://runs/${run_id}/digest and agentpr://runs/${run_id}/insight if they exist.`,
          '3. Say in two or three sentences what went wrong and whether it is the task, the repository or the setup.',
          '4. Propose one next step (retry with a target state, resume, a changed prompt, or mark-done) and wait for the person to agree before calling it.',
        ].join('\n'),
      ),
  );
  server.registerPrompt(
    'review-digest',
    {
      title: "Review a run's digest",
      description: "Summarise the latest worker attempt of a run from its digest: what changed, tests, risks.",
      argsSchema: z.object({
        run_id: completable(z.string().min(1).max(64).describe('The run whose digest to review'), complete.run_id),
      }),
    },
    ({ run_id }) =>
      text(
        [
          `Review the latest attempt of run ${run_id}.`,
          '',
          `Read agentpr://runs/${run_id}/digest (JSON) and agentpr://runs/${run_id}/insight (Markdown).`,
          'Summarise: the verdict and reason code; files changed and the size of the diff; which tests ran and their result; safety hits; anything a reviewer must look at before approve-open-pr.',
        ].join('\n'),
      ),
  );
}
