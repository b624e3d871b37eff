#!/usr/bin/env node
// The demo's worker: a stand-in for `codex exec --json` that needs no model, no login and no network.
//
// It is NOT a live model. It
//   1. replays a recorded codex stream line by line, unchanged (demo/streams/, named in the plan), except
//      that the recording's final `turn.completed` line is held back and printed last, so the turn
//      stays well-formed;
//   2. then does the demo task for real in the workspace (its cwd) and reports each action as the codex
//      item codex would print: it runs the plan's read commands, applies the plan's edit
//      (file_change), and runs the project's test command, with the real exit code and output;
//   3. writes a final agent message derived from those real results to --output-last-message.
// When the prompt carries agentpr's iteration packet (a run iterating on CI and review feedback), step 2
// uses the plan's `iteration` section instead, and only if the packet names what that section fixes.
// agentpr's verdict and digest are computed from this stream, so a PASS means the edit was made
// and the project's tests really passed.
//
// Arguments are the ones agentpr passes to codex; like codex it lists its flags in `exec --help`
// (agentpr builds the command line from that list) and reads the prompt from stdin when it is `-`:
//   replay-codex.mjs --version
//   replay-codex.mjs exec --help
//   replay-codex.mjs exec --sandbox S [--model M] --json --output-last-message <path> [-c key=value]... [--ephemeral] -
// Environment: AGENTPR_REPLAY_PLAN (default: replay-plan.json next to this file),
//   AGENTPR_REPLAY_LINE_DELAY_MS (pause between replayed lines; default from the plan).
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const MAX_OUTPUT = 16 * 1024;
const COMMAND_TIMEOUT_MS = 120_000;
const USAGE =
  'usage: replay-codex.mjs exec --sandbox <workspace-write|danger-full-access|read-only> [--model M] --json --output-last-message <path> [-c key=value]... [--ephemeral] [PROMPT|-]';
const HELP = `Replay a recorded codex run (agentpr demo worker; not a live model)

Usage: replay-codex.mjs exec [OPTIONS] [PROMPT]

Arguments:
  [PROMPT]
          Initial instructions for the agent. If not provided as an argument (or if \`-\` is used),
          instructions are read from stdin

Options:
  -c, --config <key=value>
          Accepted and ignored (the replay has no model)

  -m, --model <MODEL>
          Accepted and ignored

  -s, --sandbox <SANDBOX_MODE>
          [possible values: read-only, workspace-write, danger-full-access]

      --ephemeral
          Accepted and ignored

      --json
          Print events to stdout as JSONL

  -o, --output-last-message <FILE>
          Specifies file where the last message from the agent should be written

  -h, --help
          Print help
`;

function fail(message, code = 2) {
  process.stderr.write(`replay-codex: ${message}\n${USAGE}\n`);
  process.exit(code);
}

function parseArgs(argv) {
  if (argv.length === 1 && argv[0] === '--version') return { version: true };
  if (argv[0] !== 'exec') fail(`expected 'exec' as the first argument, got ${JSON.stringify(argv[0])}`);
  const out = { json: false, lastMessage: undefined, prompt: undefined, help: false };
  const VALUE = new Set(['--sandbox', '-s', '--model', '-m', '--output-last-message', '-o', '--config', '-c']);
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--json') out.json = true;
    else if (a === '--help' || a === '-h') out.help = true;
    else if (a === '--ephemeral') continue;
    else if (VALUE.has(a)) {
      const v = argv[++i];
      if (v === undefined) fail(`${a} needs a value`);
      if (a === '--output-last-message' || a === '-o') out.lastMessage = v;
    } else if (a.startsWith('-') && a !== '-') fail(`unexpected argument '${a}' found`);
    else if (out.prompt === undefined) out.prompt = a;
    else fail('expected exactly one prompt argument');
  }
  if (out.help) return out;
  if (!out.json) fail('--json is required (the replay prints codex JSON events)');
  if (out.prompt === undefined || out.prompt === '-') {
    try {
      out.prompt = fs.readFileSync(0, 'utf8');
    } catch {
      out.prompt = '';
    }
  }
  if (!out.prompt.trim()) fail('no prompt: give it as the argument or on stdin');
  return out;
}

function loadPlan() {
  const file = path.resolve(process.env.AGENTPR_REPLAY_PLAN || path.join(HERE, 'replay-plan.json'));
  let plan;
  try {
    plan = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    fail(`cannot read the replay plan ${file}: ${err.message}`, 3);
  }
  if (typeof plan.stream !== 'string' || typeof plan.test_command !== 'string' || !Array.isArray(plan.edits)) {
    fail(`replay plan ${file} needs "stream", "edits" and "test_command"`, 3);
  }
  const delay = process.env.AGENTPR_REPLAY_LINE_DELAY_MS ?? plan.line_delay_ms ?? 0;
  return { ...plan, file, streamPath: path.resolve(path.dirname(file), plan.stream), lineDelayMs: Math.max(0, Number(delay) || 0) };
}

/** The data between agentpr's iteration packet markers in the prompt, or null when there is none. */
function iterationPacket(prompt) {
  const start = prompt.indexOf('<<<ITERATION_PACKET');
  const end = prompt.lastIndexOf('ITERATION_PACKET>>>');
  return start >= 0 && end > start ? prompt.slice(start, end) : null;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function clip(text) {
  return text.length > MAX_OUTPUT ? `${text.slice(0, MAX_OUTPUT)}\n[... ${text.length - MAX_OUTPUT} more characters]` : text;
}

function shellQuote(s) {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

/** Runs `cmd` with /bin/sh in the workspace; the environment is the worker's (agentpr's isolated caches). */
function runCommand(cmd) {
  const env = { ...process.env, npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' };
  // A nested `node --test` would talk to an outer test runner's protocol instead of printing.
  delete env.NODE_TEST_CONTEXT;
  const r = spawnSync('/bin/sh', ['-c', cmd], { cwd: process.cwd(), env, encoding: 'utf8', timeout: COMMAND_TIMEOUT_MS, maxBuffer: 8 * 1024 * 1024 });
  const output = `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? `\n${r.error.message}` : ''}`;
  const exitCode = typeof r.status === 'number' ? r.status : 1;
  return { exitCode, output: clip(output) };
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  if (args.version) {
    process.stdout.write('codex-cli 0.0.0-agentpr-demo-replay\n');
    return 0;
  }
  if (args.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const plan = loadPlan();
  let recorded;
  try {
    recorded = fs.readFileSync(plan.streamPath, 'utf8').split('\n').filter((l) => l.length > 0);
  } catch (err) {
    fail(`cannot read the recorded stream ${plan.streamPath}: ${err.message}`, 3);
  }
  process.stderr.write(`replay-codex: REPLAY of ${path.basename(plan.streamPath)} (${recorded.length} lines), then the demo task for real in ${process.cwd()}\n`);

  const emit = async (obj, delay = 0) => {
    process.stdout.write(`${typeof obj === 'string' ? obj : JSON.stringify(obj)}\n`);
    if (delay > 0) await sleep(delay);
  };
  // Hold back the recording's closing turn.completed so the live items land inside the turn.
  const closing = recorded.length && /"type"\s*:\s*"turn\.completed"/.test(recorded[recorded.length - 1]) ? recorded.pop() : null;
  let nextId = 0;
  for (const line of recorded) {
    const m = /"id"\s*:\s*"item_(\d+)"/.exec(line);
    if (m) nextId = Math.max(nextId, Number(m[1]) + 1);
    await emit(line, plan.lineDelayMs);
  }
  const id = () => `item_${nextId++}`;

  const command = async (cmd) => {
    const itemId = id();
    const shown = `/bin/sh -c ${shellQuote(cmd)}`;
    await emit({ type: 'item.started', item: { id: itemId, type: 'command_execution', command: shown, aggregated_output: '', exit_code: null, status: 'in_progress' } });
    const r = runCommand(cmd);
    await emit({
      type: 'item.completed',
      item: { id: itemId, type: 'command_execution', command: shown, aggregated_output: r.output, exit_code: r.exitCode, status: r.exitCode === 0 ? 'completed' : 'failed' },
    });
    return r;
  };

  await emit({ type: 'item.completed', item: { id: id(), type: 'agent_message', text: `Now the task itself: ${args.prompt.split('\n').find((l) => l.trim())?.trim() ?? 'the demo task'}` } });

  // An iteration (the prompt carries agentpr's iteration packet): act only on what the packet names.
  const packet = iterationPacket(args.prompt);
  const task = packet !== null && plan.iteration ? plan.iteration : plan;
  if (task === plan.iteration) {
    const missing = (task.requires_in_packet ?? []).filter((s) => !packet.includes(s));
    if (missing.length) {
      const why = `the iteration packet in the prompt does not name ${missing.map((m) => JSON.stringify(m)).join(', ')}; nothing to fix`;
      await emit({ type: 'item.completed', item: { id: id(), type: 'error', message: why } });
      process.stderr.write(`replay-codex: ${why}\n`);
      if (closing) await emit(closing);
      return 1;
    }
    await emit({ type: 'item.completed', item: { id: id(), type: 'agent_message', text: `The iteration packet names ${task.requires_in_packet.join(', ')}; addressing that.` } });
  }
  for (const cmd of task.inspect ?? []) await command(cmd);
  if (task.diagnosis) await emit({ type: 'item.completed', item: { id: id(), type: 'reasoning', text: `**Diagnosis** ${task.diagnosis}` } });

  const changed = [];
  for (const edit of task.edits) {
    const target = path.resolve(process.cwd(), edit.path);
    const before = fs.existsSync(target) ? fs.readFileSync(target, 'utf8') : null;
    if (before === null || !before.includes(edit.find)) {
      const why = before === null ? `${edit.path} does not exist` : `${edit.path} does not contain ${JSON.stringify(edit.find)}`;
      await emit({ type: 'item.completed', item: { id: id(), type: 'error', message: `cannot apply the demo edit: ${why}` } });
      process.stderr.write(`replay-codex: cannot apply the demo edit: ${why}; is this the demo project (demo/project)?\n`);
      if (closing) await emit(closing);
      return 1;
    }
    fs.writeFileSync(target, before.replace(edit.find, edit.replace));
    changed.push(edit);
    await emit({ type: 'item.completed', item: { id: id(), type: 'file_change', changes: [{ path: target, kind: 'update' }], status: 'completed' } });
  }

  const verified = [];
  for (const cmd of task.verify ?? []) verified.push([cmd, await command(cmd)]);
  const test = await command(task.test_command);
  const summaryLine = test.output.split('\n').filter((l) => /^#\s*(pass|fail)\b/.test(l.trim())).map((l) => l.replace(/^#\s*/, '').trim()).join(', ');
  const message = [
    `Status: ${test.exitCode === 0 && verified.every(([, r]) => r.exitCode === 0) ? 'PASS' : 'FAIL'}`,
    '',
    'Files changed:',
    ...changed.map((e) => `- ${e.path}: ${e.why ?? 'edited'}`),
    '',
    'Commands:',
    ...verified.map(([cmd, r]) => `- ${cmd} -> exit ${r.exitCode}`),
    `- ${task.test_command} -> exit ${test.exitCode}${summaryLine ? ` (${summaryLine})` : ''}`,
  ].join('\n');
  await emit({ type: 'item.completed', item: { id: id(), type: 'agent_message', text: message } });
  if (closing) await emit(closing);
  if (args.lastMessage) {
    fs.mkdirSync(path.dirname(path.resolve(args.lastMessage)), { recursive: true });
    fs.writeFileSync(args.lastMessage, message);
  }
  // Like codex: the process succeeds even when the tests fail; the verdict judges the test result.
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`replay-codex: ${err && err.stack ? err.stack : String(err)}\n`);
    process.exit(70);
  },
);
