import { open, readdir, readFile, rename } from 'node:fs/promises';
import path from 'node:path';
import type { Pool } from 'pg';
import { databaseIdentity, type DatabaseIdentity } from '../db/database-identity';
import type { Logger } from '../logger';
import { SPOOL_LOCK_FILE } from './lock';

/** Records which database the rows in a spool directory belong to. */
export const SPOOL_IDENTITY_FILE = 'spool-database.json';
const IDENTITY_TEMP_FILE = `${SPOOL_IDENTITY_FILE}.tmp`;
const NOT_ROWS = new Set([SPOOL_LOCK_FILE, SPOOL_IDENTITY_FILE, IDENTITY_TEMP_FILE]);

function sameDatabase(a: DatabaseIdentity, b: DatabaseIdentity): boolean {
  if (a.database !== b.database) return false;
  return a.systemIdentifier === null || b.systemIdentifier === null || a.systemIdentifier === b.systemIdentifier;
}

function describe(identity: DatabaseIdentity): string {
  const system = identity.systemIdentifier === null ? '' : ` (system identifier ${identity.systemIdentifier})`;
  return `database "${identity.database}"${system}`;
}

/**
 * Ties the spool directory `dir` to the database `pool` is connected to, before anything in it is
 * replayed: a spool's rows replayed into another database would be stored where they never belonged
 * (and that database's commit records cannot tell which of them were stored already). The first use
 * records the database; a later start against another database is refused while the directory holds
 * anything that may be rows, and re-binds the directory when it holds none. Call it with the
 * directory locked (lock.ts).
 */
export async function bindSpoolToDatabase(dir: string, pool: Pool, logger: Logger): Promise<void> {
  const current = await databaseIdentity(pool);
  const recorded = await readIdentity(dir);
  if (recorded !== undefined && sameDatabase(recorded, current)) return;
  const rowFiles = (await readdir(dir)).filter((name) => !NOT_ROWS.has(name)).sort();
  if (recorded !== undefined && rowFiles.length > 0) {
    const shown = rowFiles.slice(0, 3).join(', ') + (rowFiles.length > 3 ? `, ... (${rowFiles.length} files)` : '');
    throw new Error(
      `the spool directory ${dir} holds rows for ${describe(recorded)}, but this gateway is connected to ` +
        `${describe(current)}; replaying them here would store another database's rows. Point SPOOL_DIR at ` +
        `another directory for this database, or start a gateway on ${dir} against "${recorded.database}" ` +
        `to replay them there; only if those rows are not wanted, move ${shown} out of ${dir}.`,
    );
  }
  if (recorded === undefined && rowFiles.length > 0) {
    // Left by a gateway that did not record its database yet: the best guess is the one it runs with.
    logger.warn({ dir, database: current.database, files: rowFiles.length }, 'spool without a recorded database');
  } else if (recorded !== undefined) {
    logger.info({ dir, from: recorded.database, to: current.database }, 'empty spool bound to another database');
  }
  await recordIdentity(dir, current);
}

async function readIdentity(dir: string): Promise<DatabaseIdentity | undefined> {
  const file = path.join(dir, SPOOL_IDENTITY_FILE);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  let parsed: Partial<Record<keyof DatabaseIdentity, unknown>> | undefined;
  try {
    parsed = JSON.parse(text) as typeof parsed;
  } catch {
    // reported below
  }
  const { systemIdentifier, database } = parsed ?? {};
  if (typeof database !== 'string' || (systemIdentifier !== null && typeof systemIdentifier !== 'string')) {
    throw new Error(
      `${file} is damaged: it should name the database whose rows the spool holds. Restore it, or remove it ` +
        'if the spool files are known to belong to the database in DATABASE_URL.',
    );
  }
  return { systemIdentifier, database };
}

/** Writes a temporary file, fsyncs it, renames it over the old one, fsyncs the directory: never torn. */
async function recordIdentity(dir: string, identity: DatabaseIdentity): Promise<void> {
  const temp = path.join(dir, IDENTITY_TEMP_FILE);
  const handle = await open(temp, 'w');
  try {
    await handle.writeFile(`${JSON.stringify(identity)}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temp, path.join(dir, SPOOL_IDENTITY_FILE));
  const directory = await open(dir, 'r');
  try {
    await directory.sync();
  } finally {
    await directory.close();
  }
}
