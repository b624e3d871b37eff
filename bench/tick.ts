import { rmSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import pino from 'pino';
import { createApp, type App } from '../src/app.js';
import { Registry } from '../src/registry.js';
import { gatherFacts } from '../src/manager/facts.js';
import { decide } from '../src/manager/rules.js';
import type { TickReport } from '../src/manager/tick.js';
import { TOOLS } from '../tools/index.js';
import { growth, isMain, median, round, tmp } from './util.js';

/**
 * `tick`: a rules-mode dry-run `manager-tick` (through the registry: input validation, facts,
 * decisions, 10,000 decision rows stored in one transaction, output validation) over 10,000 runs
 * in mixed states. Target < 1 s. Baseline, same run: listing the same 10,000 runs through the
 * service (one query, rows to views).
 */

type Path = Array<[string, Record<string, unknown>?]>;

const TO_PUSHED: Path = [
  ['command.start.discovery'],
  ['worker.discovery.completed', { contract_path: '/contracts/c.md' }],
  ['command.start.implementation'],
  ['command.local.validation.passed'],
  ['worker.push.completed', { branch: 'feature/bench' }],
];

const PATHS: Record<string, Path> = {
  QUEUED: [],
  DISCOVERY: TO_PUSHED.slice(0, 1),
  PLAN_READY: TO_PUSHED.slice(0, 2),
  IMPLEMENTING: TO_PUSHED.slice(0, 3),
  LOCAL_VALIDATING: TO_PUSHED.slice(0, 4),
  PUSHED: TO_PUSHED,
  CI_WAIT: [...TO_PUSHED, ['command.pr.linked', { pr_number: 1 }]],
  REVIEW_WAIT: [...TO_PUSHED, ['command.pr.linked', { pr_number: 1 }], ['github.check.completed', { conclusion: 'success' }]],
  ITERATING: [...TO_PUSHED, ['command.pr.linked', { pr_number: 1 }], ['github.check.completed', { conclusion: 'failure' }]],
  PAUSED: [['command.pause']],
  NEEDS_HUMAN_REVIEW: [...TO_PUSHED, ['worker.step.failed', { step: 'finish', reason_code: 'x', error_message: 'y' }]],
  FAILED_RETRYABLE: [['command.start.discovery'], ['worker.step.failed', { step: 'prepare', reason_code: 'script_failed', error_message: 'y' }]],
  DONE: [...TO_PUSHED, ['command.mark.done']],
  SKIPPED: [['command.retry', { target_state: 'SKIPPED' }]],
  FAILED_TERMINAL: [['command.retry', { target_state: 'FAILED_TERMINAL' }]],
};

function seed(app: App, n: number): Record<string, number> {
  const states = Object.keys(PATHS);
  const counts: Record<string, number> = {};
  const s = app.service;
  s.transaction(() => {
    for (let i = 0; i < n; i++) {
      const state = states[i % states.length]!;
      counts[state] = (counts[state] ?? 0) + 1;
      // Half the implementing runs carry a prompt; some discovery runs have prepared, some have digests.
      const budget = state === 'IMPLEMENTING' && Math.floor(i / states.length) % 2 === 0 ? { prompt: 'Fix the flaky test' } : undefined;
      const id = s.createRun({ owner: 'bench', repo: `repo${i % 500}`, budget }).run_id;
      for (const [type, payload] of PATHS[state]!) s.applyEvent({ run_id: id, event_type: type, payload: payload ?? {} });
      if (state === 'DISCOVERY' && Math.floor(i / states.length) % 3 === 0) {
        const a = s.startAttempt(id, 'prepare');
        s.finishAttempt(a.attempt_id, { status: 'succeeded', exit_code: 0 });
      }
      if ((state === 'FAILED_RETRYABLE' || state === 'IMPLEMENTING') && Math.floor(i / states.length) % 4 === 0) {
        s.addArtifact(id, {
          type: 'run_digest',
          uri: `/nonexistent/${id}/digest.json`,
          metadata: { classification: { grade: 'RETRYABLE', reason_code: 'runtime_transient_failure' }, manager_recommendation: { action: 'retry', priority: 'high' } },
        });
      }
    }
  });
  return counts;
}

export async function run(n = 10_000, repeats = 5, scale = process.env.AGENTPR_BENCH_NO_SCALE ? 0 : 10): Promise<Record<string, unknown>> {
  const one = await measure(n, repeats);
  const { tickMedian, listMedian, ...report } = one;
  if (scale) {
    const big = await measure(n * scale, 3);
    report.scale = {
      tick_dry_run: growth(n, tickMedian, big.tickMedian),
      baseline_list_runs: growth(n, listMedian, big.listMedian),
      seed: growth(n, one.seed_ms as number, big.seed_ms as number),
    };
  }
  return report;
}

async function measure(n: number, repeats: number): Promise<Record<string, unknown> & { tickMedian: number; listMedian: number }> {
  const dir = tmp();
  const app = createApp({ home: dir, logger: pino({ level: 'silent' }), env: { ...process.env, AGENTPR_POLICY_FILE: '' }, doctorGate: false, reconcile: false });
  try {
    const t0 = performance.now();
    const states = seed(app, n);
    const seedMs = performance.now() - t0;
    const registry = new Registry(TOOLS);

    const listMs: number[] = [];
    const factsMs: number[] = [];
    const decideMs: number[] = [];
    const tickMs: number[] = [];
    let last: TickReport | undefined;
    for (let r = 0; r < repeats; r++) {
      let t = performance.now();
      const listed = app.service.listRuns({ limit: n }).runs.length;
      listMs.push(performance.now() - t);
      if (listed !== n) throw new Error(`listed ${listed} runs, expected ${n}`);

      t = performance.now();
      const facts = gatherFacts(app);
      factsMs.push(performance.now() - t);
      t = performance.now();
      for (const f of facts) decide(f);
      decideMs.push(performance.now() - t);

      t = performance.now();
      const outcome = await registry.call('manager-tick', { dry_run: true }, { app, entry: 'internal' });
      tickMs.push(performance.now() - t);
      if (!outcome.ok) throw new Error(`manager-tick failed: ${outcome.error}`);
      last = outcome.data as TickReport;
    }
    const actions: Record<string, number> = {};
    for (const d of last!.decisions) actions[d.action] = (actions[d.action] ?? 0) + 1;
    const tickMedian = median(tickMs);
    return {
      runs: n,
      non_terminal_runs: last!.runs_considered,
      decisions_per_tick: last!.decisions.length,
      actions,
      seeded_states: states,
      seed_ms: round(seedMs, 0),
      repeats,
      tick_dry_run_ms_median: round(tickMedian, 1),
      tick_dry_run_ms_all: tickMs.map((x) => round(x, 1)),
      breakdown_ms_median: { gather_facts: round(median(factsMs), 1), decide_all: round(median(decideMs), 1) },
      baseline_list_runs_ms_median: round(median(listMs), 1),
      ratio_to_baseline: round(tickMedian / median(listMs), 2),
      target: `tick_dry_run_ms_median < ${Math.round(n / 10)} (1 s per 10,000 runs)`,
      pass: tickMedian < n / 10,
      tickMedian,
      listMedian: median(listMs),
    };
  } finally {
    await app.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (isMain(import.meta.url)) {
  console.log(JSON.stringify(await run(), null, 2));
}
