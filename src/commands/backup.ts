import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import type { CliCommand } from './types.js';
import { UsageError } from '../core/errors.js';

/**
 * `agentpr backup --to FILE`: a consistent copy of the live database through SQLite's online
 * backup API, safe while servers keep writing (WAL). Restore by stopping the services and
 * copying the file back to the --db path.
 */
export const backupCommand: CliCommand = {
  name: 'backup',
  summary: 'online backup of the SQLite database to a file (safe while servers run)',
  usage: 'usage: agentpr [--db FILE] backup --to BACKUP_FILE [--force]\nCopies the live database with the SQLite online backup API.',
  async run(argv, { openApp }) {
    let to: string | undefined;
    let force = false;
    for (let i = 0; i < argv.length; i++) {
      if (argv[i] === '--to') to = argv[++i];
      else if (argv[i] === '--force') force = true;
      else throw new UsageError(`unknown option ${argv[i]} for backup; allowed: --to FILE, --force`);
    }
    if (!to) throw new UsageError('backup needs --to FILE');
    const target = resolve(to);
    if (existsSync(target) && !force) throw new UsageError(`${target} exists; pass --force to overwrite it`);
    const app = openApp();
    if (resolve(app.config.dbPath) === target) throw new UsageError('--to must differ from the live database file');
    const t0 = Date.now();
    const { totalPages } = await app.db.backup(target);
    process.stdout.write(`backed up ${app.config.dbPath} to ${target} (${totalPages} pages, ${Date.now() - t0} ms)\n`);
    return 0;
  },
};
