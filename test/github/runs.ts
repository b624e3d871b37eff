import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { sign } from '@octokit/webhooks-methods';
import type { App } from '../../src/app.js';
import type { RunView } from '../../src/core/models.js';

const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'github');

/** A recorded @octokit/webhooks-examples payload (a fresh copy each call, so tests may edit it). */
export function fixture<T = Record<string, unknown>>(name: string): T {
  return JSON.parse(readFileSync(join(FIXTURES, `${name}.json`), 'utf8')) as T;
}

/** Drives a new run through the service's events to PUSHED on `branch` (or to LOCAL_VALIDATING). */
export function pushedRun(
  app: App,
  owner: string,
  repo: string,
  opts: { branch?: string; workspace_dir?: string; contract?: string; stopBeforePush?: boolean; head_sha?: string } = {},
): RunView {
  const run = app.service.createRun({ owner, repo, workspace_dir: opts.workspace_dir });
  const steps: Array<[string, Record<string, unknown>]> = [
    ['command.start.discovery', {}],
    ['worker.discovery.completed', { contract_path: opts.contract ?? join(run.workspace_dir, '.agentpr_runtime', 'contracts', 'contract.md') }],
    ['command.start.implementation', {}],
    ['command.local.validation.passed', {}],
    ['worker.push.completed', { branch: opts.branch ?? 'changes', ...(opts.head_sha ? { head_sha: opts.head_sha } : {}) }],
  ];
  if (opts.stopBeforePush) steps.pop();
  for (const [event_type, payload] of steps) app.service.applyEvent({ run_id: run.run_id, event_type, payload });
  return app.service.getRun(run.run_id);
}

/** A PUSHED run linked to PR `prNumber` (-> CI_WAIT); with `headSha`, the push recorded that head. */
export function linkedRun(app: App, owner: string, repo: string, prNumber: number, branch = 'changes', headSha?: string): RunView {
  const run = pushedRun(app, owner, repo, { branch, ...(headSha ? { head_sha: headSha } : {}) });
  app.service.applyEvent({ run_id: run.run_id, event_type: 'command.pr.linked', payload: { pr_number: prNumber } });
  return app.service.getRun(run.run_id);
}

export interface Delivery {
  event: string;
  payload: unknown;
  delivery?: string;
  secret?: string;
  /** Sent as is instead of JSON.stringify(payload). */
  raw?: string;
  signature?: string | null;
  headers?: Record<string, string>;
}

let seq = 0;
export function deliveryId(): string {
  seq++;
  return `00000000-0000-4000-8000-${String(Date.now() % 1e6).padStart(6, '0')}${String(seq).padStart(6, '0')}`;
}

/** POSTs a delivery signed like GitHub does (X-Hub-Signature-256 over the raw body). */
export async function deliver(url: string, d: Delivery): Promise<{ status: number; body: Record<string, unknown>; delivery: string }> {
  const raw = d.raw ?? JSON.stringify(d.payload);
  const delivery = d.delivery ?? deliveryId();
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'x-github-event': d.event,
    'x-github-delivery': delivery,
    'user-agent': 'GitHub-Hookshot/test',
    ...d.headers,
  };
  if (d.signature !== null) headers['x-hub-signature-256'] = d.signature ?? (await sign(d.secret ?? 'test-secret', raw));
  const res = await fetch(url, { method: 'POST', headers, body: raw });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {}, delivery };
}
