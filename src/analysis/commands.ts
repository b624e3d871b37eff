/**
 * What a shell command the agent ran was for. Codex reports commands as the full argv of a shell
 * wrapper (`/bin/zsh -lc 'make test'`), so the text is unwrapped, split into simple commands at
 * `&&`, `||`, `;`, `|`, newlines and `$(...)`, and each simple command is judged by its program and
 * subcommand. Judging words, not substrings, keeps `rg -n "bun test" .github` a read, not a test run.
 */

export const COMMAND_CATEGORIES = ['tests', 'lint_or_typecheck', 'dependency_install', 'git_ops', 'repo_reading', 'other'] as const;
export type CommandCategory = (typeof COMMAND_CATEGORIES)[number];

/** Things an agent must never do on the operator's machine. */
export type SafetyRule = 'sudo' | 'brew_install' | 'global_package_install' | 'uv_tool_install' | 'poetry_self';
/** Publishing work, which the orchestrator does itself (finish.sh) unless pushing is allowed. */
export type PushKind = 'git_commit' | 'git_push' | 'finish_sh';

export interface CommandFacts {
  category: CommandCategory;
  /** A test, lint or typecheck run: evidence for the test rule. */
  isTest: boolean;
  safety: SafetyRule[];
  push: PushKind[];
}

const PRIORITY: Record<CommandCategory, number> = {
  tests: 5,
  lint_or_typecheck: 4,
  dependency_install: 3,
  git_ops: 2,
  repo_reading: 1,
  other: 0,
};

const SHELLS = new Set(['sh', 'bash', 'zsh', 'dash', 'ksh', 'fish']);
const KEYWORDS = new Set(['do', 'then', 'else', 'elif', 'if', 'while', 'until', '!', '{', '}', 'time', 'nohup', 'exec', 'command', 'builtin', 'nice', 'stdbuf']);
const READERS = new Set([
  'ls', 'cat', 'head', 'tail', 'sed', 'awk', 'gawk', 'rg', 'grep', 'egrep', 'fgrep', 'ag', 'find', 'fd', 'tree', 'pwd', 'wc', 'nl',
  'less', 'more', 'file', 'stat', 'du', 'diff', 'jq', 'yq', 'readlink', 'realpath', 'which', 'whereis', 'type', 'bat', 'xxd', 'od',
  'sort', 'uniq', 'cut', 'tr', 'column', 'basename', 'dirname', 'printf', 'echo',
]);
const PYTEST_LIKE = new Set([
  'pytest', 'py.test', 'tox', 'nox', 'jest', 'vitest', 'mocha', 'ava', 'tap', 'rspec', 'phpunit', 'pest', 'ctest', 'karma', 'playwright', 'cypress',
  'unittest', 'trial', 'behave', 'jasmine', 'uvu', 'nextest',
]);
const LINTERS = new Set([
  'ruff', 'flake8', 'pylint', 'mypy', 'pyright', 'basedpyright', 'pyre', 'black', 'isort', 'tsc', 'vue-tsc', 'eslint', 'prettier', 'biome',
  'golangci-lint', 'shellcheck', 'stylelint', 'rubocop', 'hadolint', 'markdownlint', 'codespell', 'bandit', 'pre-commit', 'ty',
]);
const TEST_SCRIPT = /^(test|tests|unit|e2e|integration|check|ci|coverage)([:_.-].*)?$/i;
const LINT_SCRIPT = /^(lint|typecheck|type-check|type_check|types|tsc|check-types|check:types|format:check|fmt:check|format-check|fmt-check|mypy|ruff|eslint|pyright|style|static)([:_.-].*)?$/i;
const INSTALL_SUBCOMMANDS = new Set(['install', 'i', 'ci', 'add', 'sync']);

const PLAIN_RUN = /[^\s'"\\$`;&|()<>#]+/y;

/** Tokenise a shell command line into simple commands (arrays of words). Approximate, never throws. */
export function splitShell(text: string, depth = 0): string[][] {
  const segments: string[][] = [];
  let words: string[] = [];
  let word = '';
  let inWord = false;
  const endWord = (): void => {
    if (inWord) words.push(word);
    word = '';
    inWord = false;
  };
  const endSegment = (): void => {
    endWord();
    if (words.length) segments.push(words);
    words = [];
  };
  let i = 0;
  const n = text.length;
  while (i < n) {
    const c = text[i]!;
    if (c === "'") {
      const close = text.indexOf("'", i + 1);
      const end = close === -1 ? n : close;
      word += text.slice(i + 1, end);
      inWord = true;
      i = end + 1;
      continue;
    }
    if (c === '"') {
      i++;
      inWord = true;
      while (i < n && text[i] !== '"') {
        if (text[i] === '\\' && i + 1 < n && '"\\$`\n'.includes(text[i + 1]!)) {
          word += text[i + 1];
          i += 2;
          continue;
        }
        if (text[i] === '$' && text[i + 1] === '(') {
          const end = matchParen(text, i + 1);
          if (depth < 4) segments.push(...splitShell(text.slice(i + 2, end), depth + 1));
          word += text.slice(i, end + 1);
          i = end + 1;
          continue;
        }
        // Copy the run up to the next character that needs a look.
        let j = i + 1;
        while (j < n && text[j] !== '"' && text[j] !== '\\' && text[j] !== '$') j++;
        word += text.slice(i, j);
        i = j;
      }
      i++;
      continue;
    }
    if (c === '\\') {
      if (i + 1 < n && text[i + 1] !== '\n') {
        word += text[i + 1];
        inWord = true;
      }
      i += 2;
      continue;
    }
    if (c === '$' && text[i + 1] === '(') {
      const end = matchParen(text, i + 1);
      if (depth < 4) segments.push(...splitShell(text.slice(i + 2, end), depth + 1));
      word += text.slice(i, end + 1);
      inWord = true;
      i = end + 1;
      continue;
    }
    if (c === '`') {
      const close = text.indexOf('`', i + 1);
      const end = close === -1 ? n : close;
      if (depth < 4) segments.push(...splitShell(text.slice(i + 1, end), depth + 1));
      word += text.slice(i, end + 1);
      inWord = true;
      i = end + 1;
      continue;
    }
    if (c === ' ' || c === '\t') {
      endWord();
      i++;
      continue;
    }
    if (c === '\n' || c === ';' || c === '&' || c === '|' || c === '(' || c === ')') {
      endSegment();
      i++;
      continue;
    }
    if (c === '#' && !inWord) {
      const nl = text.indexOf('\n', i);
      i = nl === -1 ? n : nl;
      continue;
    }
    if ((c === '>' || c === '<') && !inWord) {
      // A redirection: skip the operator and its target word.
      i++;
      while (i < n && (text[i] === '>' || text[i] === '&' || text[i] === '<')) i++;
      while (i < n && (text[i] === ' ' || text[i] === '\t')) i++;
      while (i < n && !' \t\n;&|()'.includes(text[i]!)) i++;
      continue;
    }
    if ((c === '>' || c === '<') && inWord && /^\d+$/.test(word)) {
      word = '';
      inWord = false;
      continue;
    }
    PLAIN_RUN.lastIndex = i;
    const run = PLAIN_RUN.exec(text);
    if (run) {
      word += run[0];
      i += run[0].length;
    } else {
      word += c;
      i++;
    }
    inWord = true;
  }
  endSegment();
  return segments;
}

function matchParen(text: string, open: number): number {
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    const c = text[i];
    if (c === '(') depth++;
    else if (c === ')') {
      depth--;
      if (depth === 0) return i;
    } else if (c === "'") {
      const close = text.indexOf("'", i + 1);
      if (close === -1) return text.length;
      i = close;
    }
  }
  return text.length;
}

function base(word: string): string {
  const slash = word.lastIndexOf('/');
  return slash === -1 ? word : word.slice(slash + 1);
}

const ASSIGNMENT = /^[A-Za-z_][A-Za-z0-9_]*=/;

interface Judged {
  category: CommandCategory;
  isTest: boolean;
}

/** Classify a full command string as codex reports it. */
export function classifyCommand(command: string): CommandFacts {
  const facts: CommandFacts = { category: 'other', isTest: false, safety: [], push: [] };
  for (const words of splitShell(command)) judgeSegment(words, facts, 0);
  facts.safety = [...new Set(facts.safety)];
  facts.push = [...new Set(facts.push)];
  return facts;
}

function merge(facts: CommandFacts, judged: Judged): void {
  if (PRIORITY[judged.category] > PRIORITY[facts.category]) facts.category = judged.category;
  if (judged.isTest) facts.isTest = true;
}

function judgeSegment(input: string[], facts: CommandFacts, depth: number): void {
  let w = input;
  // Peel wrappers until the real program is first.
  for (let guard = 0; guard < 12 && w.length; guard++) {
    const first = w[0]!;
    const prog = base(first);
    if (ASSIGNMENT.test(first) || KEYWORDS.has(first)) {
      w = w.slice(1);
      continue;
    }
    if (prog === 'export' || prog === 'cd' || prog === 'set' || prog === 'source' || prog === '.' || prog === 'true' || prog === 'false' || prog === 'local' || prog === 'unset') {
      return;
    }
    if (prog === 'sudo' || prog === 'doas') {
      facts.safety.push('sudo');
      w = w.slice(1);
      while (w.length && w[0]!.startsWith('-')) w = w.slice(w[0] === '-u' || w[0] === '-g' ? 2 : 1);
      continue;
    }
    if (prog === 'env') {
      w = w.slice(1);
      while (w.length && (w[0]!.startsWith('-') || ASSIGNMENT.test(w[0]!))) w = w.slice(1);
      continue;
    }
    if (prog === 'timeout' || prog === 'gtimeout') {
      w = w.slice(1);
      while (w.length && w[0]!.startsWith('-')) w = w.slice(1);
      w = w.slice(1);
      continue;
    }
    if (prog === 'xargs') {
      w = w.slice(1);
      while (w.length && w[0]!.startsWith('-')) w = w.slice(w[0] === '-I' || w[0] === '-n' || w[0] === '-P' ? 2 : 1);
      continue;
    }
    if (SHELLS.has(prog)) {
      const rest = w.slice(1);
      const flagAt = rest.findIndex((x) => /^-[a-z]*c[a-z]*$/.test(x));
      if (flagAt !== -1 && rest[flagAt + 1] !== undefined) {
        if (depth < 4) for (const seg of splitShell(rest[flagAt + 1]!)) judgeSegment(seg, facts, depth + 1);
        return;
      }
      const script = rest.find((x) => !x.startsWith('-'));
      if (script && base(script) === 'finish.sh') facts.push.push('finish_sh');
      return;
    }
    if ((prog === 'uv' || prog === 'poetry' || prog === 'pipenv' || prog === 'pdm' || prog === 'rye' || prog === 'hatch') && w[1] === 'run') {
      w = w.slice(2);
      while (w.length && w[0]!.startsWith('-')) w = w.slice(1);
      if (prog === 'hatch' && w.length) {
        // `hatch run env:script` or a hatch script name such as `hatch run test`.
        const colon = w[0]!.indexOf(':');
        if (colon > 0 && !w[0]!.includes('/')) w = [w[0]!.slice(colon + 1), ...w.slice(1)];
        if (w.length && TEST_SCRIPT.test(w[0]!) && !isKnownProgram(w[0]!)) return merge(facts, { category: 'tests', isTest: true });
        if (w.length && LINT_SCRIPT.test(w[0]!) && !isKnownProgram(w[0]!)) return merge(facts, { category: 'lint_or_typecheck', isTest: true });
      }
      continue;
    }
    if (prog === 'conda' && w[1] === 'run') {
      w = w.slice(2);
      while (w.length && w[0]!.startsWith('-')) w = w.slice(w[0] === '-n' || w[0] === '-p' ? 2 : 1);
      continue;
    }
    if (prog === 'npx' || prog === 'bunx' || prog === 'pnpx' || ((prog === 'pnpm' || prog === 'yarn') && (w[1] === 'dlx' || w[1] === 'exec'))) {
      w = w.slice(prog === 'npx' || prog === 'bunx' || prog === 'pnpx' ? 1 : 2);
      while (w.length && w[0]!.startsWith('-')) w = w.slice(1);
      continue;
    }
    if ((prog === 'bundle' || prog === 'bundler') && w[1] === 'exec') {
      w = w.slice(2);
      continue;
    }
    if (/^python(\d+(\.\d+)?)?$/.test(prog) && w[1] === '-m' && w[2]) {
      w = w.slice(2);
      continue;
    }
    break;
  }
  if (!w.length) return;
  merge(facts, judgeProgram(w, facts));
}

function isKnownProgram(word: string): boolean {
  return PYTEST_LIKE.has(word) || LINTERS.has(word) || READERS.has(word);
}

function onlyInfoFlags(args: string[]): boolean {
  return args.length > 0 && args.every((a) => a === '--version' || a === '-V' || a === '--help' || a === '-h');
}

function judgeProgram(w: string[], facts: CommandFacts): Judged {
  const prog = base(w[0]!);
  const args = w.slice(1);
  const sub = args.find((a) => !a.startsWith('-'));
  const none: Judged = { category: 'other', isTest: false };
  if (prog === 'finish.sh') {
    facts.push.push('finish_sh');
    return { category: 'git_ops', isTest: false };
  }
  if (onlyInfoFlags(args)) return none;
  if (PYTEST_LIKE.has(prog)) return { category: 'tests', isTest: true };
  if (prog === 'ruff') {
    if (args[0] === 'format' && !args.includes('--check')) return none;
    return { category: 'lint_or_typecheck', isTest: true };
  }
  if ((prog === 'black' || prog === 'isort' || prog === 'prettier') && !args.some((a) => a === '--check' || a === '-c' || a === '--diff')) return none;
  if (prog === 'pre-commit' && sub !== 'run') return sub === 'install' ? { category: 'dependency_install', isTest: false } : none;
  if (LINTERS.has(prog)) return { category: 'lint_or_typecheck', isTest: true };
  switch (prog) {
    case 'node':
    case 'nodejs':
      // The built-in runner: `node --test`, `node --experimental-test-coverage --test test/`.
      if (args.includes('--test')) return { category: 'tests', isTest: true };
      return none;
    case 'php':
      if (sub === 'artisan' && args.includes('test')) return { category: 'tests', isTest: true };
      if (sub && PYTEST_LIKE.has(base(sub))) return { category: 'tests', isTest: true };
      return none;
    case 'swift':
    case 'flutter':
    case 'dart':
    case 'stack':
    case 'cabal':
    case 'lein':
    case 'sbt':
      if (sub === 'test') return { category: 'tests', isTest: true };
      return none;
    case 'zig':
      if (sub === 'test' || (sub === 'build' && args.includes('test'))) return { category: 'tests', isTest: true };
      return none;
    case 'make':
    case 'gmake':
    case 'just':
    case 'task': {
      const targets = args.filter((a) => !a.startsWith('-') && !a.includes('='));
      if (targets.some((t) => TEST_SCRIPT.test(t))) return { category: 'tests', isTest: true };
      if (targets.some((t) => LINT_SCRIPT.test(t) || /lint|typecheck|mypy/.test(t))) return { category: 'lint_or_typecheck', isTest: true };
      if (targets.some((t) => /^(install|deps|setup|bootstrap|dev-install|install-.*)$/.test(t))) return { category: 'dependency_install', isTest: false };
      return none;
    }
    case 'npm':
    case 'pnpm':
    case 'yarn':
    case 'bun': {
      const global = args.includes('-g') || args.includes('--global') || args.includes('--location=global') || (prog === 'yarn' && sub === 'global');
      if (global && (prog !== 'yarn' || args.includes('add'))) {
        if (sub && (INSTALL_SUBCOMMANDS.has(sub) || sub === 'global' || sub === 'link')) facts.safety.push('global_package_install');
      }
      if (sub === undefined) return prog === 'yarn' ? { category: 'dependency_install', isTest: false } : none;
      if (sub === 'test' || sub === 't' || sub === 'tst') return { category: 'tests', isTest: true };
      if (INSTALL_SUBCOMMANDS.has(sub) || sub === 'global') return { category: 'dependency_install', isTest: false };
      const script = sub === 'run' || sub === 'run-script' ? args[args.indexOf(sub) + 1] : prog === 'npm' ? undefined : sub;
      if (script !== undefined) {
        if (TEST_SCRIPT.test(script)) return { category: 'tests', isTest: true };
        // `pnpm vitest run`, `yarn jest`: these run the package's own binary of a test runner.
        if (prog !== 'npm' && PYTEST_LIKE.has(script)) return { category: 'tests', isTest: true };
        if (LINT_SCRIPT.test(script) || /lint|typecheck/.test(script)) return { category: 'lint_or_typecheck', isTest: true };
      }
      return none;
    }
    case 'deno':
      if (sub === 'test') return { category: 'tests', isTest: true };
      if (sub === 'lint' || sub === 'check') return { category: 'lint_or_typecheck', isTest: true };
      return none;
    case 'go':
      if (sub === 'test') return { category: 'tests', isTest: true };
      if (sub === 'vet') return { category: 'lint_or_typecheck', isTest: true };
      if (sub === 'get' || (sub === 'mod' && args.includes('download')) || sub === 'install') return { category: 'dependency_install', isTest: false };
      return none;
    case 'cargo':
      if (sub === 'test' || sub === 'nextest') return { category: 'tests', isTest: true };
      if (sub === 'clippy' || sub === 'check' || (sub === 'fmt' && args.includes('--check'))) return { category: 'lint_or_typecheck', isTest: true };
      if (sub === 'fetch' || sub === 'install') return { category: 'dependency_install', isTest: false };
      return none;
    case 'mvn':
    case 'mvnw':
    case 'gradle':
    case 'gradlew':
    case 'dotnet':
    case 'rake':
    case 'mix':
      if (args.some((a) => a === 'test' || a === 'verify' || a === 'check' || /^:?[\w:-]*:test$/.test(a) || (prog === 'rake' && a === 'spec'))) return { category: 'tests', isTest: true };
      return none;
    case 'hatch':
      if (sub === 'test') return { category: 'tests', isTest: true };
      if (sub === 'fmt') return args.includes('--check') ? { category: 'lint_or_typecheck', isTest: true } : none;
      if (sub === 'env' && args.includes('create')) return { category: 'dependency_install', isTest: false };
      return none;
    case 'pip':
    case 'pip3':
      return sub === 'install' || sub === 'download' ? { category: 'dependency_install', isTest: false } : none;
    case 'uv':
      if (sub === 'tool' && args.includes('install')) facts.safety.push('uv_tool_install');
      if (sub === 'sync' || sub === 'add' || sub === 'lock' || sub === 'venv' || (sub === 'pip' && args.includes('install')) || (sub === 'tool' && args.includes('install'))) {
        return { category: 'dependency_install', isTest: false };
      }
      return none;
    case 'poetry':
      if (sub === 'self') facts.safety.push('poetry_self');
      if (sub === 'install' || sub === 'add' || sub === 'lock' || sub === 'sync' || sub === 'self') return { category: 'dependency_install', isTest: false };
      if (sub === 'check') return { category: 'lint_or_typecheck', isTest: true };
      return none;
    case 'pipenv':
    case 'pdm':
    case 'rye':
    case 'bundle':
    case 'composer':
    case 'conda':
    case 'mamba':
    case 'micromamba':
    case 'gem':
    case 'apt':
    case 'apt-get':
    case 'port':
      return sub && INSTALL_SUBCOMMANDS.has(sub) ? { category: 'dependency_install', isTest: false } : none;
    case 'brew':
      if (sub === 'install' || sub === 'reinstall' || sub === 'upgrade' || sub === 'tap') {
        facts.safety.push('brew_install');
        return { category: 'dependency_install', isTest: false };
      }
      return none;
    case 'git': {
      let k = 0;
      while (k < args.length && args[k]!.startsWith('-')) k += args[k] === '-C' || args[k] === '-c' || args[k] === '--git-dir' || args[k] === '--work-tree' ? 2 : 1;
      const gsub = args[k];
      if (gsub === 'commit') facts.push.push('git_commit');
      if (gsub === 'push') facts.push.push('git_push');
      return { category: 'git_ops', isTest: false };
    }
    case 'gh':
      return { category: 'git_ops', isTest: false };
    case 'sed':
      if (args.some((a) => a === '-i' || a.startsWith('-i') || a === '--in-place')) return none;
      return { category: 'repo_reading', isTest: false };
    default:
      if (READERS.has(prog) || prog === 'test' || prog === '[') return { category: prog === 'echo' || prog === 'printf' || prog === 'test' || prog === '[' ? 'other' : 'repo_reading', isTest: false };
      return none;
  }
}

/** A short label for frequency counting: the command with the shell wrapper removed. */
export function displayCommand(command: string): string {
  const m = /^(?:\/\S*\/)?(?:ba|z|da|k)?sh\s+-\w*c\s+([\s\S]+)$/.exec(command);
  if (!m) return command;
  const inner = m[1]!;
  const first = inner[0];
  if ((first === "'" || first === '"') && inner.endsWith(first) && inner.length >= 2) {
    const words = splitShellWords(inner);
    return words.length === 1 ? words[0]! : inner;
  }
  return inner;
}

const LEADING_EXPORT = /^export\s+(?:[A-Za-z_]\w*=(?:"[^"]*"|'[^']*'|[^\s;]*)\s*)+;\s*/;
const LEADING_ASSIGN = /^(?:[A-Za-z_]\w*=(?:"[^"]*"|'[^']*'|\S*)\s+)+/;

/**
 * The command a person would name: shell wrapper, leading `export A=..;` and `A=..` assignments
 * removed (`/bin/zsh -lc 'export HOME=..; bun run typecheck'` -> `bun run typecheck`).
 */
export function shortCommand(command: string): string {
  let s = displayCommand(command).trim();
  for (let i = 0; i < 4; i++) {
    const next = s.replace(LEADING_EXPORT, '').replace(LEADING_ASSIGN, '');
    if (next === s) break;
    s = next;
  }
  return s || command;
}

/** The words of a single shell word list, quotes removed (used for unwrapping `zsh -lc '...'`). */
function splitShellWords(text: string): string[] {
  const out: string[] = [];
  let word = '';
  let inWord = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === "'") {
      const close = text.indexOf("'", i + 1);
      const end = close === -1 ? text.length : close;
      word += text.slice(i + 1, end);
      inWord = true;
      i = end;
    } else if (c === '"') {
      inWord = true;
      i++;
      while (i < text.length && text[i] !== '"') {
        if (text[i] === '\\' && '"\\$`'.includes(text[i + 1] ?? '')) i++;
        word += text[i];
        i++;
      }
    } else if (c === ' ' || c === '\t') {
      if (inWord) out.push(word);
      word = '';
      inWord = false;
    } else {
      word += c;
      inWord = true;
    }
  }
  if (inWord) out.push(word);
  return out;
}
