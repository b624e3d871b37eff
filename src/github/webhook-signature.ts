import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

export const SIGNATURE_PREFIX = 'sha256=';
/** `sha256=` and 64 lowercase hex digits, exactly as GitHub writes X-Hub-Signature-256. */
const SIGNATURE = /^sha256=([0-9a-f]{64})$/;

/**
 * Checks X-Hub-Signature-256 against the body's bytes as received: GitHub signs those bytes, so
 * the body is never decoded and re-encoded to be checked. The comparison is constant time. The
 * first secret is current; the others are accepted too, for rotation.
 */
export function signatureMatches(secrets: readonly string[], body: Uint8Array, header: string | undefined): boolean {
  if (!header || body.length === 0) return false;
  const m = SIGNATURE.exec(header);
  if (!m) return false;
  const expected = Buffer.from(m[1]!, 'hex');
  for (const secret of secrets) {
    if (timingSafeEqual(createHmac('sha256', secret).update(body).digest(), expected)) return true;
  }
  return false;
}

/** Hex SHA-256 of the body as received (the ledger's fingerprint of an unsigned delivery). */
export function payloadSha256(body: Uint8Array): string {
  return createHash('sha256').update(body).digest('hex');
}
