import type { RunDigest } from './digest.js';
import { shortCommand } from './commands.js';

/**
 * The manager insight: the digest written for a person, plus up to 5 iteration hints
 * derived from the evidence. Advisory only; decisions read the digest.
 */
export function renderInsight(d: RunDigest): string {
  const out: string[] = [];
  const c = d.classification;
  const runLabel = d.run.run_id ?? '(no run)';
  const repoLabel = d.run.owner && d.run.repo ? ` (${d.run.owner}/${d.run.repo})` : '';
  out.push('# Manager Insight', '');
  out.push(`- Run: \`${runLabel}\`${repoLabel}`);
  out.push(`- Outcome: \`${c.grade}\` / \`${c.reason_code}\`${c.original_reason_code ? ` (was \`${c.original_reason_code}\`)` : ''}`);
  out.push(`- State: \`${d.state.before ?? '?'}\` -> \`${d.state.after ?? '?'}\``);
  out.push(
    `- Attempt: \`${d.attempt.no ?? '?'}\` | Duration: \`${d.attempt.duration_ms === null ? '?' : `${d.attempt.duration_ms}ms`}\` | Exit: \`${d.attempt.exit_code ?? 'none'}\`${d.attempt.timed_out ? ' | timed out' : ''}`,
  );

  out.push('', '## Evidence');
  for (const e of c.evidence) out.push(`- ${e}`);
  const ev = d.events;
  const extra = [
    ev.oversized_lines ? `oversized lines: \`${ev.oversized_lines}\`` : '',
    ev.invalid_utf8_lines ? `invalid UTF-8 lines: \`${ev.invalid_utf8_lines}\`` : '',
    Object.keys(ev.unknown_type_counts).length || Object.keys(ev.unknown_item_type_counts).length
      ? `unknown types: ${Object.entries({ ...ev.unknown_type_counts, ...ev.unknown_item_type_counts })
          .map(([k, n]) => `\`${k}\`×${n}`)
          .join(', ')}`
      : '',
  ].filter(Boolean);
  out.push(`- Parsed events: \`${ev.parsed}\` of \`${ev.lines}\` lines, ${fmtBytes(ev.bytes)} (parse errors: \`${ev.parse_errors}\`${extra.length ? `; ${extra.join('; ')}` : ''})`);
  out.push(`- Commands: \`${d.commands.total}\` (failed \`${d.commands.failed}\`${d.commands.in_progress ? `, unfinished \`${d.commands.in_progress}\`` : ''})`);
  out.push(
    `- Test commands: \`${d.validation.test_command_count}\` (min \`${d.validation.min_test_commands}\`) | Failed test commands: \`${d.validation.failed_test_command_count}\`${
      d.validation.failed_test_command_count !== d.validation.unexcused_failed_test_command_count
        ? ` (allowlisted \`${d.validation.failed_test_command_count - d.validation.unexcused_failed_test_command_count}\`)`
        : ''
    }`,
  );
  for (const f of d.validation.failed_test_commands.slice(0, 3)) {
    out.push(`  - \`${oneLine(f.command, 140)}\` exit \`${f.exit_code ?? f.status}\`${f.allowlisted_by ? ` (allowlisted by \`${f.allowlisted_by}\`)` : ''}`);
  }
  const diff = d.changes.diff;
  out.push(
    diff
      ? `- Diff: files \`${diff.changed_files}\` | \`+${diff.added_lines} / -${diff.deleted_lines}\` (budget ${budget(d.changes.max_changed_files)} files, ${budget(d.changes.max_added_lines)} added lines)`
      : `- Diff: not measured${d.changes.file_change_events ? ` (stream reported \`${d.changes.file_change_events}\` file changes)` : ''}`,
  );
  if (d.usage) {
    const u = d.usage;
    out.push(
      `- Tokens (cumulative per thread): input \`${u.input_tokens}\` | cached \`${u.cached_input_tokens}\`${u.cache_write_input_tokens ? ` | cache writes \`${u.cache_write_input_tokens}\`` : ''} | output \`${u.output_tokens}\`${u.reasoning_output_tokens ? ` | reasoning \`${u.reasoning_output_tokens}\`` : ''} | total \`${u.total_tokens}\``,
    );
    if (u.delta) out.push(`- Tokens this attempt: input \`${u.delta.input_tokens}\` | output \`${u.delta.output_tokens}\` | total \`${u.delta.total_tokens}\``);
  } else {
    out.push('- Tokens: no `turn.completed` usage in the stream');
  }
  out.push(`- Safety: ${d.safety.violation_count ? `\`${d.safety.violation_count}\` violation(s)` : 'no violations'}; push attempts: \`${d.safety.push_attempt_count}\`${d.safety.push_allowed ? ' (allowed)' : ''}`);
  if (d.preflight) out.push(`- Preflight: ${d.preflight.ok ? 'ok' : 'failed'}`);
  if (d.agent.collab_tool_calls) {
    const tools = Object.entries(d.agent.collab_tools).map(([t, n]) => `${t} ×${n}`).join(', ');
    out.push(`- Sub-agents: \`${d.agent.collab_tool_calls}\` collab tool call(s) (${tools}); their commands and edits are not in this stream, so changes are judged from git`);
  }

  out.push('', '## Top Command Durations');
  if (d.commands.top_by_duration.length) {
    for (const t of d.commands.top_by_duration.slice(0, 3)) out.push(`- ${t.duration_ms}ms | \`${oneLine(t.command, 200)}\``);
  } else {
    out.push(
      d.events.stamped_lines > 0
        ? '- No command duration data captured (no command both started and finished in the stream).'
        : '- No command duration data captured (stream lines carry no receive time).',
    );
  }
  if (d.commands.top_by_frequency.some((f) => f.count > 1)) {
    out.push('', '## Most Repeated Commands');
    for (const f of d.commands.top_by_frequency.filter((x) => x.count > 1).slice(0, 3)) out.push(`- ${f.count}× \`${oneLine(f.command, 200)}\``);
  }
  if (d.commands.total) {
    out.push('', '## Command Categories');
    const cats = Object.entries(d.commands.by_category)
      .filter(([, v]) => v.count > 0)
      .sort((a, b) => b[1].count - a[1].count || a[0].localeCompare(b[0]));
    for (const [name, v] of cats) {
      out.push(`- ${name}: ${v.count} (${v.share_pct}%)${d.commands.durations_known ? ` | ${v.duration_ms}ms (${v.duration_share_pct}%)` : ''}`);
    }
  }

  if (Object.keys(d.stages.totals).length) {
    out.push('', '## Stage Timeline Snapshot');
    const stages = Object.entries(d.stages.totals).sort((a, b) => b[1].duration_ms - a[1].duration_ms || a[0].localeCompare(b[0]));
    for (const [name, t] of stages) out.push(`- ${name}: ${t.duration_ms}ms (${t.share_pct}%) over ${t.attempts} attempt(s)${t.failed ? `, ${t.failed} failed` : ''}`);
  }

  if (d.agent.final_message) {
    out.push('', '## Final Agent Message');
    const msg = d.agent.final_message.length > 800 ? `${d.agent.final_message.slice(0, 800)}…` : d.agent.final_message;
    for (const line of msg.split('\n')) out.push(`> ${line}`.trimEnd());
  }

  if (d.commands.sample?.length) {
    out.push('', '## Command Sample (first commands, in order)');
    for (const c of d.commands.sample) out.push(`- \`${c.replace(/`/g, "'")}\``);
  }

  const r = d.manager_recommendation;
  out.push('', '## Suggested Next Action');
  out.push(`- Action: \`${r.action}\``, `- Priority: \`${r.priority}\``, `- Why: ${r.reason}`);

  out.push('', '## Prompt/Skill Iteration Hints');
  for (const h of iterationHints(d)) out.push(`- ${h}`);
  out.push('', `_Generated at: ${d.generated_at}_`, '');
  return out.join('\n');
}

/** Up to 5 concrete hints, most important first. */
export function iterationHints(d: RunDigest): string[] {
  const hints: string[] = [];
  const code = d.classification.original_reason_code ?? d.classification.reason_code;
  const repoKey = d.run.owner && d.run.repo ? `${d.run.owner}/${d.run.repo}`.toLowerCase() : 'owner/repo';
  const firstFailed = d.validation.failed_test_commands.find((f) => !f.allowlisted_by);
  switch (code) {
    case 'test_command_failed':
      hints.push(
        `Separate baseline failures from integration-scope failures: rerun ${firstFailed ? `\`${oneLine(firstFailed.command, 100)}\`` : 'the failing test command'} on the base branch; add only verified baseline signatures to \`repo_overrides["${repoKey}"].known_test_failure_allowlist\`.`,
      );
      break;
    case 'missing_test_evidence':
    case 'insufficient_test_evidence':
      hints.push(
        `Strengthen the implement/validate prompt to run the repository's CI test commands and report their output (${d.validation.test_command_count} run, ${d.validation.min_test_commands} required).`,
      );
      break;
    case 'diff_budget_exceeded':
      hints.push('Ask for a smaller, scoped change (list the files it may touch), or raise `max_changed_files` / `max_added_lines` for this repo if the task needs it.');
      break;
    case 'safety_violation':
      hints.push(`Repeat the safety contract in the prompt: no sudo, global installs or tool self-updates; install inside \`.agentpr_runtime\` (seen: ${d.safety.violations.map((v) => v.rules.join('/')).join(', ') || 'see evidence'}).`);
      break;
    case 'agent_push_disallowed':
      hints.push('Tell the worker to leave changes uncommitted: the orchestrator commits and pushes with finish.sh after the verdict.');
      break;
    case 'preflight_hard_failure':
      hints.push('Fix the workspace before retrying (writable .git, toolchain on PATH, dependencies installable); see the preflight report.');
      break;
    case 'preflight_transient_failure':
    case 'runtime_transient_failure':
      hints.push('A transient failure (network, rate limit, timeout): retry; if it repeats, raise `max_agent_seconds` or check connectivity from the worker host.');
      break;
    case 'runtime_hard_failure':
      hints.push('The worker failed on its environment (permissions, auth, missing binary or repo); fix that before another attempt.');
      break;
    case 'runtime_config_error':
      hints.push('Codex refused its setup (a flag, the provider key variable, config.toml or the model); fix it as the evidence says (see docs/worker.md, "Pointing codex at a provider"), run `doctor`, then retry.');
      break;
    case 'runtime_unknown_failure':
      hints.push('The worker exited non-zero with no known pattern; read the stderr log and the raw event stream kept for this attempt.');
      break;
    default:
      break;
  }
  if (d.classification.reason_code === 'retryable_limit_exceeded') {
    hints.push(`Retries are exhausted (${d.attempt.no ?? '?'} attempts); decide by hand whether to resume, change the prompt, or skip the run.`);
  }
  const cats = d.commands.by_category;
  const install = cats.dependency_install;
  if (install && d.commands.durations_known && install.duration_share_pct >= 30) {
    hints.push(`Dependency installs took ${install.duration_share_pct}% of command time; install them in prepare or reuse the cache under \`.agentpr_runtime\`.`);
  }
  const reading = cats.repo_reading;
  if (reading && d.commands.total >= 20 && reading.share_pct >= 60) {
    hints.push(`${reading.share_pct}% of ${d.commands.total} commands only read the repo; give the worker the relevant files and CI commands in the contract.`);
  }
  const repeated = d.commands.top_by_frequency.find((f) => f.count >= 3 && (f.category === 'tests' || f.category === 'lint_or_typecheck'));
  if (repeated) hints.push(`\`${oneLine(repeated.command, 80)}\` ran ${repeated.count} times; ask the worker to read the failure and fix before rerunning.`);
  if (d.events.parse_errors > 0 || d.events.oversized_lines > 0) {
    hints.push(`${d.events.parse_errors} stream line(s) could not be parsed and ${d.events.oversized_lines} were oversized; check the runner's stream capture.`);
  }
  if (d.commands.in_progress > 0) hints.push(`${d.commands.in_progress} command(s) never finished; the worker may have been killed mid-command.`);
  if (!hints.length) hints.push('Current run looks stable; keep the constraints and reduce unnecessary command volume.');
  return hints.slice(0, 5);
}

function budget(n: number): string {
  return n === 0 ? 'no limit on' : String(n);
}

function oneLine(text: string, max: number): string {
  const s = shortCommand(text).replace(/\s+/g, ' ').replace(/`/g, "'");
  return s.length > max ? `${s.slice(0, max)}…` : s;
}

function fmtBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}
