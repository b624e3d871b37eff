#!/usr/bin/env node
// agentpr-mcp: the bin's loader, written by scripts/bundle.mjs over tsc's dist/src/mcp/stdio.js.
//
// The bin's code is one CommonJS bundle beside this file (stdio-bundle.cjs: agentpr's modules,
// zod, the MCP SDK and pino). Compiling half a megabyte of JavaScript is a large share of a cold
// start, so the build also runs the bin once (initialize, tools/list) and saves V8's compiled code
// for it (stdio-bundle.v8cache). Here the bundle is compiled with that cache through node:vm; V8
// refuses a cache made by another V8 version or with other flags, and then the bundle is simply
// compiled as usual. Both files come from the same build (the build deletes the cache before it
// writes a new bundle). A script compiled from a cache cannot call import() on Node 20, so the
// bundle imports its ES-module-only packages through the function passed in here.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { readFileSync, writeFileSync } = require('node:fs');
const { dirname, join } = require('node:path');
const { fileURLToPath } = require('node:url');
const vm = require('node:vm');

const dir = dirname(fileURLToPath(import.meta.url));
const bundle = join(dir, 'stdio-bundle.cjs');
const cacheFile = join(dir, 'stdio-bundle.v8cache');
// Set by the build only (scripts/bundle.mjs): compile afresh and save the code cache at exit.
const training = process.env.AGENTPR_BUILD_CODE_CACHE === '1';

let cachedData;
if (!training) {
  try {
    cachedData = readFileSync(cacheFile);
  } catch {
    // no cache (a build that could not make one): compile as usual
  }
}
// The wrapper node itself puts around a CommonJS module (plus the import function), on the
// bundle's first line so line numbers in stack traces stay the bundle's.
const script = new vm.Script(`(function (exports, require, module, __filename, __dirname, __agentprLoaderImport) {${readFileSync(bundle, 'utf8')}\n})`, {
  filename: bundle,
  cachedData,
});
const mod = { exports: {} };
script.runInThisContext().call(mod.exports, mod.exports, createRequire(bundle), mod, bundle, dir, (specifier) => import(specifier));
const bin = mod.exports;
if (training) process.once('exit', () => writeFileSync(cacheFile, script.createCachedData()));
await bin.runStdioBin(process.argv.slice(2));
