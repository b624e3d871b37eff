import type { DB } from '../../src/store/db.js';

/** Every row of every table, as one string: equal fingerprints mean nothing changed. */
export function dbFingerprint(db: DB): string {
  const tables = (db.prepare(`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name`).all() as Array<{ name: string }>).map((t) => t.name);
  return tables.map((t) => `${t}:${JSON.stringify(db.prepare(`SELECT * FROM "${t}" ORDER BY rowid`).all())}`).join('\n');
}
