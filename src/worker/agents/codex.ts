import { statSync } from 'node:fs';
import { loadExeca } from '../../exec.js';
import { ConfigurationError, UserInputError } from '../../core/errors.js';

/**
 * The Codex CLI adapter: everything agentpr knows about one agent CLI lives here, behind a small
 * interface, so that supporting a second agent CLI is one more module like this one.
 *
 *   probeAgent(bin, env)        -> AgentProbe        version and the flags `exec --help` lists (cached by path+mtime+size)
 *   buildAgentArgs(probe, opts) -> string[]          the command line, built only from flags the binary has
 *   acceptanceArgs(args)        -> string[]          the same command line ending in --help: the binary parses it without running
 *   checkExtraArgs(args)        -> void              refuses flags agentpr owns
 *   FAILURE_PATTERNS                                 config / hard / transient patterns, each with a line from a real stream
 *   CODEX_VERSIONS_RUN                               versions the test suite drives for real
 *
 * The prompt never travels in argv: the command line ends in `-` and the prompt arrives on stdin.
 * The stream itself (`--json` JSONL) is read by src/analysis/stream-parser.ts.
 */

/** Versions of the Codex CLI the test suite runs for real (the pinned devDependency). */
export const CODEX_VERSIONS_RUN = ['0.171.0'] as const;

export type Sandbox = 'read-only' | 'workspace-write' | 'danger-full-access';

export interface AgentProbe {
  bin: string;
  /** `codex-cli 0.171.0` -> `0.171.0`; null when --version printed nothing recognisable. */
  version: string | null;
  versionLine: string;
  /** Every flag `codex exec --help` lists, long and short (`--json`, `-o`, ...). */
  flags: ReadonlySet<string>;
}

/** Raised when the installed codex lacks a flag agentpr needs, or cannot be probed. */
export class AgentCapabilityError extends ConfigurationError {
  constructor(message: string) {
    super(message);
    this.name = 'AgentCapabilityError';
  }
}

/** Flags agentpr builds itself; a policy's codex_extra_args or a call's codex_args may not set them. */
export const OWNED_FLAGS: readonly string[] = [
  '--sandbox',
  '-s',
  '--json',
  '--output-last-message',
  '-o',
  '--model',
  '-m',
  '--cd',
  '-C',
  '--dangerously-bypass-approvals-and-sandbox',
  '--full-auto',
  '--add-dir',
  '--remote',
  '--remote-auth-token-env',
  '--oss',
  '--image',
  '-i',
  '--output-schema',
  '--worktree',
  '--dangerously-bypass-hook-trust',
  '--trust',
  '--help',
  '-h',
  '--version',
  '-V',
];

/** Flags agentpr needs: without them the stream, the sandbox or the final message would be missing. */
const REQUIRED: ReadonlyArray<{ flags: string[]; why: string }> = [
  { flags: ['--json'], why: 'the JSONL event stream the verdict reads' },
  { flags: ['--sandbox', '-s'], why: 'the sandbox the policy chose' },
  { flags: ['--output-last-message', '-o'], why: "the worker's final message" },
];

const PROBE_TIMEOUT_MS = 15_000;
const probeCache = new Map<string, AgentProbe>();

/** The flags a clap-style help text lists (`  -o, --output-last-message <FILE>`, `      --json`). */
export function parseHelpFlags(help: string): Set<string> {
  const flags = new Set<string>();
  for (const line of help.split('\n')) {
    const m = /^\s{1,12}((?:-[A-Za-z0-9](?:,\s*)?)?(?:--[A-Za-z0-9][A-Za-z0-9-]*)?)(?=[\s<=[]|$)/.exec(line);
    if (!m || !m[1]) continue;
    for (const f of m[1].split(/,\s*/)) if (/^--?[A-Za-z0-9]/.test(f)) flags.add(f.trim());
  }
  return flags;
}

export function parseVersion(text: string): string | null {
  const m = /\b(\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?)\b/.exec(text);
  return m ? m[1]! : null;
}

function firstLine(text: unknown): string {
  return String(text ?? '').split('\n').find((l) => l.trim())?.trim() ?? '';
}

function cacheKey(bin: string): string {
  try {
    const st = statSync(bin);
    return `${bin}\0${st.mtimeMs}\0${st.size}`;
  } catch {
    return `${bin}\0?`;
  }
}

/**
 * Runs `<bin> --version` and `<bin> exec --help` once per binary (by path, mtime and size) and
 * returns what they say. Throws AgentCapabilityError when either does not answer.
 */
export async function probeAgent(bin: string, env: NodeJS.ProcessEnv): Promise<AgentProbe> {
  const key = cacheKey(bin);
  const cached = probeCache.get(key);
  if (cached) return cached;
  const { execa } = await loadExeca();
  const opts = { env, extendEnv: false, timeout: PROBE_TIMEOUT_MS, reject: false, stdin: 'ignore' as const };
  const v = await execa(bin, ['--version'], opts);
  if (v.exitCode !== 0) {
    const why = v.timedOut ? `did not answer within ${PROBE_TIMEOUT_MS / 1000} s` : `exited ${v.exitCode ?? v.signal}: ${firstLine(v.stderr) || firstLine(v.stdout) || firstLine(v.message)}`;
    throw new AgentCapabilityError(`${bin} --version ${why}`);
  }
  const h = await execa(bin, ['exec', '--help'], opts);
  const helpText = String(h.stdout ?? '');
  if (h.exitCode !== 0 || !helpText.trim()) {
    throw new AgentCapabilityError(
      `${bin} exec --help exited ${h.exitCode ?? h.signal}: ${firstLine(h.stderr) || firstLine(h.stdout) || 'no output'}; agentpr reads the supported flags from it. Install a current Codex CLI (npm i -g @openai/codex)`,
    );
  }
  const versionLine = firstLine(v.stdout);
  const probe: AgentProbe = { bin, version: parseVersion(versionLine), versionLine, flags: parseHelpFlags(helpText) };
  probeCache.set(key, probe);
  return probe;
}

/** Forget cached probes (tests that swap a binary in place within one mtime tick). */
export function clearProbeCache(): void {
  probeCache.clear();
  acceptedCache.clear();
}

/** The first of `names` the binary lists, or null. */
function pick(probe: AgentProbe, names: string[]): string | null {
  return names.find((n) => probe.flags.has(n)) ?? null;
}

/** Refuses, naming the version and flag, when the binary lacks something agentpr needs. */
export function assertCapabilities(probe: AgentProbe): void {
  for (const r of REQUIRED) {
    if (!pick(probe, r.flags)) {
      throw new AgentCapabilityError(
        `codex ${probe.version ?? `(${probe.versionLine || 'unknown version'})`} at ${probe.bin} has no ${r.flags.join('/')} flag in 'codex exec --help'; agentpr needs it for ${r.why}. Install a Codex CLI that has it (npm i -g @openai/codex@${CODEX_VERSIONS_RUN[0]}) or point AGENTPR_CODEX_BIN at one`,
      );
    }
  }
}

/** Refuses extra arguments that set what agentpr owns (sandbox, stream, output, model, directories). */
export function checkExtraArgs(args: readonly string[], source: string): void {
  for (const a of args) {
    if (typeof a !== 'string' || !a.length) throw new UserInputError(`${source}: every argument must be a non-empty string`);
    const name = a.startsWith('--') ? a.split('=')[0]! : a.startsWith('-') && a.length >= 2 ? a.slice(0, 2) : null;
    if (name && OWNED_FLAGS.includes(name)) {
      throw new UserInputError(
        `${source}: ${name} is set by agentpr (sandbox, event stream, last message, model, directories and approvals are its own); use the sandbox/model inputs or policy keys instead, and pass only other codex flags such as -c key=value`,
      );
    }
    if (a === '-' || a === 'exec' || a === 'resume') throw new UserInputError(`${source}: '${a}' is not a flag; give only codex exec options such as -c key=value`);
  }
}

/**
 * What a single call's codex_args may contain. A call comes from an MCP client, a chat or a model,
 * so it gets an allowlist: `-c key=value` for model tuning keys only (never the sandbox,
 * approvals, permissions, environment policy, providers, MCP servers, notify programs, hooks or
 * profiles, which would let the caller choose what the policy chose), and a few harmless flags.
 * The operator's policy codex_extra_args only has to leave agentpr's own flags alone.
 */
export const CALL_ALLOWED_FLAGS: readonly string[] = ['-c', '--config', '--ephemeral', '--skip-git-repo-check', '--strict-config'];
export const CALL_ALLOWED_CONFIG_KEYS: readonly string[] = [
  'model_reasoning_effort',
  'model_reasoning_summary',
  'model_verbosity',
  'model_context_window',
  'model_auto_compact_token_limit',
  'hide_agent_reasoning',
  'show_raw_agent_reasoning',
];

export function checkCallArgs(args: readonly string[], source = 'codex_args'): void {
  checkExtraArgs(args, source);
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const name = a.startsWith('--') ? a.split('=')[0]! : a.startsWith('-') ? a.slice(0, 2) : null;
    if (name === null) throw new UserInputError(`${source}: '${a}' is not a flag; values follow their flag (e.g. -c model_reasoning_effort="high")`);
    if (!CALL_ALLOWED_FLAGS.includes(name)) {
      throw new UserInputError(`${source}: ${name} is not allowed per call; allowed: ${CALL_ALLOWED_FLAGS.join(', ')} (an operator can set other flags in policy run_agent_step.codex_extra_args)`);
    }
    if (name === '-c' || name === '--config') {
      const inline = a.startsWith('--config=') ? a.slice('--config='.length) : a.length > 2 && name === '-c' ? a.slice(2) : undefined;
      const value = inline ?? args[++i];
      const key = value?.split('=')[0]?.trim() ?? '';
      if (!value || !value.includes('=') || !CALL_ALLOWED_CONFIG_KEYS.includes(key)) {
        throw new UserInputError(
          `${source}: -c ${value ?? '(missing)'} is not allowed per call; -c takes key=value with key one of ${CALL_ALLOWED_CONFIG_KEYS.join(', ')} (sandbox, approvals, providers and programs are the policy's)`,
        );
      }
    }
  }
}

export interface AgentArgsOptions {
  sandbox: Sandbox;
  model?: string;
  lastMessagePath: string;
  /** Operator flags (policy codex_extra_args, then the call's codex_args), already checked. */
  extraArgs?: readonly string[];
}

/**
 * `codex exec --sandbox S [--model M] --json --output-last-message <path> [extra...] -`, with the
 * spelling of each flag the binary lists; the prompt comes on stdin. `--full-auto` is never
 * added: codex 0.171.0 refuses it, and --sandbox already says what it used to.
 */
export function buildAgentArgs(probe: AgentProbe, opts: AgentArgsOptions): string[] {
  assertCapabilities(probe);
  const args = ['exec', pick(probe, ['--sandbox', '-s'])!, opts.sandbox];
  if (opts.model) {
    const m = pick(probe, ['--model', '-m']);
    if (!m) throw new AgentCapabilityError(`codex ${probe.version ?? '(unknown version)'} at ${probe.bin} has no --model flag; remove codex_model from the policy or the model input`);
    args.push(m, opts.model);
  }
  args.push('--json', pick(probe, ['--output-last-message', '-o'])!, opts.lastMessagePath);
  for (const a of opts.extraArgs ?? []) {
    const name = a.startsWith('--') ? a.split('=')[0]! : null;
    if (name && !probe.flags.has(name)) {
      throw new AgentCapabilityError(`codex ${probe.version ?? '(unknown version)'} has no ${name} flag (extra codex arguments); check 'codex exec --help' and fix codex_extra_args / codex_args`);
    }
    args.push(a);
  }
  args.push('-');
  return args;
}

/** The command line with `-` replaced by --help: clap parses every flag and value, then prints help (exit 0) instead of running. */
export function acceptanceArgs(args: readonly string[]): string[] {
  return [...(args[args.length - 1] === '-' ? args.slice(0, -1) : args), '--help'];
}

/** Whether the binary accepts the command line; the error line when it does not. */
const acceptedCache = new Map<string, { ok: boolean; detail: string }>();

export async function checkAccepted(bin: string, args: readonly string[], env: NodeJS.ProcessEnv): Promise<{ ok: boolean; detail: string }> {
  const key = `${cacheKey(bin)}\0${args.join('\0')}`;
  const hit = acceptedCache.get(key);
  if (hit) return hit;
  const result = await runAccepted(bin, args, env);
  if (result.ok) acceptedCache.set(key, result);
  return result;
}

async function runAccepted(bin: string, args: readonly string[], env: NodeJS.ProcessEnv): Promise<{ ok: boolean; detail: string }> {
  const { execa } = await loadExeca();
  const r = await execa(bin, acceptanceArgs(args), { env, extendEnv: false, timeout: PROBE_TIMEOUT_MS, reject: false, stdin: 'ignore' });
  if (r.exitCode === 0) return { ok: true, detail: 'accepted' };
  const err = String(r.stderr ?? '').split('\n').find((l) => /error/i.test(l)) ?? firstLine(r.stderr) ?? firstLine(r.stdout);
  return { ok: false, detail: `exit ${r.exitCode ?? r.signal}: ${err || 'no message'}` };
}

// ---- failure patterns ---------------------------------------------------------------------------

export type FailureKind = 'config' | 'hard' | 'transient';

export interface FailurePattern {
  kind: FailureKind;
  name: string;
  re: RegExp;
  /** A line this pattern exists for, taken from a real codex stream or stderr (tests assert it matches). */
  example: string;
}

/**
 * How a failed worker's stderr and stream errors are read, in this order: configuration errors
 * (retrying cannot help; the operator fixes codex's setup), hard failures, transient failures.
 */
export const FAILURE_PATTERNS: readonly FailurePattern[] = [
  // configuration: the command line, the provider, config.toml, the model
  { kind: 'config', name: 'unknown codex flag', re: /error: unexpected argument '[^']*' found|error: invalid value '[^']*' for '[^']*'/i, example: "error: unexpected argument '--full-auto' found" },
  { kind: 'config', name: 'provider key variable unset', re: /Missing environment variable: `?[A-Za-z_][A-Za-z0-9_]*`?/, example: 'Missing environment variable: `MOCK_KEY`.' },
  { kind: 'config', name: 'bad config.toml', re: /Error loading config\.toml|error loading config|unknown variant `[^`]*`.*wire_api|config\.toml:\d+:\d+/i, example: 'Error loading config.toml:' },
  { kind: 'config', name: 'model without metadata', re: /Model metadata for `[^`]*` not found/, example: 'Model metadata for `no-such-model-x` not found. Defaulting to fallback metadata; this can degrade performance and cause issues.' },
  { kind: 'config', name: 'unknown model provider', re: /Model provider `[^`]*` not found|unknown model provider/i, example: 'Model provider `mock` not found' },
  // hard: a retry meets the same wall
  { kind: 'hard', name: 'permission denied', re: /permission denied/i, example: 'fatal: could not open .git/index: Permission denied' },
  { kind: 'hard', name: 'read-only file system', re: /read-only file system/i, example: "touch: cannot touch '/usr/x': Read-only file system" },
  {
    kind: 'hard',
    name: 'authentication failed',
    re: /authentication failed|invalid api key|incorrect api key|unauthori[sz]ed|\b(?:HTTP(?:\/[\d.]+)?|status(?: code)?:?)\s*401\b/i,
    example: 'unexpected status 401 Unauthorized: Incorrect API key provided, url: http://127.0.0.1:18123/v1/responses',
  },
  { kind: 'hard', name: 'not a git repository', re: /not a git repository/i, example: 'fatal: not a git repository (or any of the parent directories): .git' },
  { kind: 'hard', name: 'repository not found', re: /repository not found/i, example: 'remote: Repository not found.' },
  { kind: 'hard', name: 'command not found', re: /command not found|exit(?:ed)? (?:with )?(?:code|status) 127\b|\bENOENT\b.*spawn/i, example: 'bash: line 1: pytest: command not found' },
  { kind: 'hard', name: 'index.lock', re: /index\.lock/i, example: "fatal: Unable to create '/w/.git/index.lock': File exists." },
  { kind: 'hard', name: 'no space left on device', re: /no space left on device|disk quota exceeded/i, example: 'write error: No space left on device' },
  { kind: 'hard', name: 'forbidden', re: /\b403\b.*forbidden|forbidden.*\b403\b/i, example: 'unexpected status 403 Forbidden: ...' },
  { kind: 'hard', name: 'sandbox denied', re: /operation not permitted|sandbox (?:denied|violation)/i, example: 'mkdir: cannot create directory /root/x: Operation not permitted' },
  // transient: passes on a later try
  { kind: 'transient', name: 'high demand', re: /experiencing high demand|may cause temporary errors/i, example: 'We’re currently experiencing high demand, which may cause temporary errors.' },
  { kind: 'transient', name: 'reconnects exhausted', re: /Reconnecting\.\.\. (\d+)\/\1\b|exceeded retry limit/i, example: 'Reconnecting... 5/5 (unexpected status 503 Service Unavailable: unavailable, url: http://127.0.0.1:18123/v1/responses)' },
  { kind: 'transient', name: 'timed out', re: /timed? ?out|timeout|\bETIMEDOUT\b/i, example: 'request timed out' },
  { kind: 'transient', name: 'connection reset', re: /connection reset|\bECONNRESET\b|socket hang up|broken pipe/i, example: 'error sending request: connection reset by peer' },
  { kind: 'transient', name: 'connection refused', re: /connection refused|\bECONNREFUSED\b/i, example: 'error sending request for url (http://127.0.0.1:9/v1/responses): Connection refused' },
  {
    kind: 'transient',
    name: 'could not resolve host',
    re: /could not resolve host|temporary failure in name resolution|\bEAI_AGAIN\b|\bENOTFOUND\b|name or service not known/i,
    example: 'dns error: failed to lookup address information: Temporary failure in name resolution',
  },
  { kind: 'transient', name: 'network unreachable', re: /network is unreachable|\bENETUNREACH\b|stream disconnected|connection closed/i, example: 'stream disconnected before completion: connection closed' },
  { kind: 'transient', name: 'rate limit', re: /rate.?limit|too many requests|\b(?:HTTP(?:\/[\d.]+)?|status(?: code)?:?)\s*429\b/i, example: 'exceeded retry limit, last status: 429 Too Many Requests' },
  {
    kind: 'transient',
    name: 'HTTP 5xx',
    re: /\b(?:HTTP(?:\/[\d.]+)?|status(?: code)?:?)\s*5\d\d\b|\b50[0234] (?:internal server error|bad gateway|service unavailable|gateway time-?out)|server error|overloaded/i,
    example: 'unexpected status 503 Service Unavailable: unavailable, url: http://127.0.0.1:18123/v1/responses',
  },
  { kind: 'transient', name: 'temporarily unavailable', re: /temporarily unavailable|try again later|service unavailable/i, example: 'the service is temporarily unavailable, try again later' },
];

export const patternsOf = (kind: FailureKind): FailurePattern[] => FAILURE_PATTERNS.filter((p) => p.kind === kind);
