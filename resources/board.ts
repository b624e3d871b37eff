import { defineResource } from '../src/resources.js';
import { NotFoundError } from '../src/core/errors.js';
import { RUN_ID_PATTERN } from '../src/core/ids.js';

/** The board's model (and the manager rules and inspect reports behind it), imported on first read. */
const model = () => import('../src/board/model.js');

/** The run board's data, read by the board view inside MCP hosts (and by anyone else). */
export const boardResource = defineResource({
  name: 'board',
  title: 'Run board',
  description:
    'The run board as JSON: runs as cards in columns by state (queued, working, waiting on CI or review, needs a person, done / failed) with the latest verdict, PR link and the actions that fit, plus chart data (time per stage, PASS rate per repository per day, tokens per agent attempt).',
  mimeType: 'application/json',
  uri: 'agentpr://board',
  template: false,
  read: async (app) => ({ mimeType: 'application/json', text: JSON.stringify((await model()).boardSnapshot(app)) }),
});

export const boardRunResource = defineResource({
  name: 'board-run',
  title: 'Run board: one run',
  description:
    "One run's board page as JSON: the inspect-run report (timeline, attempts, verdict and evidence), digest figures, the insight text, agent rounds with their task packets, PR requests (without confirm tokens) and approvals.",
  mimeType: 'application/json',
  uri: 'agentpr://board/runs/{run_id}',
  template: true,
  read: async (app, _uri, vars) => {
    const id = vars.run_id ?? '';
    if (!RUN_ID_PATTERN.test(id)) throw new NotFoundError(`'${id}' is not a run id (run_ + 12 hex digits); list runs with list-runs`);
    return { mimeType: 'application/json', text: JSON.stringify((await model()).runPage(app, id)) };
  },
});
