import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, test } from 'vitest';
import { tempDir } from '../helpers/app.js';

/** What operators of the original relied on, each through the built CLI. */

const exec = promisify(execFile);
const CLI = join(import.meta.dirname, '..', '..', 'dist', 'src', 'cli.js');

async function agentpr(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const base: NodeJS.ProcessEnv = { ...process.env, AGENTPR_LOG_LEVEL: 'silent', AGENTPR_POLICY_FILE: '' };
  for (const k of Object.keys(base)) if (k.startsWith('AGENTPR_') && !['AGENTPR_LOG_LEVEL', 'AGENTPR_POLICY_FILE'].includes(k)) delete base[k];
  try {
    const r = await exec(process.execPath, [CLI, ...args], { env: { ...base, ...env } });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

function auditLine(minutesAgo: number, status: number, outcome: string, error: string | null = null): string {
  const ts = new Date(Date.now() - minutesAgo * 60_000).toISOString();
  return JSON.stringify({ ts, event: 'check_run', delivery: `d-${minutesAgo}-${status}`, status_code: status, outcome, processed: status === 200 ? 1 : 0, ignored: 0, error });
}

describe.skipIf(!existsSync(CLI))('operator commands (built CLI)', () => {
  test('webhook-audit-summary: thresholds turn it into an alert check that exits 3', async () => {
    const home = tempDir('agentpr-ops-');
    mkdirSync(join(home, 'reports'), { recursive: true });
    const lines = [
      auditLine(120, 500, 'error', 'old failure outside the window'),
      ...Array.from({ length: 18 }, () => auditLine(5, 200, 'processed')),
      auditLine(3, 500, 'error', 'database is locked; the delivery was released'),
      auditLine(2, 200, 'processed'),
    ];
    writeFileSync(join(home, 'reports', 'github_webhook_audit.jsonl'), `${lines.join('\n')}\n`);
    const env = { AGENTPR_HOME: home };

    const alert = await agentpr(['webhook-audit-summary', '--since-minutes', '30', '--max-lines', '5000', '--fail-on-retryable-failures', '0', '--fail-on-http5xx-rate', '5'], env);
    expect(alert.code).toBe(3);
    // 1 of 20 requests in the window answered 5xx: 5% is not over 5%, so only the retryable threshold fires
    expect(alert.stdout).toMatch(/^ALERT: retryable failures 1 > 0\n/);
    expect(alert.stdout).toContain('retryable failures 1; 5xx 1 (5%)');

    const rate = await agentpr(['webhook-audit-summary', '--since-minutes', '30', '--fail-on-http5xx-rate', '4.9', '--json'], env);
    expect(rate.code).toBe(3);
    const data = JSON.parse(rate.stdout) as { total: number; http_5xx_rate_pct: number; alerts: string[]; alert: boolean };
    expect(data).toMatchObject({ total: 20, http_5xx_rate_pct: 5, alert: true, alerts: ['HTTP 5xx rate 5% > 4.9%'] });

    const quiet = await agentpr(['webhook-audit-summary', '--since-minutes', '30', '--fail-on-retryable-failures', '1', '--fail-on-http5xx-rate', '10'], env);
    expect(quiet.code).toBe(0);
    expect(quiet.stdout).not.toContain('ALERT');

    // --max-lines reads only the newest lines: the 5xx is the second newest
    const tail = await agentpr(['webhook-audit-summary', '--since-minutes', '30', '--max-lines', '1', '--fail-on-retryable-failures', '0', '--json'], env);
    expect(tail.code).toBe(0);
    expect(JSON.parse(tail.stdout)).toMatchObject({ total: 1, lines_read: 1, retryable_failures: 0 });

    const bad = await agentpr(['webhook-audit-summary', '--fail-on-http5xx-rate', '150'], env);
    expect(bad.code).not.toBe(0);
    expect(bad.code).not.toBe(3);
    expect(bad.stderr).toContain('fail_on_http5xx_rate');
  });
});
