// Bundles the agentpr-mcp bin (dist/src/mcp/stdio.js, as tsc wrote it) into one file with zod and
// the MCP SDK, so a cold start reads and links a handful of modules instead of about 250. The tool
// handlers (and the worker, GitHub, analysis and manager modules behind them) go to chunks beside
// it that load on the first tools/call; the listing tools/list answers with is the build's
// dist/tool-schemas.json, copied into the bundle so the two always come from the same build.
// Dependencies with native code, worker threads or their own files to find (better-sqlite3, pino,
// octokit, openai, execa, grammY, ...) stay external and load from node_modules as before.
import { build } from 'esbuild';
import { readFileSync, readdirSync, rmSync } from 'node:fs';
import { dirname, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const OUT_DIR = resolve(ROOT, 'dist/src/mcp');
const ENTRY = resolve(OUT_DIR, 'stdio.js');
const CHUNK_PREFIX = 'stdio-chunk-';
/** The first line of the bundle (after the shebang): a second run without tsc first would bundle the bundle. */
export const BUNDLE_MARK = '// agentpr-mcp: bundled by scripts/bundle.mjs';
/**
 * Packages compiled into the bundle with their own dependencies: JavaScript only, no files of their
 * own to find at run time on the paths agentpr-mcp uses (pino's transports, which start workers
 * from pino's own files, are never used: logs go to stderr through pino.destination).
 */
const BUNDLED = ['zod', '@modelcontextprotocol/server', '@modelcontextprotocol/core', '@modelcontextprotocol/ext-apps', 'pino'];

const entryText = readFileSync(ENTRY, 'utf8');
if (entryText.includes(BUNDLE_MARK)) {
  throw new Error(`${ENTRY} is already a bundle; run npm run build (tsc writes it afresh first)`);
}
const catalog = readFileSync(resolve(ROOT, 'dist/tool-schemas.json'), 'utf8');
for (const f of readdirSync(OUT_DIR)) if (f.startsWith(CHUNK_PREFIX)) rmSync(resolve(OUT_DIR, f));

const bundledOnly = {
  name: 'bundled-only',
  setup(b) {
    b.onResolve({ filter: /^[^./]/ }, (args) => {
      if (args.path.startsWith('node:')) return { external: true };
      const bundled = BUNDLED.some((p) => args.path === p || args.path.startsWith(`${p}/`)) || /[\\/]node_modules[\\/]/.test(args.importer);
      return bundled ? undefined : { path: args.path, external: true };
    });
  },
};

// better-sqlite3 is CommonJS: loaded with require(), node does not scan its source for ESM export
// names first (that scan, and the parser it starts, cost more than loading the module itself).
const VIA_REQUIRE = new Set(['better-sqlite3']);
const viaRequire = {
  name: 'via-require',
  setup(b) {
    b.onResolve({ filter: /^[^./]/ }, (args) => {
      if (!VIA_REQUIRE.has(args.path)) return undefined;
      return args.namespace === 'via-require' ? { path: args.path, external: true } : { path: args.path, namespace: 'via-require' };
    });
    b.onLoad({ filter: /.*/, namespace: 'via-require' }, (args) => ({ contents: `module.exports = require(${JSON.stringify(args.path)});`, loader: 'js' }));
  },
};

// zod re-exports its error messages in about 60 languages as `z.locales`; agentpr sets none but the
// English default, so the bundle keeps only that one (the others were nearly half of zod's code).
const englishOnly = {
  name: 'zod-english-only',
  setup(b) {
    b.onLoad({ filter: /[\\/]node_modules[\\/]zod[\\/]v4[\\/]locales[\\/]index\.js$/ }, (args) => ({
      contents: 'export { default as en } from "./en.js";\n',
      resolveDir: dirname(args.path),
      loader: 'js',
    }));
  },
};

// Every output file lands in dist/src/mcp, so a module's own place (board.html beside the board's
// module, the package root above it) is found from there: import.meta.url is rewritten per module.
const ownUrl = {
  name: 'own-import-meta-url',
  setup(b) {
    b.onLoad({ filter: /[\\/]dist[\\/].*\.js$/ }, (args) => {
      const text = readFileSync(args.path, 'utf8');
      if (!text.includes('import.meta.url')) return undefined;
      const rel = relative(OUT_DIR, args.path).split('\\').join('/');
      return { contents: text.replaceAll('import.meta.url', `new URL(${JSON.stringify(rel)}, import.meta.url).href`), loader: 'js' };
    });
  },
};

await build({
  entryPoints: { stdio: ENTRY },
  outdir: OUT_DIR,
  allowOverwrite: true,
  bundle: true,
  splitting: true,
  chunkNames: `${CHUNK_PREFIX}[hash]`,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  // Names kept: logs name an error's class (pino's err serializer reads constructor.name).
  keepNames: true,
  sourcemap: true,
  legalComments: 'eof',
  minify: process.env.AGENTPR_BUNDLE_NO_MINIFY !== '1',
  // CommonJS dependencies (pino) call require() for node's built-in modules.
  banner: { js: `${BUNDLE_MARK}\nimport { createRequire as __agentprCreateRequire } from 'node:module';\nconst require = __agentprCreateRequire(import.meta.url);` },
  define: { AGENTPR_TOOL_CATALOG: JSON.stringify(catalog) },
  plugins: [viaRequire, bundledOnly, englishOnly, ownUrl],
  logLevel: 'warning',
});
