import { reconcileAtStart } from '../worker/reconcile.js';
import { UsageError, errorMessage } from '../core/errors.js';
import {
  DEFAULT_WEBHOOK_HOST,
  DEFAULT_WEBHOOK_PATH,
  DEFAULT_WEBHOOK_PORT,
  startWebhookServer,
  webhookSecretsFromEnv,
} from '../github/webhook-server.js';
import type { CliCommand } from './types.js';

const USAGE = `usage: agentpr run-github-webhook [--host ${DEFAULT_WEBHOOK_HOST}] [--port ${DEFAULT_WEBHOOK_PORT}] [--path ${DEFAULT_WEBHOOK_PATH}] [--allow-unsigned]

Receives GitHub webhook deliveries (pull_request, pull_request_review, check_run, check_suite,
status, issue_comment) and applies them to the linked runs. GET on the path answers alive.

Environment:
  AGENTPR_GITHUB_WEBHOOK_SECRET   the secret set on the GitHub webhook (required unless --allow-unsigned)
  AGENTPR_GITHUB_WEBHOOK_SECRETS  extra accepted secrets, comma-separated (rotation)
  GITHUB_TOKEN / AGENTPR_GITHUB_TOKEN, GITHUB_API_URL   used to confirm green checks (sync-github)

--allow-unsigned accepts unsigned deliveries when no secret is set: local development only.
Audit: one JSONL line per request in policy github_webhook.audit_log_file (under the reports dir).`;

export const runGithubWebhook: CliCommand = {
  name: 'run-github-webhook',
  summary: `GitHub webhook receiver (default http://${DEFAULT_WEBHOOK_HOST}:${DEFAULT_WEBHOOK_PORT}${DEFAULT_WEBHOOK_PATH})`,
  usage: USAGE,
  async run(argv, { openApp }) {
    let host = DEFAULT_WEBHOOK_HOST;
    let port = DEFAULT_WEBHOOK_PORT;
    let path = DEFAULT_WEBHOOK_PATH;
    let allowUnsigned = false;
    for (let i = 0; i < argv.length; i++) {
      const a = argv[i]!;
      const [flag, inline] = a.startsWith('--') && a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
      const value = (): string => {
        const v = inline ?? argv[++i];
        if (v === undefined) throw new UsageError(`${flag} needs a value`);
        return v;
      };
      if (flag === '--host') host = value();
      else if (flag === '--port') {
        const raw = value();
        port = Number(raw);
        if (!/^\d+$/.test(raw) || port > 65535) {
          process.stderr.write(`agentpr run-github-webhook: --port expects a port number 0-65535, got '${raw}'\n`);
          return 2;
        }
      } else if (flag === '--path') path = value();
      else if (flag === '--allow-unsigned') allowUnsigned = true;
      else {
        process.stderr.write(`agentpr run-github-webhook: unknown option ${a}; allowed: --host, --port, --path, --allow-unsigned\n${USAGE}\n`);
        return 2;
      }
    }
    const app = openApp();
    reconcileAtStart(app);
    const secrets = webhookSecretsFromEnv(app.env);
    if (!secrets.length && !allowUnsigned) {
      process.stderr.write(
        'agentpr run-github-webhook: AGENTPR_GITHUB_WEBHOOK_SECRET is not set; set it to the secret configured on the GitHub webhook, or pass --allow-unsigned for local development only\n',
      );
      return 2;
    }
    let running;
    try {
      running = await startWebhookServer({ app, host, port, path, secrets, allowUnsigned });
    } catch (err) {
      process.stderr.write(`agentpr run-github-webhook: cannot start on ${host}:${port}: ${errorMessage(err)}\n`);
      return 1;
    }
    if (!secrets.length) {
      process.stderr.write('agentpr run-github-webhook: WARNING: signature verification is OFF (--allow-unsigned); anyone who can reach this port can change run states\n');
    }
    process.stderr.write(`agentpr: GitHub webhook receiver on ${running.url} (audit: ${running.auditPath})\n`);
    const server = running;
    return await new Promise<number>((resolve) => {
      const stop = () => {
        void server.close().then(() => resolve(0));
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
  },
};
