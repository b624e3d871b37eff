import { realpath } from 'node:fs/promises';
import { isAbsolute, relative, resolve } from 'node:path';
import { z } from 'zod';
import { defineTool } from '../src/registry.js';
import { OwnerSchema, RepoSchema, RunIdSchema } from '../src/core/models.js';
import { RunStateSchema } from '../src/core/states.js';
import { scrubSecrets } from '../src/logger.js';
import { RepoOverrideSchema, agentPolicyFor } from '../src/policy.js';
import { analyzeAttempt, computeDiffStats, renderInsight, RunDigestSchema } from '../src/analysis/index.js';

export const analyzeStream = defineTool({
  name: 'analyze-stream',
  title: 'Analyze codex stream',
  description:
    'Digest a stored `codex exec --json` event stream: commands and their categories, test commands and failures, usage, ' +
    'safety hits, parse errors, and the deterministic verdict it would get. Returns the run digest and the ' +
    'manager insight (Markdown). Changes nothing.',
  tier: 'read',
  annotations: { readOnlyHint: true, idempotentHint: true, openWorldHint: false },
  cli: { positional: ['path'] },
  paths: ['path', 'worktree'],
  input: z.object({
    path: z.string().min(1).max(4096).describe('Path of the stream file (.jsonl, one codex event per line)'),
    exit_code: z.number().int().nullable().default(0).describe('Exit code of the codex process (null = killed by a signal); default 0'),
    state: RunStateSchema.default('IMPLEMENTING').describe('Run state before the attempt; decides whether test evidence is required (default IMPLEMENTING)'),
    attempt_no: z.number().int().min(1).max(10_000).default(1).describe('Attempt number, for the retry cap and stream retention (default 1)'),
    run_id: RunIdSchema.optional().describe('Run id, recorded in the digest and used for the retention sample'),
    owner: OwnerSchema.optional().describe('Repository owner, to apply its repo_overrides'),
    repo: RepoSchema.optional().describe('Repository name, to apply its repo_overrides'),
    timed_out: z.boolean().default(false).describe('The attempt hit the hard timeout'),
    stderr: z.string().max(65_536).optional().describe('Tail of codex stderr, matched against failure patterns when exit_code is not 0'),
    worktree: z.string().min(1).max(4096).optional().describe('Clone to measure the diff budget in (git diff against HEAD plus untracked files)'),
    policy: RepoOverrideSchema.optional().describe('run_agent_step policy values to use over the configured ones, e.g. {"min_test_commands": 2}'),
  }),
  output: z.object({
    digest: RunDigestSchema,
    insight_markdown: z.string(),
    keep_stream: z.boolean(),
    target_state: z.string(),
  }),
  handler: async (args, { app }) => {
    // Path inputs are checked by the registry (below the allowed roots from every entry but the CLI).
    const base = agentPolicyFor(app.policy, args.owner, args.repo);
    const overrides = Object.fromEntries(Object.entries(args.policy ?? {}).filter(([, v]) => v !== undefined));
    const policy = { ...base, ...overrides };
    const diffStats = args.worktree ? await computeDiffStats(resolve(args.worktree)) : null;
    const a = await analyzeAttempt({
      streamPath: resolve(args.path),
      exitCode: args.exit_code,
      stateBefore: args.state,
      attemptNo: args.attempt_no,
      runId: args.run_id ?? 'analyze-stream',
      policy,
      owner: args.owner,
      repo: args.repo,
      diffStats,
      timedOut: args.timed_out,
      stderrTail: args.stderr,
      artifacts: { agent_event_stream: resolve(args.path) },
    });
    // Without a run id the retention sample still needs a key; the digest shows none.
    const named = args.run_id ? a.digest : { ...a.digest, run: { ...a.digest.run, run_id: null } };
    const digest = { ...named, events: { ...named.events, parse_error_samples: await unparsedSamples(named.events.parse_error_samples, args.path, app.config.reportsDir, app.env) } };
    const insight = args.run_id && digest.events.parse_error_samples === named.events.parse_error_samples ? a.insightMarkdown : renderInsight(digest);
    return {
      data: { digest, insight_markdown: insight, keep_stream: a.keepStream, target_state: a.targetState },
      text: insight,
    };
  },
});

type Sample = { line: number; reason: string; excerpt: string };

/**
 * Lines that are not codex events may be any file's content (a key, a password file): only a
 * stream agentpr stored itself (below reports/) shows them, secret-scrubbed; any other file shows
 * the line number and reason alone.
 */
async function unparsedSamples(samples: Sample[], path: string, reportsDir: string, env: NodeJS.ProcessEnv): Promise<Sample[]> {
  if (!samples.length) return samples;
  const real = await realpath(resolve(path)).catch(() => resolve(path));
  const root = await realpath(reportsDir).catch(() => resolve(reportsDir));
  const rel = relative(root, real);
  const stored = rel !== '' && !rel.startsWith('..') && !isAbsolute(rel);
  return samples.map((s) => ({ ...s, excerpt: stored ? scrubSecrets(s.excerpt, env) : '' }));
}
