import { existsSync, readFileSync } from 'node:fs';
import type { App } from '../src/app.js';
import { defineResource, type ResourceContent, type ResourceListing } from '../src/resources.js';
import { NotFoundError } from '../src/core/errors.js';

/**
 * `agentpr://runs/{run_id}/digest` and `.../insight`: the latest attempt's run digest (JSON) and
 * manager insight (Markdown); `?attempt=N` reads an older attempt. A second template carries the
 * query form, because a URI template only matches a query it names.
 */
type Kind = 'run_digest' | 'manager_insight';

const KINDS: Record<Kind, { path: string; mimeType: string; what: string }> = {
  run_digest: { path: 'digest', mimeType: 'application/json', what: 'run digest' },
  manager_insight: { path: 'insight', mimeType: 'text/markdown', what: 'manager insight' },
};

function list(kind: Kind) {
  return (app: App): ResourceListing[] => {
    const rows = app.db
      .prepare(
        `SELECT a.run_id AS run_id, r.owner AS owner, r.repo AS repo, MAX(a.artifact_id) AS id FROM artifacts a JOIN runs r ON r.run_id = a.run_id
         WHERE a.artifact_type = ? GROUP BY a.run_id ORDER BY id DESC LIMIT 500`,
      )
      .all(kind) as Array<{ run_id: string; owner: string; repo: string }>;
    return rows.map((r) => ({
      uri: `agentpr://runs/${r.run_id}/${KINDS[kind].path}`,
      name: `${r.run_id} ${KINDS[kind].path}`,
      title: `${KINDS[kind].what} of ${r.owner}/${r.repo} (${r.run_id})`,
      mimeType: KINDS[kind].mimeType,
    }));
  };
}

function read(kind: Kind) {
  return async (app: App, _uri: URL, vars: Record<string, string>): Promise<ResourceContent> => {
    const runId = vars.run_id ?? '';
    if (!app.service.findRun(runId)) throw new NotFoundError(`unknown run '${runId}'`);
    // Imported on first read: the digest schemas are not needed to start a server.
    const { artifactFor, attemptNoOf, parseAttemptParam } = await import('../src/worker/inspect.js');
    const attempt = parseAttemptParam(vars.attempt);
    const a = artifactFor(app, runId, kind, attempt);
    if (!a) {
      const have = app.service
        .listArtifacts(runId, kind)
        .map(attemptNoOf)
        .filter((n): n is number => n !== null);
      throw new NotFoundError(
        attempt === undefined
          ? `run ${runId} has no ${KINDS[kind].what} yet; run-agent-step writes one per attempt`
          : `run ${runId} has no ${KINDS[kind].what} for attempt ${attempt}; attempts with one: ${have.join(', ') || 'none'}`,
      );
    }
    if (!existsSync(a.uri)) throw new NotFoundError(`the ${KINDS[kind].what} file ${a.uri} of run ${runId} no longer exists`);
    return { mimeType: KINDS[kind].mimeType, text: readFileSync(a.uri, 'utf8') };
  };
}

export const runDigestResource = defineResource({
  name: 'run-digest',
  title: 'Run digest',
  description: "The latest agent attempt's run digest (verdict, validation, diff, commands, stages, usage); ?attempt=N for an older attempt.",
  mimeType: 'application/json',
  uri: 'agentpr://runs/{run_id}/digest',
  template: true,
  list: list('run_digest'),
  read: read('run_digest'),
});

export const runDigestAttemptResource = defineResource({
  name: 'run-digest-attempt',
  title: 'Run digest of one attempt',
  description: 'The run digest of agent attempt N.',
  mimeType: 'application/json',
  uri: 'agentpr://runs/{run_id}/digest{?attempt}',
  template: true,
  read: read('run_digest'),
});

export const runInsightResource = defineResource({
  name: 'run-insight',
  title: 'Manager insight',
  description: "The latest agent attempt's manager insight (Markdown: outcome, evidence, top commands, next action, hints); ?attempt=N for an older attempt.",
  mimeType: 'text/markdown',
  uri: 'agentpr://runs/{run_id}/insight',
  template: true,
  list: list('manager_insight'),
  read: read('manager_insight'),
});

export const runInsightAttemptResource = defineResource({
  name: 'run-insight-attempt',
  title: 'Manager insight of one attempt',
  description: 'The manager insight of agent attempt N.',
  mimeType: 'text/markdown',
  uri: 'agentpr://runs/{run_id}/insight{?attempt}',
  template: true,
  read: read('manager_insight'),
});

export const DIGEST_RESOURCES = [runDigestResource, runDigestAttemptResource, runInsightResource, runInsightAttemptResource];
