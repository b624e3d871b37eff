import { describe, expect, it } from 'vitest';
import { classifyCommand, splitShell } from '../../src/analysis/index.js';

describe('command categories', () => {
  const cases: Array<[string, string, boolean]> = [
    // [command as codex reports it, category, counts as test evidence]
    ["/bin/zsh -lc 'make test'", 'tests', true],
    ["/bin/zsh -lc 'HATCH_PYTHON=/opt/homebrew/bin/python3.11 make lint'", 'lint_or_typecheck', true],
    ["/bin/zsh -lc 'hatch run pytest tests/configs/test_prompts.py -q'", 'tests', true],
    ["/bin/zsh -lc 'hatch run dev_py_3_11:python -V && hatch run dev_py_3_11:which python && hatch run dev_py_3_11:which pytest'", 'repo_reading', false],
    ["/bin/zsh -lc 'HATCH_PYTHON=/x hatch run which pytest && HATCH_PYTHON=/x hatch run pytest --version'", 'repo_reading', false],
    ['/bin/zsh -lc \'export HOME="$PWD/.agentpr_runtime" XDG_CACHE_HOME="$PWD/.agentpr_runtime/cache"; bun run typecheck\'', 'lint_or_typecheck', true],
    ["/bin/zsh -lc 'BUN_INSTALL_CACHE_DIR=.agentpr_runtime/bun-cache bun test'", 'tests', true],
    ['/bin/zsh -lc \'export HOME="$PWD"; bun install --frozen-lockfile --ignore-scripts\'', 'dependency_install', false],
    ['/bin/zsh -lc \'hatch run pip install --upgrade pip && hatch run pip install -e ".[test]"\'', 'dependency_install', false],
    ['/bin/zsh -lc \'ls -la .github && rg -n "typecheck|bun test|bun run" .github -S\'', 'repo_reading', false],
    ["/bin/zsh -lc 'git status --short && git branch --show-current'", 'git_ops', false],
    ["/bin/zsh -lc \"git diff upstream/main..HEAD -- src/providers.ts | sed -n '1,260p'\"", 'git_ops', false],
    ["/bin/zsh -lc pwd", 'repo_reading', false],
    ["/bin/zsh -lc 'test -d node_modules && echo present || echo missing'", 'other', false],
    ['bash -lc "cd api && python -m pytest -x"', 'tests', true],
    ['bash -c "uv run mypy src && uv run ruff check ."', 'lint_or_typecheck', true],
    ['bash -c "ruff format src"', 'other', false],
    ['bash -c "npx tsc --noEmit"', 'lint_or_typecheck', true],
    ['bash -c "pnpm run lint:fix"', 'lint_or_typecheck', true],
    ['bash -c "npm test -- --watch=false"', 'tests', true],
    ['bash -c "npm ci"', 'dependency_install', false],
    ['bash -c "yarn"', 'dependency_install', false],
    ['bash -c "go test ./..."', 'tests', true],
    ['bash -c "cargo clippy -- -D warnings"', 'lint_or_typecheck', true],
    ['bash -c "tox -e py311"', 'tests', true],
    ['bash -c "poetry run pytest"', 'tests', true],
    ['bash -c "timeout 600 env CI=1 pytest -q"', 'tests', true],
    ["bash -c \"sed -i 's/a/b/' file.py\"", 'other', false],
    ['bash -c "cat $(git rev-parse --show-toplevel)/README.md"', 'git_ops', false],
    ['bash -c "for f in *.py; do python -m mypy $f; done"', 'lint_or_typecheck', true],
  ];
  for (const [cmd, category, isTest] of cases) {
    it(`${cmd} -> ${category}`, () => {
      expect(classifyCommand(cmd)).toMatchObject({ category, isTest });
    });
  }
});

describe('splitShell', () => {
  it('splits on operators outside quotes and unwraps quoting', () => {
    expect(splitShell(`a "b && c" 'd;e' && f | g; h\ni`)).toEqual([['a', 'b && c', 'd;e'], ['f'], ['g'], ['h'], ['i']]);
  });
  it('drops redirections and comments', () => {
    expect(splitShell('make test 2>&1 > out.log # run it')).toEqual([['make', 'test']]);
  });
  it('never throws on unbalanced quotes', () => {
    expect(splitShell(`echo "unterminated`)).toEqual([['echo', 'unterminated']]);
    expect(splitShell(`echo 'x $(`)).toEqual([['echo', 'x $(']]);
  });
});
