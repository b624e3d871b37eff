import { readFileSync } from 'node:fs';

let cached: string | undefined;

/**
 * The board: one self-contained HTML file (its CSS, script and charts inline; nothing fetched from
 * elsewhere). The same file is the MCP App view and the browser page at `/`.
 */
export function boardHtml(): string {
  cached ??= readFileSync(new URL('./board.html', import.meta.url), 'utf8');
  return cached;
}

/** The page with its one inline script marked by a per-response nonce (for the browser's CSP). */
export function boardHtmlWithNonce(nonce: string): string {
  return boardHtml().replace('<script>', `<script nonce="${nonce}">`);
}
