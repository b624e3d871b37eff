// Makes the two bins (and the demo's replay worker) executable after tsc (tsc keeps the shebang but not the mode bit).
import { chmodSync, existsSync } from 'node:fs';
for (const f of ['dist/src/cli.js', 'dist/src/mcp/stdio.js', 'dist/src/demo/main.js', 'demo/replay-codex.mjs']) {
  if (existsSync(f)) chmodSync(f, 0o755);
}
