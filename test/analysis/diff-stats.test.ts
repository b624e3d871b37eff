import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { computeDiffStats, readHeadSha } from '../../src/analysis/index.js';
import { UserInputError } from '../../src/core/errors.js';
import { tempDir } from '../helpers/app.js';
import { rmSync } from 'node:fs';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function repo(): Promise<string> {
  const dir = tempDir('agentpr-diff-');
  dirs.push(dir);
  await execa('git', ['init', '-q', '-b', 'main', dir]);
  await execa('git', ['-C', dir, 'config', 'user.email', 't@example.com']);
  await execa('git', ['-C', dir, 'config', 'user.name', 'T']);
  return dir;
}

function write(dir: string, path: string, content: string | Buffer): void {
  mkdirSync(join(dir, path, '..'), { recursive: true });
  writeFileSync(join(dir, path), content);
}

describe('diff stats', () => {
  it('counts tracked changes against HEAD and untracked files, ignoring runtime and cache paths', async () => {
    const dir = await repo();
    write(dir, 'src/app.py', 'a\nb\nc\n');
    write(dir, 'README.md', 'hello\n');
    await execa('git', ['-C', dir, 'add', '.']);
    await execa('git', ['-C', dir, 'commit', '-q', '-m', 'init']);
    const head = (await execa('git', ['-C', dir, 'rev-parse', 'HEAD'])).stdout.trim();

    write(dir, 'src/app.py', 'a\nB\nc\nd\ne\n'); // +3 -1, unstaged
    write(dir, 'src/new.py', 'x = 1\ny = 2'); // staged new file: 2 lines (last without newline)
    await execa('git', ['-C', dir, 'add', 'src/new.py']);
    write(dir, 'tests/test_new.py', 'def test():\n    assert True\n'); // untracked: 2 lines
    write(dir, 'assets/logo.bin', Buffer.from([0, 1, 2, 3, 10, 10]));
    for (const p of ['.agentpr_runtime/cache/x.json', 'node_modules/pkg/index.js', '.venv/lib/site.py', 'src/__pycache__/app.cpython-311.pyc', '.pytest_cache/v/cache', '.ruff_cache/x', '.mypy_cache/y']) {
      write(dir, p, 'ignored\nlines\n');
    }

    const s = await computeDiffStats(dir);
    expect(s.head_sha).toBe(head);
    expect(s.changed_files).toBe(4);
    expect(s.added_lines).toBe(3 + 2 + 2);
    expect(s.deleted_lines).toBe(1);
    expect(s.ignored_files).toBe(7);
    expect(s.files.sort((a, b) => a.path.localeCompare(b.path))).toEqual([
      { path: 'assets/logo.bin', added: 0, deleted: 0, binary: true, untracked: true },
      { path: 'src/app.py', added: 3, deleted: 1, binary: false, untracked: false },
      { path: 'src/new.py', added: 2, deleted: 0, binary: false, untracked: false },
      { path: 'tests/test_new.py', added: 2, deleted: 0, binary: false, untracked: true },
    ]);
  });

  it('works in a repository without commits', async () => {
    const dir = await repo();
    write(dir, 'a.txt', '1\n2\n');
    expect(await readHeadSha(dir)).toBeNull();
    expect(await computeDiffStats(dir)).toMatchObject({ head_sha: null, changed_files: 1, added_lines: 2 });
  });

  it('a directory that is not a git worktree is a clear error', async () => {
    const dir = tempDir('agentpr-nogit-');
    dirs.push(dir);
    await expect(computeDiffStats(dir)).rejects.toThrow(UserInputError);
    await expect(computeDiffStats(dir)).rejects.toThrow(`not a git worktree: ${dir}`);
  });
});
