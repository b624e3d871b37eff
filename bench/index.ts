import { isMain } from './util.js';

/** Every benchmark, by name; `npm run bench [-- name ...]` runs them and prints one JSON document. */
const BENCHES: Record<string, () => Promise<{ run: () => Promise<Record<string, unknown>> }>> = {
  events: () => import('./events.js'),
  coldstart: () => import('./coldstart.js'),
  stream: () => import('./stream.js'),
  webhook: () => import('./webhook.js'),
  tick: () => import('./tick.js'),
};

export async function runAll(names: string[]): Promise<Record<string, unknown>> {
  const os = await import('node:os');
  const selected = names.length ? names : Object.keys(BENCHES);
  const results: Record<string, unknown> = {};
  for (const name of selected) {
    const load = BENCHES[name];
    if (!load) {
      results[name] = { error: `unknown benchmark; available: ${Object.keys(BENCHES).join(', ')}` };
      continue;
    }
    try {
      results[name] = await (await load()).run();
    } catch (err) {
      results[name] = { error: err instanceof Error ? err.message : String(err) };
    }
  }
  return {
    machine: { cpus: os.cpus().length, cpu_model: os.cpus()[0]?.model, mem_gib: Math.round(os.totalmem() / 2 ** 30), node: process.version, platform: `${os.platform()} ${os.release()}` },
    at: new Date().toISOString(),
    results,
  };
}

if (isMain(import.meta.url)) {
  console.log(JSON.stringify(await runAll(process.argv.slice(2)), null, 2));
}
