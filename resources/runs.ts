import { defineResource } from '../src/resources.js';
import { NotFoundError } from '../src/core/errors.js';

const json = (v: unknown) => JSON.stringify(v, null, 2);

export const runsResource = defineResource({
  name: 'runs',
  title: 'Runs',
  description: 'All runs (newest first, up to 500) with state and last error.',
  mimeType: 'application/json',
  uri: 'agentpr://runs',
  template: false,
  read: (app) => {
    const { runs, total } = app.service.listRuns({ limit: 500 });
    return { mimeType: 'application/json', text: json({ total, runs }) };
  },
});

export const runResource = defineResource({
  name: 'run',
  title: 'Run',
  description: 'One run: state, last error, attempts and artifacts.',
  mimeType: 'application/json',
  uri: 'agentpr://runs/{run_id}',
  template: true,
  list: (app) =>
    app.service.listRuns({ limit: 1_000_000 }).runs.map((r) => ({
      uri: `agentpr://runs/${r.run_id}`,
      name: r.run_id,
      title: `${r.owner}/${r.repo} (${r.state})`,
      mimeType: 'application/json',
    })),
  read: (app, _uri, vars) => {
    const run = app.service.findRun(vars.run_id ?? '');
    if (!run) throw new NotFoundError(`unknown run '${vars.run_id}'`);
    return {
      mimeType: 'application/json',
      text: json({ run, attempts: app.service.listAttempts(run.run_id), artifacts: app.service.listArtifacts(run.run_id) }),
    };
  },
});

export const runEventsResource = defineResource({
  name: 'run-events',
  title: 'Run events',
  description: 'The event log of one run, oldest first.',
  mimeType: 'application/json',
  uri: 'agentpr://runs/{run_id}/events',
  template: true,
  list: (app) =>
    app.service.listRuns({ limit: 1_000_000 }).runs.map((r) => ({
      uri: `agentpr://runs/${r.run_id}/events`,
      name: `${r.run_id} events`,
      mimeType: 'application/json',
    })),
  read: (app, _uri, vars) => {
    const run = app.service.findRun(vars.run_id ?? '');
    if (!run) throw new NotFoundError(`unknown run '${vars.run_id}'`);
    return { mimeType: 'application/json', text: json({ run_id: run.run_id, events: app.service.listEvents(run.run_id, { limit: 10_000 }) }) };
  },
});
