// After tsc: copies the board's HTML next to its compiled module, writes dist/tool-schemas.json,
// bundles the agentpr-mcp bin (scripts/bundle.mjs), and makes the two bins (and the demo's replay
// worker) executable (tsc keeps the shebang but not the mode bit).
import { chmodSync, copyFileSync, existsSync, mkdirSync } from 'node:fs';
mkdirSync('dist/src/board', { recursive: true });
copyFileSync('src/board/board.html', 'dist/src/board/board.html');
await import('./build-schemas.mjs');
await import('./bundle.mjs');
for (const f of ['dist/src/cli.js', 'dist/src/mcp/stdio.js', 'dist/src/demo/main.js', 'demo/replay-codex.mjs']) {
  if (existsSync(f)) chmodSync(f, 0o755);
}
