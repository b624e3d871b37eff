import { chmodSync, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { git } from '../helpers/git.js';
import { safeGitEnv } from '../../src/worker/git-safety.js';
import { makeHarness, ok, preparedRun, type Harness } from '../worker/harness.js';

let h: Harness | undefined;
afterEach(async () => {
  await h?.cleanup();
  h = undefined;
});

describe("agentpr's own git runs no worker-written hook or fsmonitor", () => {
  test('a pre-commit hook and a core.fsmonitor written into the clone do not run during finish', async () => {
    h = makeHarness({ env: { AGENTPR_TELEGRAM_BOT_TOKEN: '123456:telegram-secret-token' } });
    const { runId, workspace } = await preparedRun(h);
    for (const e of ['worker.discovery.completed', 'command.start.implementation', 'command.local.validation.passed'] as const) {
      h.app.service.applyEvent({ run_id: runId, event_type: e, ...(e === 'worker.discovery.completed' ? { payload: { contract_path: '/c.md' } } : {}) });
    }
    // What a worker can write: its change, a hook, and an fsmonitor command in .git/config.
    writeFileSync(join(workspace, 'src', 'greeting.txt'), 'hello, world\n');
    const hookMarker = join(h.tmp, 'hook-ran');
    const fsmonMarker = join(h.tmp, 'fsmonitor-ran');
    const hook = join(workspace, '.git', 'hooks', 'pre-commit');
    writeFileSync(hook, `#!/bin/sh\nenv > '${hookMarker}'\nexit 0\n`);
    chmodSync(hook, 0o755);
    const fsmon = join(workspace, '.git', 'fsmon.sh');
    writeFileSync(fsmon, `#!/bin/sh\nenv > '${fsmonMarker}'\nexit 1\n`);
    chmodSync(fsmon, 0o755);
    git(workspace, ['config', 'core.fsmonitor', fsmon]);

    const r = ok(await h.call('run-finish', { run_id: runId, changes: 'Greet the world' }));
    expect(r).toMatchObject({ ok: true, state: 'PUSHED' });
    expect(existsSync(hookMarker)).toBe(false);
    expect(existsSync(fsmonMarker)).toBe(false);
  });

  test('the git environment keeps only the credential a push needs', () => {
    const env = safeGitEnv(
      { PATH: '/bin', GH_TOKEN: 'gh-secret', AGENTPR_TELEGRAM_BOT_TOKEN: 'tg', AGENTPR_MANAGER_API_KEY: 'k', OPENAI_API_KEY: 'o', AGENTPR_MCP_TOKEN: 'm', GIT_CONFIG_COUNT: '1', GIT_CONFIG_KEY_0: 'core.hooksPath', GIT_CONFIG_VALUE_0: '/evil' },
      { credentials: ['GH_TOKEN'] },
    );
    expect(env).toMatchObject({ PATH: '/bin', GH_TOKEN: 'gh-secret', GIT_CONFIG_COUNT: '3', GIT_CONFIG_KEY_0: 'core.hooksPath', GIT_CONFIG_VALUE_0: '/dev/null', GIT_CONFIG_KEY_1: 'core.fsmonitor', GIT_CONFIG_KEY_2: 'protocol.ext.allow', GIT_CONFIG_VALUE_2: 'never', GIT_PAGER: 'cat', GIT_EDITOR: ':' });
    for (const k of ['AGENTPR_TELEGRAM_BOT_TOKEN', 'AGENTPR_MANAGER_API_KEY', 'OPENAI_API_KEY', 'AGENTPR_MCP_TOKEN']) expect(env).not.toHaveProperty(k);
  });
});
