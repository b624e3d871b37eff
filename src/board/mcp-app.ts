import { RESOURCE_MIME_TYPE, RESOURCE_URI_META_KEY, registerAppResource } from '@modelcontextprotocol/ext-apps/server';
import type { McpServer } from '@modelcontextprotocol/server';
import { boardHtml } from './page.js';

/**
 * The board as an MCP App (the MCP Apps extension): a `ui://` HTML resource, and tool metadata
 * on list-runs and inspect-run that tells hosts to render it with the tool's result. Hosts
 * without the extension ignore both and read the tools' text and structured content as before.
 */
export const BOARD_UI_URI = 'ui://agentpr/board.html';

/** Tools whose results the board renders. */
export const BOARD_APP_TOOLS: ReadonlySet<string> = new Set(['list-runs', 'inspect-run']);

/** The `_meta` of a tool rendered by the board (both the current and the older key), or undefined. */
export function boardToolMeta(toolName: string): Record<string, unknown> | undefined {
  if (!BOARD_APP_TOOLS.has(toolName)) return undefined;
  return { ui: { resourceUri: BOARD_UI_URI }, [RESOURCE_URI_META_KEY]: BOARD_UI_URI };
}

export function registerBoardApp(server: McpServer): void {
  registerAppResource(
    server,
    'run-board',
    BOARD_UI_URI,
    {
      title: 'Run board',
      description: 'Runs as cards in columns by state, one run with its timeline, verdict, figures and insight, and charts; pause, resume, retry and PR requests through tool calls. One self-contained HTML file (works offline).',
      mimeType: RESOURCE_MIME_TYPE,
      _meta: { ui: { prefersBorder: true } },
    },
    (uri) => ({ contents: [{ uri: uri.href, mimeType: RESOURCE_MIME_TYPE, text: boardHtml(), _meta: { ui: { prefersBorder: true } } }] }),
  );
}
