import type { App } from '../src/app.js';
import { defineResource, type ResourceContent, type ResourceListing } from '../src/resources.js';
import { NotFoundError } from '../src/core/errors.js';

/** `agentpr://runs/{run_id}/iteration`: the latest iteration packet (Markdown, the JSON beside it in the artifact). */
export const runIterationResource = defineResource({
  name: 'run-iteration',
  title: 'Iteration packet',
  description:
    "What the run's latest iteration works on, read from GitHub for the PR's head: failed checks with output, annotations and job log tails, review comments, reviews requesting changes, maintainers' comments since the last push. Text written by others.",
  mimeType: 'text/markdown',
  uri: 'agentpr://runs/{run_id}/iteration',
  template: true,
  list: (app: App): ResourceListing[] => {
    const rows = app.db
      .prepare(
        `SELECT a.run_id AS run_id, r.owner AS owner, r.repo AS repo, MAX(a.artifact_id) AS id FROM artifacts a JOIN runs r ON r.run_id = a.run_id
         WHERE a.artifact_type = 'iteration_packet' GROUP BY a.run_id ORDER BY id DESC LIMIT 500`,
      )
      .all() as Array<{ run_id: string; owner: string; repo: string }>;
    return rows.map((r) => ({ uri: `agentpr://runs/${r.run_id}/iteration`, name: `${r.run_id} iteration`, title: `iteration packet of ${r.owner}/${r.repo} (${r.run_id})`, mimeType: 'text/markdown' }));
  },
  read: async (app: App, _uri: URL, vars: Record<string, string>): Promise<ResourceContent> => {
    const runId = vars.run_id ?? '';
    if (!app.service.findRun(runId)) throw new NotFoundError(`unknown run '${runId}'`);
    // Imported on first read, with the GitHub client behind it.
    const { latestIterationPacket } = await import('../src/github/iteration-packet.js');
    const latest = latestIterationPacket(app, runId);
    if (!latest) throw new NotFoundError(`run ${runId} has no iteration packet yet; one is built when the worker runs in ITERATING`);
    return { mimeType: 'text/markdown', text: latest.markdown };
  },
});
