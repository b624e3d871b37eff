import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import pino from 'pino';
import { createApp } from '../../src/app.js';
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

  test('create-run --run-id names the run; a bad or taken name is refused and changes nothing', async () => {
    const home = tempDir('agentpr-ops-');
    const env = { AGENTPR_HOME: home };
    const made = await agentpr(['create-run', '--owner', 'mem0ai', '--repo', 'mem0', '--run-id', 'calib_mem0_r1', '--json'], env);
    expect(made.code).toBe(0);
    expect(JSON.parse(made.stdout).run).toMatchObject({ run_id: 'calib_mem0_r1', state: 'QUEUED' });
    const shown = await agentpr(['show-run', '--run-id', 'calib_mem0_r1'], env);
    expect(shown.code).toBe(0);
    expect(shown.stdout).toContain('calib_mem0_r1');
    const generated = await agentpr(['create-run', '--owner', 'mem0ai', '--repo', 'mem0', '--json'], env);
    expect(JSON.parse(generated.stdout).run.run_id).toMatch(/^run_[0-9a-f]{12}$/);
    const taken = await agentpr(['create-run', '--owner', 'mem0ai', '--repo', 'mem0', '--run-id', 'calib_mem0_r1'], env);
    expect(taken.code).toBe(1);
    expect(taken.stderr).toContain('run calib_mem0_r1 already exists');
    for (const bad of ['../escape', 'Calib', 'a/b']) {
      const r = await agentpr(['create-run', '--owner', 'mem0ai', '--repo', 'mem0', '--run-id', bad], env);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain("run_id must be 'run_' followed by 12 hex digits");
    }
    const list = await agentpr(['list-runs', '--json'], env);
    expect(JSON.parse(list.stdout).total).toBe(2);
  });

  test('.env in the data home is read at start, never over the real environment; old names work with a warning', async () => {
    const home = tempDir('agentpr-ops-');
    const fromFile = join(home, 'ws-from-dotenv');
    const legacy = join(home, 'ws-legacy');
    writeFileSync(join(home, '.env'), `# operator settings\nAGENTPR_WORKSPACE_ROOT=${fromFile}\nAGENTPR_BASE_DIR=${legacy}\n`);
    const viaFile = await agentpr(['create-run', '--owner', 'o', '--repo', 'r1', '--json'], { AGENTPR_HOME: home });
    expect(viaFile.code).toBe(0);
    // A tree per run: <root>/<owner>/<repo>/<run_id>.
    expect(JSON.parse(viaFile.stdout).run.workspace_dir).toMatch(new RegExp(`^${join(fromFile, 'o', 'r1')}/run_[0-9a-f]{12}$`));
    expect(viaFile.stderr).toContain('agentpr: AGENTPR_BASE_DIR is deprecated and ignored because AGENTPR_WORKSPACE_ROOT is set; remove AGENTPR_BASE_DIR');

    const real = join(home, 'ws-real-env');
    const viaEnv = await agentpr(['create-run', '--owner', 'o', '--repo', 'r2', '--json'], { AGENTPR_HOME: home, AGENTPR_WORKSPACE_ROOT: real });
    expect(JSON.parse(viaEnv.stdout).run.workspace_dir).toMatch(new RegExp(`^${join(real, 'o', 'r2')}/run_[0-9a-f]{12}$`));

    writeFileSync(join(home, '.env'), `AGENTPR_BASE_DIR=${legacy}\n`);
    const old = await agentpr(['create-run', '--owner', 'o', '--repo', 'r3', '--json'], { AGENTPR_HOME: home });
    expect(JSON.parse(old.stdout).run.workspace_dir).toMatch(new RegExp(`^${join(legacy, 'o', 'r3')}/run_[0-9a-f]{12}$`));
    expect(old.stderr.trim().split('\n')).toEqual(['agentpr: AGENTPR_BASE_DIR is deprecated; its value is used as AGENTPR_WORKSPACE_ROOT; rename it']);
  });

  test('the old manager and Telegram model variables reach the new settings', async () => {
    const home = tempDir('agentpr-ops-');
    // AGENTPR_MANAGER_API_BASE pointing nowhere: the loop must try that endpoint (and fail fast on it).
    const r = await agentpr(['run-telegram-bot', '--nl-mode', 'llm', '--once'], {
      AGENTPR_HOME: home,
      AGENTPR_TELEGRAM_BOT_TOKEN: '1:x',
      AGENTPR_TELEGRAM_ALLOW_CHAT_IDS: '1',
      AGENTPR_TELEGRAM_API_ROOT: 'http://127.0.0.1:9',
      AGENTPR_TELEGRAM_NL_API_KEY_ENV: 'MY_KEY',
      MY_KEY: 'sk-old-style',
      AGENTPR_TELEGRAM_NL_TIMEOUT_SEC: '500',
    });
    expect(r.stderr).toContain('agentpr: AGENTPR_TELEGRAM_NL_API_KEY_ENV is deprecated; the key in MY_KEY is used as AGENTPR_TELEGRAM_LLM_API_KEY');
    expect(r.stderr).toContain('agentpr: AGENTPR_TELEGRAM_NL_TIMEOUT_SEC is deprecated; its value is used as AGENTPR_TELEGRAM_LLM_TIMEOUT_SEC');
    // the timeout arrived (and is checked): 500 s is over the limit
    expect(r.stderr).toContain('AGENTPR_TELEGRAM_LLM_TIMEOUT_SEC must be between 1 and 300 seconds (got 500)');
    expect(r.code).toBe(2);
  });

  test('manager-tick --limit, --disable-auto-contract, --contract-template-file', async () => {
    const home = tempDir('agentpr-ops-');
    const seed = createApp({ home, logger: pino({ level: 'silent' }), env: { ...process.env, AGENTPR_POLICY_FILE: '' }, doctorGate: false, reconcile: false });
    for (const repo of ['a', 'b', 'c']) seed.service.createRun({ owner: 'acme', repo });
    const d = seed.service.createRun({ owner: 'acme', repo: 'discovering', run_id: 'calib_disc_r1' }).run_id;
    seed.service.applyEvent({ run_id: d, event_type: 'command.start.discovery' });
    const attempt = seed.service.startAttempt(d, 'prepare');
    seed.service.finishAttempt(attempt.attempt_id, { status: 'succeeded', exit_code: 0 });
    await seed.close();
    const env = { AGENTPR_HOME: home };
    const contract = join(home, 'contracts', `${d}.auto-contract.md`);

    const limited = await agentpr(['--skip-doctor', 'manager-tick', '--dry-run', '--limit', '2', '--json'], env);
    expect(limited.code).toBe(0);
    expect(JSON.parse(limited.stdout)).toMatchObject({ runs_considered: 2 });

    const disabled = await agentpr(['--skip-doctor', 'manager-tick', '--run-id', d, '--prompt', 'Add a --verbose flag', '--disable-auto-contract', '--json'], env);
    expect(disabled.code).toBe(0);
    const decision = JSON.parse(disabled.stdout).decisions[0];
    expect(decision).toMatchObject({ action: 'wait_human', outcome: 'waiting' });
    expect(decision.reason).toContain('auto contracts are disabled');
    expect(existsSync(contract)).toBe(false);

    const missing = await agentpr(['--skip-doctor', 'manager-tick', '--run-id', d, '--contract-template-file', join(home, 'nope.md')], env);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(`contract_template_file ${join(home, 'nope.md')} cannot be read (ENOENT)`);

    const template = join(home, 'contract-template.md');
    writeFileSync(template, '# Team contract\n\nAlways run `make lint`.\n');
    const templated = await agentpr(['--skip-doctor', 'manager-tick', '--run-id', d, '--prompt', 'Add a --verbose flag', '--contract-template-file', template, '--max-actions', '1', '--json'], env);
    expect(templated.code).toBe(0);
    expect(JSON.parse(templated.stdout).decisions[0]).toMatchObject({ action: 'mark_plan_ready', outcome: 'executed' });
    expect(readFileSync(contract, 'utf8')).toBe('# Team contract\n\nAlways run `make lint`.\n\n## Task\nAdd a --verbose flag\n');
  });

  test('inspect-run: p50/p90 step timings, recommended actions, warnings, --include-log-tails', async () => {
    const home = tempDir('agentpr-ops-');
    const seed = createApp({ home, logger: pino({ level: 'silent' }), env: { ...process.env, AGENTPR_POLICY_FILE: '' }, doctorGate: false, reconcile: false });
    const id = seed.service.createRun({ owner: 'acme', repo: 'widget', run_id: 'calib_widget_r1' }).run_id;
    seed.service.applyEvent({ run_id: id, event_type: 'command.start.discovery' });
    const logs = join(home, 'logs');
    mkdirSync(logs, { recursive: true });
    const durations = [1000, 2000, 3000, 4000, 10_000];
    for (const [i, ms] of durations.entries()) {
      const a = seed.service.startAttempt(id, 'prepare');
      const out = join(logs, `prepare-${i}.out`);
      writeFileSync(out, `${Array.from({ length: 30 }, (_, n) => `line ${n} of attempt ${i}`).join('\n')}\n`);
      seed.service.finishAttempt(a.attempt_id, { status: i < 4 ? 'failed' : 'succeeded', exit_code: i < 4 ? 1 : 0, duration_ms: ms, stdout_log: out });
    }
    seed.service.applyEvent({ run_id: id, event_type: 'worker.step.failed', payload: { step: 'prepare', reason_code: 'script_failed', error_message: 'clone failed' } });
    await seed.close();
    const env = { AGENTPR_HOME: home };

    const r = await agentpr(['inspect-run', id, '--include-log-tails', '--log-tail-lines', '3', '--json'], env);
    expect(r.code).toBe(0);
    const data = JSON.parse(r.stdout);
    expect(data.step_timings.prepare).toEqual({ finished: 5, p50_ms: 3000, p90_ms: 10_000, max_ms: 10_000 });
    expect(data.recommended_actions[0]).toMatch(new RegExp(`^agentpr show-run ${id}   # over the retry cap`));
    expect(data.recommended_actions).toContain(`agentpr manager-tick --run-id ${id} --dry-run   # what the manager would do next`);
    expect(data.warnings).toContain('prepare failed 4 times, over max_retryable_attempts 3: retrying again is unlikely to help');
    expect(data.log_tails).toHaveLength(3);
    expect(data.log_tails[0]).toMatchObject({ step: 'prepare', attempt_no: 5, stream: 'stdout', lines: ['line 27 of attempt 4', 'line 28 of attempt 4', 'line 29 of attempt 4'] });

    const text = await agentpr(['inspect-run', id], env);
    expect(text.stdout).toContain('prepare: n=5 p50 3000 ms, p90 10000 ms, max 10000 ms');
    expect(text.stdout).toContain('! prepare failed 4 times');
    expect(text.stdout).not.toContain('log tail');
  });
});
