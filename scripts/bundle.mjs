// Bundles the agentpr-mcp bin into one CommonJS file, dist/src/mcp/stdio-bundle.cjs (from tsc's
// dist/src/mcp/stdio-main.js, with zod, the MCP SDK and pino), puts the loader
// (scripts/stdio-loader.js) in place of tsc's dist/src/mcp/stdio.js, and makes the V8 code cache
// the loader compiles the bundle with (dist/src/mcp/stdio-bundle.v8cache) by running the new bin
// once. The listing tools/list answers with is the build's dist/tool-schemas.json, compiled into
// the bundle so the two always come from the same build; the tool handlers (and the worker,
// GitHub, analysis and manager modules behind them) are in the bundle too but run their module
// code only on the first tools/call.
// Dependencies with native code, worker threads or their own files to find (better-sqlite3,
// octokit, openai, execa, grammY, ...) stay external and load from node_modules as before.
import { build } from 'esbuild';
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const OUT_DIR = resolve(ROOT, 'dist/src/mcp');
const ENTRY = resolve(OUT_DIR, 'stdio-main.js');
const BIN = resolve(OUT_DIR, 'stdio.js');
const BUNDLE = resolve(OUT_DIR, 'stdio-bundle.cjs');
const CACHE = resolve(OUT_DIR, 'stdio-bundle.v8cache');
const BANNER_FIRST_LINE = '// agentpr-mcp: bundled by scripts/bundle.mjs';
/**
 * Packages compiled into the bundle with their own dependencies: JavaScript only, no files of their
 * own to find at run time on the paths agentpr-mcp uses (pino's transports, which start workers
 * from pino's own files, are never used: logs go to stderr through pino.destination).
 */
const BUNDLED = ['zod', '@modelcontextprotocol/server', '@modelcontextprotocol/core', '@modelcontextprotocol/ext-apps', 'pino'];

// The catalog must list every tool with both schemas: the bundle answers tools/list from it alone.
const catalogText = readFileSync(resolve(ROOT, 'dist/tool-schemas.json'), 'utf8');
const { listingOf } = await import('../dist/src/mcp/tool-catalog.js');
if (!listingOf(JSON.parse(catalogText))) throw new Error('dist/tool-schemas.json lacks a tool listing or a schema; run npm run build');

// Output of an earlier build of the bin (the ESM bundle and its chunks, or this build's files).
for (const f of readdirSync(OUT_DIR)) if (f.startsWith('stdio-chunk-') || f.startsWith('stdio-bundle.')) rmSync(resolve(OUT_DIR, f));

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

// The bundle lands in dist/src/mcp, so a module's own place (board.html beside the board's module,
// the package root above it) is found from there: import.meta.url is rewritten per module, from
// the bundle's own file URL (CommonJS has no import.meta).
const ownUrl = {
  name: 'own-import-meta-url',
  setup(b) {
    b.onLoad({ filter: /[\\/]dist[\\/].*\.js$/ }, (args) => {
      const text = readFileSync(args.path, 'utf8');
      if (!text.includes('import.meta.url')) return undefined;
      const rel = relative(OUT_DIR, args.path).split('\\').join('/');
      return { contents: text.replaceAll('import.meta.url', `new URL(${JSON.stringify(rel)}, __agentprBundleUrl).href`), loader: 'js' };
    });
  },
};

await build({
  entryPoints: [ENTRY],
  outfile: BUNDLE,
  bundle: true,
  // CommonJS, so the loader can compile it with a code cache (node:vm has no such option for ES
  // modules on Node 20) and node's built-in modules are require()d rather than imported (an ES
  // import of a built-in builds a facade copying each export, ~15 ms of a cold start).
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  // Names kept: logs name an error's class (pino's err serializer reads constructor.name).
  keepNames: true,
  sourcemap: true,
  legalComments: 'eof',
  minify: process.env.AGENTPR_BUNDLE_NO_MINIFY !== '1',
  // Strict from the first statement, as the ES modules it is made of were (esbuild's own "use
  // strict" comes after the banner, where it is no directive).
  banner: { js: `${BANNER_FIRST_LINE}\n"use strict";\nconst __agentprBundleUrl = require("node:url").pathToFileURL(__filename).href;` },
  define: { AGENTPR_TOOL_CATALOG: JSON.stringify(catalogText) },
  plugins: [bundledOnly, englishOnly, ownUrl],
  logLevel: 'warning',
});
// The bundle's dynamic imports (ES-module-only packages: execa, octokit, openai) go through a
// function the loader hands in. On Node 20 a script compiled from a V8 code cache loses its dynamic
// import callback ("A dynamic import callback was not specified"), so the bundle itself must not
// call import(). Loaded with a plain require() (no loader), the bundle imports them itself.
const IMPORT_FN = '__agentprImport';
let bundleText = readFileSync(BUNDLE, 'utf8');
const dynamicImports = bundleText.match(/(?<![\w$.])import\(/g)?.length ?? 0;
bundleText = bundleText.replace(/(?<![\w$.])import\(("[^"\\]+")\)/g, `${IMPORT_FN}($1)`);
if (/(?<![\w$.])import\(/.test(bundleText)) {
  throw new Error(`the bundle calls import() with something other than a package name (${dynamicImports} calls); give each a literal name`);
}
bundleText = bundleText.replace(`${BANNER_FIRST_LINE}\n"use strict";`, `${BANNER_FIRST_LINE}\n"use strict";\nvar ${IMPORT_FN} = typeof __agentprLoaderImport === 'function' ? __agentprLoaderImport : (specifier) => import(specifier);`);
writeFileSync(BUNDLE, bundleText);
copyFileSync(resolve(ROOT, 'scripts/stdio-loader.js'), BIN);

// The code cache: the new bin started once, as a client starts it (initialize, tools/list), in a
// throwaway data home; the loader saves V8's code for everything that ran when the bin exits.
const home = mkdtempSync(join(tmpdir(), 'agentpr-build-'));
try {
  await new Promise((resolvePromise, reject) => {
    // None of the installing user's agentpr settings (a database, a workspace root, a policy): the
    // run touches nothing but its throwaway home.
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('AGENTPR_')));
    Object.assign(env, { AGENTPR_HOME: home, AGENTPR_LOG_LEVEL: 'silent', AGENTPR_BUILD_CODE_CACHE: '1' });
    const child = spawn(process.execPath, [BIN], {
      env,
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    let out = '';
    let answered = 0;
    child.stdout.on('data', (d) => {
      out += d;
      // Whole lines only: a long answer arrives in several chunks.
      const ids = out.split('\n').slice(0, -1).map((line) => JSON.parse(line).id);
      if (ids.includes(1) && answered === 0) {
        answered = 1;
        child.stdin.write(`${JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' })}\n${JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list', params: {} })}\n`);
      }
      if (ids.includes(2) && answered === 1) {
        answered = 2;
        child.stdin.end();
      }
    });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0 && answered === 2) resolvePromise();
      else reject(new Error(`the new agentpr-mcp did not answer initialize and tools/list (exit ${code ?? signal}): ${out.slice(0, 500)}`));
    });
    child.stdin.write(
      `${JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'agentpr-build', version: '1' } } })}\n`,
    );
  });
  if (!existsSync(CACHE) || statSync(CACHE).size === 0) throw new Error(`no code cache was written to ${CACHE}`);
} catch (err) {
  // The bin works without the cache, only its start is slower: an install goes on.
  rmSync(CACHE, { force: true });
  process.stderr.write(`agentpr-mcp build: no code cache for the bin (it will compile at each start): ${err.message}\n`);
} finally {
  rmSync(home, { recursive: true, force: true });
}
