import type { Migration } from './migrations.js';

/**
 * The delivery ledger keeps the signature it verified as the body's fingerprint (the HMAC-SHA256
 * of the body under the webhook secret, as in X-Hub-Signature-256) instead of hashing the body a
 * second time with plain SHA-256. Values say which they are: `hmac-sha256:<hex>` for a signed
 * delivery, `sha256:<hex>` for an unsigned one (--allow-unsigned) and for rows from before.
 */
export const WEBHOOK_MIGRATIONS: Migration[] = [
  {
    version: 19,
    name: 'webhook ledger: payload_sha256 becomes payload_digest (the verified signature)',
    sql: `
ALTER TABLE webhook_deliveries RENAME COLUMN payload_sha256 TO payload_digest;
UPDATE webhook_deliveries SET payload_digest = 'sha256:' || payload_digest;
`,
  },
];
