import { afterEach, describe, expect, test } from 'vitest';
import { scrubSecrets } from '../../src/logger.js';
import { makeTestApp } from '../helpers/app.js';

let cleanup: (() => Promise<void>) | undefined;
afterEach(async () => {
  await cleanup?.();
  cleanup = undefined;
});

const TOKEN = 'ghp_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789';

describe('secrets never reach last_error, logs or GitHub error text', () => {
  test('a token in a remote URL is not echoed into last_error', () => {
    const t = makeTestApp();
    cleanup = t.cleanup;
    const { app } = t;
    const run = app.service.createRun({ owner: 'acme', repo: 'widget' });
    app.service.applyEvent({ run_id: run.run_id, event_type: 'command.start.discovery' });
    app.service.applyEvent({
      run_id: run.run_id,
      event_type: 'worker.step.failed',
      payload: { step: 'prepare', reason_code: 'script_failed', error_message: `fatal: unable to access 'https://x-access-token:${TOKEN}@github.com/acme/widget.git/': 403` },
    });
    const last = app.service.getRun(run.run_id).last_error ?? '';
    expect(last).toContain("unable to access 'https://[REDACTED]@github.com/acme/widget.git/'");
    expect(last).not.toContain(TOKEN);
  });

  test('URL credentials and GitHub token shapes are scrubbed from any text', () => {
    expect(scrubSecrets(`Bad credentials: token ${TOKEN} was revoked`, {})).toBe('Bad credentials: token [REDACTED] was revoked');
    expect(scrubSecrets('push to https://user:pa55@example.com/x.git failed', {})).toBe('push to https://[REDACTED]@example.com/x.git failed');
    expect(scrubSecrets('github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz in body', {})).toBe('[REDACTED] in body');
    expect(scrubSecrets('see https://github.com/acme/widget/pull/1', {})).toBe('see https://github.com/acme/widget/pull/1');
    // A CI log that echoes a curl call with its header.
    expect(scrubSecrets('> authorization: token abc.def-123\n< 200', {})).toBe('> authorization: token [REDACTED]\n< 200');
  });
});
