import { errorMessage } from './errors.js';

/** What a person can do about an error the operating system or SQLite raised. */
const HINTS: Record<string, string> = {
  SQLITE_NOTADB: 'that file is not an agentpr (SQLite) database; point --db or AGENTPR_DB at another file, or move this one away',
  SQLITE_CORRUPT: 'the database file is damaged; restore it from a backup (agentpr backup) or point --db at a new file',
  SQLITE_CANTOPEN: 'the database file cannot be opened; check that its directory exists and is writable, or pick another --db',
  SQLITE_READONLY: 'the database file is read-only for this user; fix its permissions or pick another --db',
  SQLITE_BUSY: 'another process holds the database lock; wait for it to finish and try again',
  SQLITE_FULL: 'the disk holding the database is full; free some space and try again',
  EEXIST: 'a file is in the way of a directory agentpr needs; move it away or choose another --home',
  ENOTDIR: 'a path that should be a directory is a file; check --home, --db and AGENTPR_WORKSPACE_ROOT',
  EACCES: 'permission denied; check the owner and mode of that path, or choose another --home',
  EPERM: 'the operation is not permitted on that path; check its owner and mode, or choose another --home',
  ENOENT: 'a file or directory does not exist; check the path you gave',
  ENOSPC: 'the disk is full; free some space and try again',
  EROFS: 'that file system is read-only; choose a writable --home',
  EISDIR: 'a path that should be a file is a directory; check --db and --policy-file',
  EMFILE: 'too many open files; raise the limit (ulimit -n) or stop other processes',
  EADDRINUSE: 'the port is taken by another process; stop it or choose another --port',
  EADDRNOTAVAIL: 'this machine has no such address; use 127.0.0.1 or an address of one of its interfaces for --host',
};

/** The error code of a Node system error or a better-sqlite3 SqliteError. */
export function systemErrorCode(err: unknown): string | undefined {
  if (!err || typeof err !== 'object') return undefined;
  const code = (err as { code?: unknown }).code;
  if (typeof code !== 'string') return undefined;
  // better-sqlite3 reports extended codes (SQLITE_READONLY_DBMOVED); the base code picks the hint.
  const base = code.startsWith('SQLITE_') ? code.split('_').slice(0, 2).join('_') : code;
  return HINTS[base] ? base : undefined;
}

/** The error's message, followed by what to do when it is a known system or SQLite error. */
export function withHint(err: unknown): string {
  const message = errorMessage(err);
  const code = systemErrorCode(err);
  return code ? `${message} (${HINTS[code]})` : message;
}
