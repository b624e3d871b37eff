import { execFile } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import { promisify } from 'node:util';
import semver from 'semver';
import { describe, expect, test } from 'vitest';

const exec = promisify(execFile);
const ROOT = join(import.meta.dirname, '..', '..');
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  license: string;
  engines: { node: string };
  bin: Record<string, string>;
  dependencies: Record<string, string>;
};

/** The files `npm pack` would put in the tarball (scripts off: dist/ is already built by npm test). */
async function packedFiles(): Promise<string[]> {
  const { stdout } = await exec('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, timeout: 120_000 });
  return (JSON.parse(stdout) as Array<{ files: Array<{ path: string }> }>)[0]!.files.map((f) => f.path);
}

describe('the npm package', () => {
  test('ships the bins, LICENSE, README and docs; no benchmarks, source maps or tests', async () => {
    const files = await packedFiles();
    for (const bin of Object.values(pkg.bin)) expect(files).toContain(normalize(bin));
    expect(files).toContain('LICENSE');
    expect(readFileSync(join(ROOT, 'LICENSE'), 'utf8')).toMatch(new RegExp(`^${pkg.license} License`));
    expect(files).toContain('README.md');
    expect(files).toContain('mcp.json');
    for (const doc of readdirSync(join(ROOT, 'docs'))) expect(files).toContain(`docs/${doc}`);
    expect(files.filter((f) => f.endsWith('.map'))).toEqual([]);
    expect(files.filter((f) => f.startsWith('dist/bench/') || f.startsWith('bench/') || f.startsWith('test/'))).toEqual([]);
    // Every relative link in the README and docs points at a file the package ships.
    const docs = ['README.md', ...readdirSync(join(ROOT, 'docs')).filter((d) => d.endsWith('.md')).map((d) => `docs/${d}`)];
    for (const doc of docs) {
      const text = readFileSync(join(ROOT, doc), 'utf8');
      for (const m of text.matchAll(/\]\(([^)#\s]+)(?:#[^)]*)?\)/g)) {
        const target = m[1]!;
        if (/^[a-z]+:/i.test(target)) continue;
        const path = normalize(join(dirname(doc), target));
        const shipped = files.includes(path) || files.some((f) => f.startsWith(`${path}/`));
        expect(shipped, `${doc} links to ${target}, which the package does not ship`).toBe(true);
      }
    }
  });

  test("every production dependency runs on the lowest Node the package's engines allow", () => {
    const lowest = semver.minVersion(pkg.engines.node)!.version;
    const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as {
      packages: Record<string, { dev?: boolean; engines?: { node?: string } | string[] }>;
    };
    const refused: string[] = [];
    for (const [path, info] of Object.entries(lock.packages)) {
      if (!path || info.dev || Array.isArray(info.engines)) continue;
      const range = info.engines?.node;
      if (range && !semver.satisfies(lowest, range)) refused.push(`${path} (${range})`);
    }
    expect(refused, `these need a newer Node than engines ${pkg.engines.node}`).toEqual([]);
  });
});
