import { describe, expect, test } from 'vitest';
import { classifyCommand } from '../../src/analysis/commands.js';

/**
 * Test commands of the ecosystems people contribute to, as codex reports them (most wrapped in
 * `/bin/bash -lc '...'`), and commands that only mention a test runner. Each line is one case.
 */
const TESTS: string[] = [
  // JavaScript / TypeScript
  'node --test',
  'node --test test/',
  'node --experimental-test-coverage --test',
  "/bin/bash -lc 'node --test 2>&1 | tail -20'",
  'npm test',
  'npm run test',
  'npm run test:unit -- --watch=false',
  'npm t',
  'pnpm test',
  'pnpm run test',
  'pnpm vitest run',
  'yarn test',
  'yarn jest --ci',
  'bun test',
  'bun run test',
  'npx vitest run',
  'npx jest src/a.test.ts',
  'npx mocha',
  'npx ava',
  'npx tap',
  'npx --yes vitest run --reporter=dot',
  'pnpm exec vitest run',
  'deno test -A',
  "/bin/zsh -lc 'cd packages/core && npm test'",
  // Python
  'pytest',
  'pytest -q tests/test_api.py::test_get',
  'python -m pytest -x',
  'python3 -m pytest tests',
  'python3.12 -m unittest discover',
  'uv run pytest -q',
  'poetry run pytest',
  'tox -e py312',
  'nox -s tests',
  'hatch test',
  'PYTHONPATH=src pytest tests',
  // Go, Rust
  'go test ./...',
  'go test -run TestX ./pkg/...',
  'cargo test',
  'cargo test --workspace --all-features',
  'cargo nextest run',
  // JVM
  'mvn test',
  'mvn -q verify',
  './mvnw test',
  'gradle test',
  './gradlew test',
  './gradlew :core:test',
  'sbt test',
  // make and friends
  'make test',
  'make check',
  'make -C build test',
  'just test',
  // Ruby, PHP, .NET, C/C++, Swift, Elixir, others
  'rspec',
  'bundle exec rspec spec/models',
  'bundle exec rake test',
  'rake test',
  'rake spec',
  'phpunit',
  'vendor/bin/phpunit --filter UserTest',
  'php vendor/bin/phpunit',
  'php artisan test',
  'dotnet test',
  'dotnet test src/App.Tests/App.Tests.csproj',
  'ctest --test-dir build',
  'ctest --output-on-failure',
  'swift test',
  'mix test',
  'flutter test',
  'dart test',
  'zig build test',
  'timeout 300 go test ./...',
  'env CI=1 npm test',
];

const NOT_TESTS: string[] = [
  'rg "bun test"',
  'rg -n "bun test" .github',
  'grep -r "pytest" .',
  'which pytest',
  'command -v pytest',
  'pytest --version',
  'node --version',
  'cat pytest.ini',
  'cat package.json',
  'sed -n 1,40p tests/test_api.py',
  'ls test',
  'node scripts/build.js',
  'npm install',
  'go build ./...',
  'cargo build',
  'echo "run npm test next"',
  'git log --oneline -5',
];

describe('test commands, table-driven', () => {
  test(`the table holds at least 60 test command lines (${TESTS.length})`, () => {
    expect(TESTS.length).toBeGreaterThanOrEqual(60);
  });
  test.each(TESTS)('%s is a test run', (cmd) => {
    expect(classifyCommand(cmd)).toMatchObject({ isTest: true, category: 'tests' });
  });
  test.each(NOT_TESTS)('%s is not a test run', (cmd) => {
    expect(classifyCommand(cmd).isTest).toBe(false);
  });
});
