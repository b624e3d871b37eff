// Makes the two bins (and the demo's replay worker) executable after tsc (tsc keeps the shebang but not the mode bit),
// and copies the board's HTML next to its compiled module.
import { chmodSync, copyFileSync, existsSync, mkdirSync } from 'node:fs';
for (const f of ['dist/src/cli.js', 'dist/src/mcp/stdio.js', 'dist/src/demo/main.js', 'demo/replay-codex.mjs']) {
  if (existsSync(f)) chmodSync(f, 0o755);
}
mkdirSync('dist/src/board', { recursive: true });
copyFileSync('src/board/board.html', 'dist/src/board/board.html');
await import('./build-schemas.mjs');
await import('./bundle.mjs');
