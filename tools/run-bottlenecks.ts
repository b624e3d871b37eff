import { z } from 'zod';
import { defineTool } from '../src/registry.js';
import { OwnerSchema, RepoSchema } from '../src/core/models.js';
import type { App } from '../src/app.js';
import { parseJsonObject } from '../src/core/json.js';
import { renderBottlenecks, runBottlenecks } from '../src/worker/inspect.js';

export const runBottlenecksTool = defineTool({
  name: 'run-bottlenecks',
  title: 'Run bottlenecks',
  description:
    'Where time goes across runs: per-step totals (attempts, failures, average and max duration, share), the slowest step attempts, the slowest worker commands and command categories from the run digests, and the CI failures runs iterated on most often (failure fingerprints of the iteration packets, per repository). Filter by owner and/or repo.',
  tier: 'read',
  annotations: { readOnlyHint: true, openWorldHint: false },
  input: z.object({
    owner: OwnerSchema.optional(),
    repo: RepoSchema.optional(),
    limit: z.number().int().min(1).max(100).default(10).describe('How many slowest attempts and commands to list'),
  }),
  output: z.object({
    scope: z.object({ owner: z.string().nullable(), repo: z.string().nullable() }),
    runs: z.number().int(),
    steps: z.array(z.object({ step: z.string(), attempts: z.number().int(), failed: z.number().int(), total_ms: z.number(), avg_ms: z.number(), max_ms: z.number(), share_pct: z.number() })),
    slowest_attempts: z.array(
      z.object({ run_id: z.string(), repo: z.string(), step: z.string(), attempt_no: z.number().int(), status: z.string(), duration_ms: z.number(), started_at: z.string() }),
    ),
    slowest_commands: z.array(
      z.object({ run_id: z.string(), attempt_no: z.number().int().nullable(), command: z.string(), category: z.string(), duration_ms: z.number(), exit_code: z.number().int().nullable() }),
    ),
    command_categories: z.array(z.object({ category: z.string(), count: z.number().int(), duration_ms: z.number(), share_pct: z.number() })),
    digests_read: z.number().int(),
    digests_unreadable: z.number().int(),
    failure_fingerprints: z.array(z.object({ repo: z.string(), fingerprint: z.string(), rounds: z.number().int(), runs: z.number().int() })),
  }),
  handler: (args, { app }) => {
    const r = { ...runBottlenecks(app, args), failure_fingerprints: failureFingerprints(app, args) };
    const fp = r.failure_fingerprints.length
      ? ['', 'most frequent CI failures iterated on:', ...r.failure_fingerprints.map((f) => `  ${f.repo} ${f.fingerprint}: ${f.rounds} round(s) in ${f.runs} run(s)`)]
      : [];
    return { data: r, text: [renderBottlenecks(r), ...fp].join('\n') };
  },
});

/** Fingerprints of failing checks across iteration packets, per repository, most frequent first. */
function failureFingerprints(app: App, args: { owner?: string; repo?: string; limit: number }): Array<{ repo: string; fingerprint: string; rounds: number; runs: number }> {
  const rows = app.db
    .prepare(
      `SELECT r.owner AS owner, r.repo AS repo, a.run_id AS run_id, a.metadata_json AS metadata_json FROM artifacts a JOIN runs r ON r.run_id = a.run_id
       WHERE a.artifact_type = 'iteration_packet' AND (? IS NULL OR lower(r.owner) = lower(?)) AND (? IS NULL OR lower(r.repo) = lower(?))`,
    )
    .all(args.owner ?? null, args.owner ?? null, args.repo ?? null, args.repo ?? null) as Array<{ owner: string; repo: string; run_id: string; metadata_json: string }>;
  const counts = new Map<string, { repo: string; fingerprint: string; rounds: number; runs: Set<string> }>();
  for (const row of rows) {
    const fps = parseJsonObject(row.metadata_json).fingerprints;
    if (!Array.isArray(fps)) continue;
    for (const f of fps) {
      if (typeof f !== 'string') continue;
      const repo = `${row.owner}/${row.repo}`;
      const c = counts.get(`${repo} ${f}`) ?? { repo, fingerprint: f, rounds: 0, runs: new Set<string>() };
      c.rounds++;
      c.runs.add(row.run_id);
      counts.set(`${repo} ${f}`, c);
    }
  }
  return [...counts.values()]
    .sort((a, b) => b.rounds - a.rounds || a.repo.localeCompare(b.repo) || a.fingerprint.localeCompare(b.fingerprint))
    .slice(0, args.limit)
    .map((c) => ({ repo: c.repo, fingerprint: c.fingerprint, rounds: c.rounds, runs: c.runs.size }));
}
