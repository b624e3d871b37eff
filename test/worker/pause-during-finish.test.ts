import { chmodSync, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, expect, test } from 'vitest';
import { git } from '../helpers/git.js';
import { makeHarness, ok, preparedRun, toImplementing, waitFor, type Harness } from './harness.js';
import { defaultTarget } from '../../src/manager/default-target.js';
import { resumeTarget } from '../../src/board/model.js';

/**
 * A person pauses a run while run-finish pushes it. The push cannot be taken back, but the run is
 * the person's now: it stays PAUSED with the branch recorded, and resume (with no state named)
 * goes on from PUSHED.
 */

let h: Harness | undefined;
afterEach(async () => {
  await h?.cleanup();
  h = undefined;
});

test('a pause during run-finish sticks: the push is recorded, the run stays PAUSED, resume goes to PUSHED', async () => {
  h = makeHarness();
  const { runId, workspace } = await preparedRun(h);
  await toImplementing(h, runId);
  writeFileSync(join(workspace, 'fix.txt'), 'the fix\n');
  ok(await h.call('mark-local-validated', { run_id: runId }));
  // The fork takes its time to accept the push: long enough for a person to press pause.
  const started = join(h.tmp, 'push-started');
  const hook = join(h.forge.forkDir, 'hooks', 'pre-receive');
  writeFileSync(hook, `#!/bin/sh\ncat >/dev/null\ntouch '${started}'\nsleep 2\nexit 0\n`);
  chmodSync(hook, 0o755);

  const finishing = h.call('run-finish', { run_id: runId, changes: 'Add the fix' });
  await waitFor('the push to reach the fork', () => existsSync(started));
  ok(await h.call('pause', { run_id: runId }));
  const fin = ok(await finishing);

  expect(fin.state).toBe('PAUSED');
  const run = h.app.service.getRun(runId);
  expect(run.state).toBe('PAUSED');
  // The branch really is in the fork, and the run knows it.
  const branch = h.app.service.listArtifacts(runId, 'branch').at(-1)!.uri;
  expect(git(h.tmp, ['--git-dir', h.forge.forkDir, 'show', `${branch}:fix.txt`])).toBe('the fix');
  const pushEvent = h.app.service.listEvents(runId).find((e) => e.event_type === 'worker.push.completed')!;
  expect(pushEvent).toMatchObject({ from_state: 'PAUSED', to_state: 'PAUSED', outcome: 'noop' });
  expect(pushEvent.note).toMatch(/stays PAUSED/);

  // Resume with no state named goes on from PUSHED (not back to LOCAL_VALIDATING to push again).
  expect(defaultTarget(h.app, runId, 'resume')).toMatchObject({ state: 'PUSHED' });
  expect(resumeTarget(h.app, runId)).toBe('PUSHED');
  ok(await h.call('resume', { run_id: runId, target_state: 'PUSHED' }));
  expect(h.app.service.getRun(runId).state).toBe('PUSHED');
}, 90_000);

test('without a push after the pause, resume goes back to the state the run was paused in', async () => {
  h = makeHarness();
  const { runId } = await preparedRun(h);
  await toImplementing(h, runId);
  ok(await h.call('pause', { run_id: runId }));
  expect(defaultTarget(h.app, runId, 'resume')).toMatchObject({ state: 'IMPLEMENTING' });
  expect(resumeTarget(h.app, runId)).toBe('IMPLEMENTING');
}, 60_000);
