import { errorMessage } from '../core/errors.js';
import { RunIdSchema } from '../core/models.js';
import { DECISION_MODES, DecisionModeSchema, type DecisionMode } from '../manager/actions.js';
import { createManagerLlm } from '../manager/llm.js';
import { runManagerLoop } from '../manager/loop.js';
import { defaultRegistry } from '../manager/registry-ref.js';
import type { TickInput } from '../manager/tick.js';
import type { CliCommand } from './types.js';

const USAGE = `usage: agentpr run-manager-loop [--interval-sec 300] [--max-loops N] [--decision-mode rules|llm|hybrid]
                                [--dry-run] [--run-id RUN] [--prompt TEXT | --prompt-file PATH] [--max-actions N] [--jsonl]
                                [--limit N] [--disable-auto-contract] [--contract-template-file PATH]

Runs a manager tick every --interval-sec seconds (the manager-tick tool) until stopped or --max-loops
ticks ran. A failed tick is logged and the loop goes on. SIGINT/SIGTERM stop the loop after the
current action (a model call in flight is abandoned); a second signal exits at once. --jsonl
prints each tick's report as one JSON line.

  --limit N                       consider at most N runs per tick (the most urgent first)
  --disable-auto-contract         never write a contract for a run whose discovery produced none
  --contract-template-file PATH   Markdown copied into the contracts the manager writes

Environment (llm and hybrid modes):
  AGENTPR_MANAGER_API_KEY       API key of an OpenAI-compatible endpoint (required for llm/hybrid)
  AGENTPR_MANAGER_BASE_URL      endpoint, e.g. http://127.0.0.1:11434/v1 (default: the OpenAI API)
  AGENTPR_MANAGER_MODEL         model name (default gpt-4o-mini)
  AGENTPR_MANAGER_TIMEOUT_SEC   per-request timeout (default 30)`;

class ArgError extends Error {}

function positiveInt(flag: string, raw: string): number {
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n < 1) throw new ArgError(`${flag} expects a whole number >= 1, got '${raw}'`);
  return n;
}

export interface LoopArgs {
  intervalSec: number;
  maxLoops?: number;
  json: boolean;
  tick: TickInput & { decision_mode: DecisionMode };
}

export function parseLoopArgs(argv: string[]): LoopArgs {
  const out: LoopArgs = { intervalSec: 300, json: false, tick: { decision_mode: 'rules' } };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const eq = a.startsWith('--') ? a.indexOf('=') : -1;
    const flag = eq > 0 ? a.slice(0, eq) : a;
    const inline = eq > 0 ? a.slice(eq + 1) : undefined;
    const value = (): string => {
      const v = inline ?? argv[++i];
      if (v === undefined || (inline === undefined && v.startsWith('--'))) throw new ArgError(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case '--interval-sec': {
        const raw = value();
        const n = Number(raw);
        if (raw.trim() === '' || !Number.isFinite(n) || n < 0) throw new ArgError(`--interval-sec expects seconds >= 0, got '${raw}'`);
        out.intervalSec = n;
        break;
      }
      case '--max-loops':
        out.maxLoops = positiveInt(flag, value());
        break;
      case '--decision-mode': {
        const raw = value();
        const mode = DecisionModeSchema.safeParse(raw);
        if (!mode.success) throw new ArgError(`--decision-mode expects one of ${DECISION_MODES.join(', ')}, got '${raw}'`);
        out.tick.decision_mode = mode.data;
        break;
      }
      case '--dry-run':
        out.tick.dry_run = true;
        break;
      case '--run-id': {
        const raw = value();
        const id = RunIdSchema.safeParse(raw);
        if (!id.success) throw new ArgError(`--run-id: ${id.error.issues[0]?.message ?? 'not a run id'}, got '${raw}'`);
        out.tick.run_id = id.data;
        break;
      }
      case '--prompt':
        out.tick.prompt = value();
        break;
      case '--prompt-file':
        out.tick.prompt_file = value();
        break;
      case '--max-actions':
        out.tick.max_actions = positiveInt(flag, value());
        break;
      case '--jsonl':
        out.json = true;
        break;
      case '--limit':
        out.tick.limit = positiveInt(flag, value());
        break;
      case '--disable-auto-contract':
        out.tick.disable_auto_contract = true;
        break;
      case '--contract-template-file':
        out.tick.contract_template_file = value();
        break;
      default:
        throw new ArgError(
          `unknown option ${a}; allowed: --interval-sec, --max-loops, --decision-mode, --dry-run, --run-id, --prompt, --prompt-file, --max-actions, --jsonl, --limit, --disable-auto-contract, --contract-template-file`,
        );
    }
  }
  return out;
}

export const runManagerLoopCommand: CliCommand = {
  name: 'run-manager-loop',
  summary: 'Run manager ticks every N seconds until stopped (rules | llm | hybrid)',
  usage: USAGE,
  async run(argv, { globals, openApp }) {
    let args: LoopArgs;
    try {
      args = parseLoopArgs(argv);
    } catch (err) {
      if (!(err instanceof ArgError)) throw err;
      process.stderr.write(`agentpr run-manager-loop: ${err.message}\n${USAGE}\n`);
      return 2;
    }
    const registry = await defaultRegistry();
    if (args.tick.decision_mode !== 'rules') {
      try {
        createManagerLlm(registry, args.tick.decision_mode); // fail at start, not on every tick
      } catch (err) {
        process.stderr.write(`agentpr run-manager-loop: ${errorMessage(err)}\n`);
        return 2;
      }
    }
    const app = openApp();
    const stop = new AbortController();
    let signals = 0;
    const onSignal = (sig: NodeJS.Signals): void => {
      signals++;
      if (signals === 1) {
        app.logger.info({ signal: sig }, 'stopping the manager loop after the current action');
        stop.abort();
      } else {
        app.logger.warn({ signal: sig }, 'second signal: exiting now');
        process.exit(130);
      }
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    process.stderr.write(
      `agentpr: manager loop every ${args.intervalSec}s (${args.tick.decision_mode}${args.tick.dry_run ? ', dry run' : ''}${args.maxLoops ? `, ${args.maxLoops} loop(s)` : ''})\n`,
    );
    try {
      const summary = await runManagerLoop(app, registry, {
        intervalSec: args.intervalSec,
        maxLoops: args.maxLoops,
        tick: args.tick,
        stopSignal: stop.signal,
        skipDoctor: globals.skipDoctor,
        onTick: (loop, outcome) => {
          if (args.json) process.stdout.write(`${JSON.stringify(outcome.ok ? outcome.data : { loop, ok: false, code: outcome.code, error: outcome.error })}\n`);
          else if (outcome.ok) process.stdout.write(`${outcome.text}\n`);
          else process.stderr.write(`agentpr run-manager-loop: tick ${loop} failed (${outcome.code}): ${outcome.error}\n`);
        },
      });
      process.stderr.write(
        `agentpr: manager loop ${summary.stopped ? 'stopped' : 'finished'} after ${summary.loops} tick(s), ${summary.failed_ticks} failed\n`,
      );
      return 0;
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  },
};
