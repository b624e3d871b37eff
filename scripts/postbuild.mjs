// Makes the two bins executable after tsc (tsc keeps the shebang but not the mode bit).
import { chmodSync, existsSync } from 'node:fs';
for (const f of ['dist/src/cli.js', 'dist/src/mcp/stdio.js']) {
  if (existsSync(f)) chmodSync(f, 0o755);
}
