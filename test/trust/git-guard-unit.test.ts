import { mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { tempDir } from '../helpers/app.js';
import { git } from '../helpers/git.js';
import { configEntries, guardGitDir, recordGitBaseline } from '../../src/worker/git-guard.js';

describe('the git guard reads a config the way git names its keys', () => {
  test('sections, subsections, the old [a.b] spelling, inline keys and valueless keys', () => {
    const text = '[core]\n\tbare = false\n[Filter "X"]\n\tClean = evil %f\n[include] path = x.inc\n[diff.y]\n\ttextconv = t\n[core]\n\tfsmonitor\n; comment\n# comment\n';
    expect(configEntries(text)).toEqual([
      ['core.bare', 'false'],
      ['filter.X.clean', 'evil %f'],
      ['include.path', 'x.inc'],
      ['diff.y.textconv', 't'],
      ['core.fsmonitor', 'true'],
    ]);
  });
});

const made: string[] = [];
afterAll(() => {
  for (const d of made) rmSync(d, { recursive: true, force: true });
});

describe('guardGitDir', () => {
  function clone(): { home: string; ws: string } {
    const tmp = tempDir('agentpr-guard-');
    made.push(tmp);
    const ws = join(tmp, 'ws');
    mkdirSync(ws);
    git(ws, ['init', '-q', '-b', 'main']);
    git(ws, ['remote', 'add', 'origin', join(tmp, 'fork.git')]);
    return { home: join(tmp, 'home'), ws };
  }

  test('restore: false reports what changed and writes nothing', () => {
    const { home, ws } = clone();
    recordGitBaseline(home, 'run_abc', ws);
    git(ws, ['config', 'core.pager', 'evil']);
    const changed = readFileSync(join(ws, '.git', 'config'), 'utf8');
    const r = guardGitDir(home, 'run_abc', ws, { restore: false });
    expect(r.changes.join('\n')).toMatch(/\.git\/config changed since run-prepare \(keys: core\.pager\)/);
    expect(r.dangerous_keys).toEqual(['core.pager']);
    expect(r.restored).toEqual([]);
    expect(readFileSync(join(ws, '.git', 'config'), 'utf8')).toBe(changed);
  });

  test('a harmless change (the commit identity) is put back but is not tampering', () => {
    const { home, ws } = clone();
    const b = recordGitBaseline(home, 'run_abc', ws);
    git(ws, ['config', 'user.name', 'worker']);
    const r = guardGitDir(home, 'run_abc', ws);
    expect(r).toMatchObject({ dangerous_keys: [], restored: ['.git/config'], origin_url: b.origin_url });
    expect(readFileSync(join(ws, '.git', 'config'), 'utf8')).toBe(b.files.config);
  });

  test('the record lives outside the clone, readable by the operator only', () => {
    const { home, ws } = clone();
    recordGitBaseline(home, 'run_abc', ws);
    const p = join(home, 'git-baselines', 'run_abc.json');
    expect(readFileSync(p, 'utf8')).toMatch(/"schema": "agentpr.git_baseline.v1"/);
    expect(statSync(p).mode & 0o777).toBe(0o600);
    expect(p.startsWith(ws)).toBe(false);
  });
});
