import { Registry } from '../registry.js';

let cached: Promise<Registry> | undefined;

/**
 * The registry of every tool (tools/index.ts), loaded lazily. manager-tick is itself one of those
 * tools, so a static import would be a cycle: loading tools/index.ts first evaluates
 * tools/manager-tick.ts, which would then see TOOLS in its temporal dead zone. By the time a tick
 * runs, tools/index.ts has finished loading, so a dynamic import is safe and always complete.
 */
export function defaultRegistry(): Promise<Registry> {
  cached ??= import('../../tools/index.js').then((m) => new Registry(m.TOOLS));
  return cached;
}
