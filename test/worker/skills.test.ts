import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { dbFingerprint } from '../helpers/db.js';
import { makeHarness, ok, preparedRun, scenario, toImplementing, type Harness } from './harness.js';

let h: Harness | undefined;
afterEach(async () => {
  await h?.cleanup();
  h = undefined;
});

describe('skills mode', () => {
  test('refuses without skills, installs them, then runs with the envelope, task packet and contract copy', async () => {
    h = makeHarness({ policy: { run_agent_step: { skills_mode: 'agentpr' } } });
    const { runId, workspace } = await preparedRun(h);
    await toImplementing(h, runId);
    h.setEnv({ FAKE_CODEX_SCENARIO: scenario('implement-pass'), FAKE_CODEX_RECORD: join(h.tmp, 'record.json') });

    const before = dbFingerprint(h.app.db);
    const refused = await h.call('run-agent-step', { run_id: runId, prompt: 'Add the greeting.' });
    expect(!refused.ok && refused.error).toMatch(/^skills_missing: skills mode needs agentpr-implement-and-validate in .*codex-home\/skills for IMPLEMENTING.*install-skills/);
    expect(dbFingerprint(h.app.db)).toBe(before);

    const status = ok(await h.call('skills-status', {})) as { ready: boolean; stages: Array<{ stage: string; missing: string[] }>; skills: Array<{ name: string; installed: boolean }> };
    expect(status.ready).toBe(false);
    expect(status.stages.find((s) => s.stage === 'IMPLEMENTING')?.missing).toEqual(['agentpr-implement-and-validate']);

    const installed = ok(await h.call('install-skills', {})) as { skills: Array<{ name: string; action: string }> };
    expect(installed.skills.map((s) => `${s.name}:${s.action}`)).toEqual([
      'agentpr-address-comments:installed',
      'agentpr-discovery:installed',
      'agentpr-fix-ci:installed',
      'agentpr-implement-and-validate:installed',
      'agentpr-iterate-on-feedback:installed',
    ]);
    expect(existsSync(join(h.codexHome, 'skills', 'agentpr-discovery', 'SKILL.md'))).toBe(true);
    const again = ok(await h.call('install-skills', {})) as { skills: Array<{ action: string }> };
    expect(again.skills.every((s) => s.action === 'unchanged')).toBe(true);
    expect((ok(await h.call('skills-status', {})) as { ready: boolean }).ready).toBe(true);

    const r = ok(await h.call('run-agent-step', { run_id: runId, prompt: 'Add the greeting.' })) as { grade: string; state_after: string };
    expect(r).toMatchObject({ grade: 'PASS', state_after: 'LOCAL_VALIDATING' });

    const rec = JSON.parse(readFileSync(join(h.tmp, 'record.json'), 'utf8')) as { argv: string[]; stdin: string };
    // The prompt comes on stdin; argv ends in `-`.
    expect(rec.argv[rec.argv.length - 1]).toBe('-');
    const prompt = rec.stdin;
    expect(prompt).toContain('AGENTPR SKILLS MODE — stage IMPLEMENTING, attempt 1');
    expect(prompt).toContain('$agentpr-implement-and-validate');
    expect(prompt).toContain('Contract: .agentpr_runtime/contracts/contract.md');
    expect(prompt).toContain(join(h.codexHome, 'skills'));
    expect(prompt.endsWith('TASK\nAdd the greeting.')).toBe(true);

    expect(readFileSync(join(workspace, '.agentpr_runtime', 'contracts', 'contract.md'), 'utf8')).toContain('Append a greeting');
    const packetArtifact = h.app.service.latestArtifact(runId, 'task_packet')!;
    const packet = JSON.parse(readFileSync(packetArtifact.uri, 'utf8')) as Record<string, unknown>;
    expect(packet).toMatchObject({
      schema: 'agentpr.task_packet.v1',
      stage: 'IMPLEMENTING',
      run: { run_id: runId, owner: 'octo', repo: 'demo' },
      skills: { mode: 'agentpr', plan: [{ name: 'agentpr-implement-and-validate' }] },
      limits: { max_changed_files: 6, max_added_lines: 120, min_test_commands: 1, sandbox: 'workspace-write', max_agent_seconds: 900 },
    });
    expect(existsSync(join(workspace, '.agentpr_runtime', 'task_packet.json'))).toBe(true);

    const digest = JSON.parse(readFileSync(h.app.service.latestArtifact(runId, 'run_digest')!.uri, 'utf8')) as { skills: Record<string, unknown> };
    expect(digest.skills).toMatchObject({ mode: 'agentpr', required: ['agentpr-implement-and-validate'], missing: [] });

    const metrics = ok(await h.call('skills-metrics', { repo: 'demo' })) as { by_skill: Record<string, { attempts: number; pass: number; pass_rate_pct: number; stages: string[] }> };
    expect(metrics.by_skill['agentpr-implement-and-validate']).toEqual({ attempts: 1, pass: 1, retryable: 0, human_review: 0, pass_rate_pct: 100, stages: ['IMPLEMENTING'] });
  });

  test('an outdated install is reported and replaced', async () => {
    h = makeHarness();
    ok(await h.call('install-skills', { only: ['agentpr-discovery'] }));
    const md = join(h.codexHome, 'skills', 'agentpr-discovery', 'SKILL.md');
    await import('node:fs').then((fs) => fs.appendFileSync(md, '\nlocal edit\n'));
    const status = ok(await h.call('skills-status', {})) as { skills: Array<{ name: string; installed: boolean; outdated: boolean }> };
    expect(status.skills.find((s) => s.name === 'agentpr-discovery')).toMatchObject({ installed: true, outdated: true });
    expect(status.skills.find((s) => s.name === 'agentpr-iterate-on-feedback')).toMatchObject({ installed: false });
    const r = ok(await h.call('install-skills', { only: ['agentpr-discovery'] })) as { skills: Array<{ action: string }> };
    expect(r.skills).toEqual([expect.objectContaining({ action: 'updated' })]);
    expect(readFileSync(md, 'utf8')).not.toContain('local edit');
    const bad = await h.call('install-skills', { only: ['nope'] });
    expect(!bad.ok && bad.error).toMatch(/unknown skill nope; the project has: agentpr-address-comments, agentpr-discovery, /);
  });
});
