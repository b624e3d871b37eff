import { writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { defineTool } from '../src/registry.js';
import { RunIdSchema } from '../src/core/models.js';
import { runPreflight, PREFLIGHT_CHECKS } from '../src/worker/preflight.js';
import { attemptOwnerMetadata } from '../src/worker/reconcile.js';
import { describeGitGuard, guardClone, hasGitEntry } from '../src/worker/git-guard.js';

const CheckSchema = z.object({ name: z.enum(PREFLIGHT_CHECKS), ok: z.boolean(), message: z.string(), fix: z.string().nullable() });

export const runPreflightTool = defineTool({
  name: 'run-preflight',
  title: 'Run preflight checks',
  description:
    "Check a run's clone before a worker runs: workspace inside the configured root (symlinks resolved), a git clone of its own, .git writable (no stale index.lock), clean worktree (ignoring .agentpr_runtime/), toolchain on PATH (from package.json, pyproject.toml, go.mod, Cargo.toml, Makefile, ...), dependency installs possible. Records a 'preflight' step attempt and a preflight_report artifact (JSON); the run's state does not change.",
  tier: 'write',
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false },
  cli: { positional: ['run_id'] },
  input: z.object({ run_id: RunIdSchema }),
  output: z.object({
    run_id: z.string(),
    attempt_no: z.number().int(),
    ok: z.boolean(),
    failed: z.array(z.string()),
    toolchain: z.array(z.string()),
    checks: z.array(CheckSchema),
    warnings: z.array(z.string()),
    report_path: z.string(),
    artifact_id: z.number().int(),
  }),
  handler: async (args, { app }) => {
    const run = app.service.getRun(args.run_id);
    // .git as run-prepare left it before preflight's git runs (a replaced .git is refused here).
    const gitWarnings = hasGitEntry(run.workspace_dir) ? describeGitGuard(await guardClone(app.config.home, run.run_id, run.workspace_dir)) : [];
    const attempt = app.service.startAttempt(run.run_id, 'preflight', { ...attemptOwnerMetadata(), workspace_dir: run.workspace_dir });
    let report;
    try {
      report = await runPreflight({ repoDir: run.workspace_dir, workspaceRoot: app.config.workspaceRoot, env: app.env });
    } catch (err) {
      app.service.finishAttempt(attempt.attempt_id, { status: 'failed', reason_code: 'preflight_error', metadata: { error: (err as Error).message } });
      throw err;
    }
    report = { ...report, warnings: [...gitWarnings, ...report.warnings] };
    const dir = join(app.config.reportsDir, run.run_id);
    mkdirSync(dir, { recursive: true });
    const reportPath = join(dir, `preflight-${attempt.attempt_no}.json`);
    writeFileSync(reportPath, `${JSON.stringify({ run_id: run.run_id, attempt_no: attempt.attempt_no, ...report }, null, 2)}\n`);
    const artifact = app.service.transaction(() => {
      app.service.finishAttempt(attempt.attempt_id, {
        status: report.ok ? 'succeeded' : 'failed',
        reason_code: report.ok ? null : 'preflight_failed',
        duration_ms: report.duration_ms,
        metadata: { ok: report.ok, failed: report.failed, report_path: reportPath },
      });
      return app.service.addArtifact(run.run_id, {
        type: 'preflight_report',
        uri: reportPath,
        metadata: { ok: report.ok, failed: report.failed, attempt_no: attempt.attempt_no, checks: report.checks },
      });
    });
    const text = [
      `${run.run_id}: preflight ${report.ok ? 'ok' : `FAILED (${report.failed.join(', ')})`} for ${report.repo_dir}`,
      ...report.checks.map((c) => `  ${c.ok ? 'ok  ' : 'FAIL'} ${c.name}: ${c.message}${c.fix ? `\n       fix: ${c.fix}` : ''}`),
      ...report.warnings.map((w) => `  warning: ${w}`),
      `report: ${reportPath}`,
    ].join('\n');
    return {
      data: {
        run_id: run.run_id,
        attempt_no: attempt.attempt_no,
        ok: report.ok,
        failed: report.failed,
        toolchain: report.toolchain,
        checks: report.checks,
        warnings: report.warnings,
        report_path: reportPath,
        artifact_id: artifact.artifact_id,
      },
      text,
    };
  },
});
