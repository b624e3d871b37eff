import type { DB } from '../../src/store/db.js';

/** Every row of every table, as one string: equal fingerprints mean nothing changed. */
export function dbFingerprint(db: DB): string {
  const tables = (db.prepare(`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name`).all() as Array<{ name: string }>).map((t) => t.name);
  // Rows sorted as text: some tables are WITHOUT ROWID, so there is no common physical order.
  return tables.map((t) => `${t}:${(db.prepare(`SELECT * FROM "${t}"`).all()).map((r) => JSON.stringify(r)).sort().join(',')}`).join('\n');
}
