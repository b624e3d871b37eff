import { randomInt, randomBytes } from 'node:crypto';
import { GIT_PUSH_CREDENTIALS, safeGitEnv } from '../worker/git-safety.js';
import { guardClone } from '../worker/git-guard.js';
import { readFileSync } from 'node:fs';
import { loadExeca } from '../exec.js';
import { z } from 'zod';
import type { App } from '../app.js';
import { evaluatePrGate, type PrGateResult } from '../analysis/index.js';
import { ConfigurationError, UserInputError, errorMessage } from '../core/errors.js';
import type { ArtifactView, RunView } from '../core/models.js';
import { agentPolicyFor } from '../policy.js';
import { RefusedError, type ToolContext } from '../registry.js';
import type { PrApprovalView } from '../service.js';
import { attemptOwnerMetadata } from '../worker/reconcile.js';
import { GitHubApiError, RateLimitedError, githubClient, githubSettings, type PullRequestInfo } from './client.js';

/**
 * The PR open gate: request-open-pr stores a request with a short confirm token;
 * approve-open-pr checks the token, expiry, the DoD gate and that the branch still points at the
 * commit the evidence describes, then opens (or adopts) the PR and links it.
 *
 * "The commit the evidence describes": the digest's diff was taken on top of commit D (the
 * worktree's HEAD), finish.sh committed it as one commit P on top of D and pushed P
 * (worker.push.completed {head_sha: P}). The branch head is read from the remote with
 * `git ls-remote origin refs/heads/<branch>` in the run's clone (the PR is opened from the remote
 * branch, not from the clone). It must be P, and P must be D or have D as its first parent.
 */

const TOKEN_ALPHABET = 'ABCDEFGHJKLMNPQRSTUVWXYZ23456789';
const TOKEN_LENGTH = 6;

export const PrRequestSchema = z.object({
  request_id: z.string(),
  token: z.string(),
  created_at: z.string(),
  expires_at: z.string(),
  ttl_minutes: z.number(),
  title: z.string(),
  body: z.string(),
  body_file: z.string().nullable(),
  /** null: the repository's default branch, resolved at approval. */
  base: z.string().nullable(),
  /** `branch` or `fork-owner:branch`. */
  head: z.string(),
  branch: z.string(),
  draft: z.boolean(),
  requested_by: z.string(),
  entry: z.string(),
  /** The remote branch head when requested; approval refuses if it moved. */
  head_sha: z.string(),
});
export type PrRequest = z.infer<typeof PrRequestSchema>;

export const GateSchema = z.object({
  ok: z.boolean(),
  failed_checks: z.array(z.object({ code: z.string(), message: z.string() })),
  snapshot: z.record(z.string(), z.unknown()),
});

export const EvidenceSchema = z.object({
  head_sha: z.string(),
  pushed_sha: z.string().nullable(),
  digest_sha: z.string().nullable(),
  ok: z.boolean(),
  problem: z.string().nullable(),
});
export type Evidence = z.infer<typeof EvidenceSchema>;

function newToken(): string {
  let t = '';
  for (let i = 0; i < TOKEN_LENGTH; i++) t += TOKEN_ALPHABET[randomInt(TOKEN_ALPHABET.length)];
  return t;
}

async function git(dir: string, args: string[], timeoutMs = 30_000): Promise<{ ok: boolean; out: string; err: string }> {
  const r = await (await loadExeca()).execa('git', ['-C', dir, ...args], {
    reject: false,
    timeout: timeoutMs,
    stdin: 'ignore',
    // A remote that asks for credentials must fail, not hang on a prompt.
    env: { ...safeGitEnv(process.env, { credentials: GIT_PUSH_CREDENTIALS }), GIT_OPTIONAL_LOCKS: '0' },
    extendEnv: false,
  });
  return { ok: r.exitCode === 0, out: String(r.stdout ?? '').trim(), err: String(r.stderr ?? r.message ?? '').trim() };
}

/** The remote branch head as the remote has it now (not the clone's possibly stale tracking ref). */
export async function readRemoteHead(workspace: string, branch: string): Promise<string> {
  // --upload-pack: git's own, whatever a remote.origin.uploadpack in the clone says.
  const r = await git(workspace, ['ls-remote', '--upload-pack=git-upload-pack', '--heads', 'origin', `refs/heads/${branch}`]);
  if (!r.ok) throw new RefusedError(`cannot read the head of origin/${branch} in ${workspace}: ${r.err || 'git ls-remote failed'}; check the clone and its origin remote`);
  const sha = r.out.split('\n').find((l) => l.endsWith(`\trefs/heads/${branch}`))?.split('\t')[0];
  if (!sha) throw new RefusedError(`branch ${branch} does not exist on origin (${workspace}); push it (run-finish) before opening a PR`);
  return sha;
}

/** The owner in a GitHub remote URL (https, ssh or scp-like), else undefined. */
export function githubOwnerFromUrl(url: string): string | undefined {
  const m = /^(?:https?:\/\/[^/]+\/|[\w.-]+@[^:/]+:|ssh:\/\/[\w.-]+@[^/]+(?::\d+)?\/)([A-Za-z0-9](?:[A-Za-z0-9-]{0,38}))\/[^/]+?\/?$/.exec(url.trim());
  return m?.[1];
}

/**
 * The GitHub owner of the clone's origin (a fork's owner), from the configured URL as written
 * (not rewritten by url.*.insteadOf, which may point it at a mirror).
 */
export async function originOwner(workspace: string): Promise<string | undefined> {
  const r = await git(workspace, ['config', '--get', 'remote.origin.url']);
  return r.ok ? githubOwnerFromUrl(r.out) : undefined;
}

function latestEvent(app: App, runId: string, type: string): Record<string, unknown> | undefined {
  return app.service
    .listEvents(runId, { limit: 200, newestFirst: true })
    .find((e) => e.event_type === type && (e.outcome === 'applied' || e.outcome === 'noop'))?.payload;
}

interface DigestLoad {
  digest: unknown;
  ref: string | null;
}

function loadLatestDigest(app: App, runId: string): DigestLoad {
  const art: ArtifactView | undefined = app.service.latestArtifact(runId, 'run_digest');
  if (!art) return { digest: null, ref: null };
  try {
    return { digest: JSON.parse(readFileSync(art.uri, 'utf8')) as unknown, ref: art.uri };
  } catch (err) {
    // An unreadable digest fails missing_digest in the gate, which quotes the reason.
    return { digest: { unreadable: errorMessage(err) }, ref: `${art.uri} (${errorMessage(err)})` };
  }
}

function digestSha(digest: unknown): string | null {
  const sha = (digest as { changes?: { diff?: { head_sha?: unknown } | null } } | null)?.changes?.diff?.head_sha;
  return typeof sha === 'string' && sha.length ? sha : null;
}

/** The DoD gate of the runtime-analysis module on the run's latest digest, at `headSha`. */
export function evaluateGateFor(app: App, run: RunView, headSha: string): { gate: PrGateResult; digest: DigestLoad } {
  const digest = loadLatestDigest(app, run.run_id);
  const gate = evaluatePrGate({
    digest: digest.digest,
    digestRef: digest.ref,
    hasContract: app.service.latestArtifact(run.run_id, 'contract') !== undefined,
    policy: agentPolicyFor(app.policy, run.owner, run.repo),
    headSha,
  });
  return { gate, digest };
}

/** Does `head` carry exactly the evidence: the pushed commit P, one finish commit on top of the digest's D? */
export async function checkEvidence(app: App, run: RunView, head: string, digest: unknown): Promise<Evidence> {
  const push = latestEvent(app, run.run_id, 'worker.push.completed');
  const pushed = typeof push?.head_sha === 'string' ? push.head_sha : null;
  const d = digestSha(digest);
  const base = { head_sha: head, pushed_sha: pushed, digest_sha: d };
  if (pushed && pushed !== head) {
    return { ...base, ok: false, problem: `origin branch is at ${head.slice(0, 12)}, not at ${pushed.slice(0, 12)} which the worker pushed after the digest; it moved since the evidence was taken` };
  }
  if (d && d !== head) {
    const parent = await git(run.workspace_dir, ['rev-parse', '--verify', '-q', `${head}^1`]);
    if (!parent.ok) {
      return { ...base, ok: false, problem: `commit ${head.slice(0, 12)} is not in the clone ${run.workspace_dir}, so it cannot be tied to the digest (taken at ${d.slice(0, 12)}); fetch it or re-run the agent step` };
    }
    if (parent.out !== d) {
      return { ...base, ok: false, problem: `the digest was taken at ${d.slice(0, 12)}, but the branch head ${head.slice(0, 12)} sits on ${parent.out.slice(0, 12)}; commits were added since the evidence was taken, re-run the agent step` };
    }
  }
  return { ...base, ok: true, problem: null };
}

function requestFrom(art: ArtifactView): PrRequest {
  const parsed = PrRequestSchema.safeParse(art.metadata);
  if (!parsed.success) throw new UserInputError(`pr_open_request artifact ${art.artifact_id} is unreadable; create a new request with request-open-pr`);
  return parsed.data;
}

export interface RequestInput {
  run_id: string;
  title: string;
  body?: string;
  body_file?: string;
  base?: string;
  head?: string;
  draft: boolean;
  ttl_minutes: number;
}

export interface RequestOutcome {
  request: PrRequest;
  gate: PrGateResult;
  evidence: Evidence;
  artifact_id: number;
}

export async function requestOpenPr(app: App, input: RequestInput, ctx: Pick<ToolContext, 'entry' | 'actor'>): Promise<RequestOutcome> {
  const run = app.service.getRun(input.run_id);
  if (run.pr_number) throw new RefusedError(`${run.run_id} is already linked to PR #${run.pr_number}; nothing to request`);
  if (run.state !== 'PUSHED') throw new RefusedError(`request-open-pr needs the run in PUSHED; ${run.run_id} is in ${run.state}`);
  if (input.body !== undefined && input.body_file !== undefined) throw new UserInputError('give body or body_file, not both');
  let body = input.body ?? '';
  if (input.body_file !== undefined) {
    try {
      body = readFileSync(input.body_file, 'utf8');
    } catch (err) {
      throw new UserInputError(`cannot read body_file ${input.body_file}: ${errorMessage(err)}`);
    }
    if (body.length > 65_536) throw new UserInputError(`body_file ${input.body_file} has ${body.length} characters; GitHub accepts at most 65536`);
  }
  const branchArt = app.service.latestArtifact(run.run_id, 'branch');
  const branch = input.head ? input.head.split(':').pop()! : branchArt?.uri;
  if (!branch) throw new UserInputError(`${run.run_id} has no pushed branch; give head`);
  // .git as run-prepare left it before our git reads the remote; the fork is the recorded origin.
  const guard = await guardClone(app.config.home, run.run_id, run.workspace_dir);
  let head = input.head;
  if (!head) {
    const fork = guard.origin_url ? githubOwnerFromUrl(guard.origin_url) : await originOwner(run.workspace_dir);
    head = fork && fork.toLowerCase() !== run.owner.toLowerCase() ? `${fork}:${branch}` : branch;
  }
  const headSha = await readRemoteHead(run.workspace_dir, branch);
  const { gate, digest } = evaluateGateFor(app, run, headSha);
  const evidence = await checkEvidence(app, run, headSha, digest.digest);
  const now = new Date();
  const request: PrRequest = {
    request_id: `prq_${randomBytes(4).toString('hex')}`,
    token: newToken(),
    created_at: now.toISOString(),
    expires_at: new Date(now.getTime() + input.ttl_minutes * 60_000).toISOString(),
    ttl_minutes: input.ttl_minutes,
    title: input.title,
    body,
    body_file: input.body_file ?? null,
    base: input.base ?? null,
    head,
    branch,
    draft: input.draft,
    requested_by: ctx.actor ?? ctx.entry,
    entry: ctx.entry,
    head_sha: headSha,
  };
  const art = app.service.addArtifact(run.run_id, {
    type: 'pr_open_request',
    uri: `pr_open_request:${request.request_id}`,
    metadata: { ...request, gate, evidence },
  });
  return { request, gate, evidence, artifact_id: art.artifact_id };
}

export interface ApproveInput {
  run_id: string;
  confirm: boolean;
  /** The confirm token; may be left out when the person confirms through the client (elicitation). */
  token?: string;
  request_id?: string;
  allow_expired: boolean;
  allow_dod_bypass: boolean;
}

export interface ApproveOutcome {
  status: 'opened' | 'existing' | 'already_linked';
  run: RunView;
  request_id: string;
  pr_number: number;
  pr_url: string | null;
  approval: PrApprovalView | null;
  gate: PrGateResult | null;
  evidence: Evidence | null;
}

export async function approveOpenPr(app: App, input: ApproveInput, ctx: Pick<ToolContext, 'entry' | 'actor' | 'confirmWithPerson'>): Promise<ApproveOutcome> {
  if (input.confirm !== true) throw new UserInputError('approve-open-pr opens a pull request on GitHub; pass confirm: true (--confirm) to go ahead');
  const run = app.service.getRun(input.run_id);
  const arts = app.service.listArtifacts(run.run_id, 'pr_open_request');
  if (!arts.length) throw new UserInputError(`${run.run_id} has no PR open request; create one with request-open-pr first`);
  const request = requestFrom(arts.at(-1)!);
  if (input.request_id && input.request_id !== request.request_id) {
    const found = arts.map(requestFrom).find((r) => r.request_id === input.request_id);
    if (!found) throw new UserInputError(`unknown request ${input.request_id} for ${run.run_id}; its requests: ${arts.map((a) => requestFrom(a).request_id).join(', ')}`);
    throw new RefusedError(`request ${found.request_id} was superseded by ${request.request_id}; approve the latest request with its token`);
  }
  if (input.token === undefined) {
    if (!ctx.confirmWithPerson) {
      throw new UserInputError('invalid input for approve-open-pr: token: required (the confirm token request-open-pr gave); only an MCP client that supports elicitation may leave it out and confirm with the person instead');
    }
    const where = `${run.owner}/${run.repo}`;
    const yes = await ctx.confirmWithPerson(
      `Open the pull request "${request.title}" on ${where} for ${run.run_id} (request ${request.request_id})? This creates a real pull request on GitHub.`,
    );
    if (!yes) throw new RefusedError(`the person did not confirm opening the pull request for ${run.run_id}; nothing was changed`);
  } else if (input.token.trim().toUpperCase() !== request.token.toUpperCase()) {
    throw new RefusedError(`the confirm token does not match request ${request.request_id}; use the token request-open-pr gave (case does not matter)`);
  }
  if (Date.now() > Date.parse(request.expires_at) && !input.allow_expired) {
    throw new RefusedError(`request ${request.request_id} expired at ${request.expires_at} (TTL ${request.ttl_minutes} min); create a new one with request-open-pr, or pass allow_expired`);
  }
  if (run.pr_number) {
    const prUrl = app.service.latestArtifact(run.run_id, 'pr_url')?.uri ?? null;
    return {
      status: 'already_linked',
      run,
      request_id: request.request_id,
      pr_number: run.pr_number,
      pr_url: prUrl,
      approval: app.service.listPrApprovals(run.run_id).at(-1) ?? null,
      gate: null,
      evidence: null,
    };
  }
  if (run.state !== 'PUSHED') throw new RefusedError(`approve-open-pr needs the run in PUSHED; ${run.run_id} is in ${run.state}`);
  // Fail on a missing token before any work, with the variables to set.
  const settings = githubSettings(app.env);
  if (!settings.token) throw new ConfigurationError('no GitHub token: set AGENTPR_GITHUB_TOKEN or GITHUB_TOKEN to a token that may create pull requests in the repository');

  await guardClone(app.config.home, run.run_id, run.workspace_dir);
  const headSha = await readRemoteHead(run.workspace_dir, request.branch);
  if (headSha !== request.head_sha) {
    throw new RefusedError(`origin/${request.branch} moved from ${request.head_sha.slice(0, 12)} to ${headSha.slice(0, 12)} since request ${request.request_id}; the gate evidence no longer describes it, create a new request`);
  }
  const { gate, digest } = evaluateGateFor(app, run, headSha);
  const evidence = await checkEvidence(app, run, headSha, digest.digest);
  if (!evidence.ok) throw new RefusedError(`head SHA check failed: ${evidence.problem}`);
  if (!gate.ok && !input.allow_dod_bypass) {
    const lines = gate.failed_checks.map((c) => `- ${c.code}: ${c.message}`).join('\n');
    throw new RefusedError(`the definition-of-done gate blocks this PR (${gate.failed_checks.length} failed check${gate.failed_checks.length === 1 ? '' : 's'}):\n${lines}\nFix them and run the agent step again, or pass allow_dod_bypass to open it anyway (the bypass is recorded).`);
  }

  const client = await githubClient(app.logger, app.env);
  // The run's lease: a second approval of the same run is refused here, before GitHub is called.
  const attempt = app.service.startAttempt(
    run.run_id,
    'pr_create',
    { ...attemptOwnerMetadata(), request_id: request.request_id, head: request.head, head_sha: headSha },
    {
      guard: (now) => {
        if (now.pr_number) throw new RefusedError(`${now.run_id} is already linked to PR #${now.pr_number}; nothing changed`);
        if (now.state !== 'PUSHED') throw new RefusedError(`approve-open-pr needs the run in PUSHED; ${now.run_id} is in ${now.state}`);
      },
    },
  );
  const started = Date.now();
  let pr: PullRequestInfo;
  let existing = false;
  const headLabel = request.head.includes(':') ? request.head : `${run.owner}:${request.head}`;
  try {
    const found = await client.findOpenPull(run.owner, run.repo, headLabel);
    if (found) {
      pr = found;
      existing = true;
    } else {
      const base = request.base ?? (await client.defaultBranch(run.owner, run.repo));
      try {
        pr = await client.createPull({
          owner: run.owner,
          repo: run.repo,
          title: request.title,
          head: request.head,
          base,
          body: request.body,
          draft: request.draft,
          maintainer_can_modify: app.policy.github.maintainer_can_modify,
        });
      } catch (err) {
        // Opened in between (another approval, a person): adopt it.
        const raced = err instanceof GitHubApiError && err.status === 422 && /already exists/i.test(err.message) ? await client.findOpenPull(run.owner, run.repo, headLabel) : undefined;
        if (!raced) throw err;
        pr = raced;
        existing = true;
      }
    }
  } catch (err) {
    const reason = err instanceof RateLimitedError ? 'rate_limited' : err instanceof GitHubApiError ? `github_http_${err.status}` : 'error';
    app.service.finishAttempt(attempt.attempt_id, { status: 'failed', reason_code: reason, stderr_log: errorMessage(err), duration_ms: Date.now() - started });
    if (err instanceof RateLimitedError) throw new RefusedError(`rate limited, retry after ${err.retryAfterSec} s; nothing changed, approve again then (the request stays valid until ${request.expires_at})`);
    if (err instanceof GitHubApiError && (err.status === 401 || err.status === 403)) throw new ConfigurationError(err.message);
    if (err instanceof GitHubApiError) throw new RefusedError(`${err.message}; nothing changed`);
    throw err;
  }

  let linked: ReturnType<typeof app.service.linkPrWithApproval>;
  try {
    linked = app.service.linkPrWithApproval({
      run_id: run.run_id,
      pr_number: pr.number,
      idempotency_key: `command.pr.linked:${run.run_id}:pr:${pr.number}`,
      // The head checks are matched against: the approved commit, in the repository it lives in (a fork or upstream).
      head: { head_sha: headSha, head_owner: pr.head_owner ?? (request.head.includes(':') ? request.head.split(':')[0]! : run.owner), head_repo: pr.head_repo ?? run.repo },
      pr_url_artifact: { type: 'pr_url', uri: pr.html_url, metadata: { pr_number: pr.number, head: request.head, head_sha: headSha, existing, request_id: request.request_id } },
      approval: {
        request_id: request.request_id,
        approved_by: ctx.actor ?? ctx.entry,
        entry: ctx.entry,
        approved_at: new Date().toISOString(),
        head_sha: headSha,
        gate_ok: gate.ok,
        gate: gate as unknown as Record<string, unknown>,
        bypass: !gate.ok,
        pr_url: pr.html_url,
        pr_existing: existing,
      },
    });
  } catch (err) {
    // Never leave the attempt (and the run's lease) behind: the PR exists, the link failed.
    app.service.finishAttempt(attempt.attempt_id, { status: 'failed', reason_code: 'link_failed', stderr_log: errorMessage(err), duration_ms: Date.now() - started, metadata: { pr_number: pr.number, pr_url: pr.html_url } });
    throw err;
  }
  const { apply, approval } = linked;
  app.service.finishAttempt(attempt.attempt_id, { status: 'succeeded', exit_code: 0, duration_ms: Date.now() - started, metadata: { pr_number: pr.number, pr_url: pr.html_url, existing } });
  app.logger.info({ run_id: run.run_id, pr: pr.number, existing, bypass: !gate.ok, approved_by: approval.approved_by }, 'PR linked');
  return {
    status: existing ? 'existing' : 'opened',
    run: app.service.getRun(apply.run_id),
    request_id: request.request_id,
    pr_number: pr.number,
    pr_url: pr.html_url,
    approval,
    gate,
    evidence,
  };
}
