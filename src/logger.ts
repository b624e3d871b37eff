import pino, { type Logger } from 'pino';

export type { Logger };

/** Paths pino blanks out wherever they appear in a log object. */
export const REDACT_PATHS = [
  'token',
  '*.token',
  'secret',
  '*.secret',
  'api_key',
  '*.api_key',
  'apiKey',
  '*.apiKey',
  'authorization',
  '*.authorization',
  'headers.authorization',
  '*.headers.authorization',
  'req.headers.authorization',
  'headers["x-hub-signature-256"]',
  'password',
  '*.password',
];

/** Env vars whose values must never reach a log line, even inside free text. */
export const SECRET_ENV_VARS = [
  'AGENTPR_MCP_TOKEN',
  'AGENTPR_GITHUB_WEBHOOK_SECRET',
  'AGENTPR_GITHUB_TOKEN',
  'GITHUB_TOKEN',
  'GH_TOKEN',
  'AGENTPR_TELEGRAM_BOT_TOKEN',
  'AGENTPR_MANAGER_API_KEY',
  'AGENTPR_TELEGRAM_LLM_API_KEY',
  'OPENAI_API_KEY',
];

/** Env vars holding a comma-separated list of secrets (webhook secret rotation). */
export const SECRET_LIST_ENV_VARS = ['AGENTPR_GITHUB_WEBHOOK_SECRETS'];

/** Credentials in URLs (https://user:token@host) and GitHub token shapes, whoever set them. */
const URL_CREDENTIALS = /\b([a-z][a-z0-9+.-]*:\/\/)[^\s/@:]+(?::[^\s/@]*)?@/gi;
const GITHUB_TOKENS = /\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})\b/g;
/** An Authorization header quoted in text (a CI log echoing a curl call, say). */
const AUTH_HEADERS = /(authorization:\s*(?:bearer|token)\s+)\S+/gi;

/** Replaces every known secret value, URL credential, GitHub token and quoted Authorization header inside a string with [REDACTED]. */
export function scrubSecrets(text: string, env: NodeJS.ProcessEnv = process.env): string {
  let out = text.replace(URL_CREDENTIALS, '$1[REDACTED]@').replace(GITHUB_TOKENS, '[REDACTED]').replace(AUTH_HEADERS, '$1[REDACTED]');
  const values = [
    ...SECRET_ENV_VARS.map((name) => env[name]),
    ...SECRET_LIST_ENV_VARS.flatMap((name) => (env[name] ?? '').split(',').map((s) => s.trim())),
  ];
  for (const v of values) {
    if (v && v.length >= 6) out = out.split(v).join('[REDACTED]');
  }
  return out;
}

/** pino JSON on stderr (fd 2): stdout belongs to the stdio protocol. */
export function createLogger(opts: { level?: string; name?: string; destination?: NodeJS.WritableStream } = {}): Logger {
  const level = opts.level ?? process.env.AGENTPR_LOG_LEVEL ?? 'info';
  return pino(
    {
      name: opts.name ?? 'agentpr',
      level,
      redact: { paths: REDACT_PATHS, censor: '[REDACTED]' },
      hooks: {
        // Free-text messages can carry a token too (an error quoting a URL, say).
        logMethod(args, method) {
          const scrubbed = args.map((a) => (typeof a === 'string' ? scrubSecrets(a) : a)) as typeof args;
          method.apply(this, scrubbed);
        },
      },
      formatters: {
        log(obj) {
          const text = JSON.stringify(obj);
          const clean = scrubSecrets(text);
          return clean === text ? obj : (JSON.parse(clean) as Record<string, unknown>);
        },
      },
    },
    opts.destination ?? pino.destination({ fd: 2, sync: false }),
  );
}
