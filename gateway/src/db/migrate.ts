import { readdir } from 'node:fs/promises';
import type { Pool } from 'pg';
import { runner } from 'node-pg-migrate';
import type { Logger } from 'pino';
import { MIGRATIONS_DIR } from '../paths';

export const MIGRATIONS_TABLE = 'pgmigrations';

// node-pg-migrate takes its own lock with pg_try_advisory_lock and fails at once when another process
// holds it. Gateways that start together must wait for each other instead, so we hold a blocking
// advisory lock of our own on the same session and run the migrations with noLock.
const MIGRATION_LOCK_KEY = 0x6d67_6d69; // 'mgmi'

export async function listMigrationNames(dir = MIGRATIONS_DIR): Promise<string[]> {
  const files = await readdir(dir);
  return files
    .filter((file) => file.endsWith('.sql'))
    .map((file) => file.slice(0, -'.sql'.length))
    .sort();
}

/** Applies every pending migration in `dir`, serialized across processes by an advisory lock. */
export async function migrate(pool: Pool, logger: Logger, dir = MIGRATIONS_DIR): Promise<string[]> {
  const client = await pool.connect();
  let healthy = true;
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
    try {
      const applied = await runner({
        dbClient: client,
        dir,
        migrationsTable: MIGRATIONS_TABLE,
        direction: 'up',
        count: Infinity,
        noLock: true,
        checkOrder: true,
        log: (message: string) => logger.debug({ migration: message }, 'migrate'),
      });
      const names = applied.map((migration) => migration.name);
      if (names.length > 0) logger.info({ applied: names }, 'migrations applied');
      return names;
    } catch (error) {
      // node-pg-migrate leaves a failed migration's transaction open and aborted, where the unlock
      // below would fail too and hide this error: end the transaction first.
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]);
    }
  } catch (error) {
    healthy = false;
    throw error;
  } finally {
    client.release(!healthy);
  }
}

/** Names of migrations in the folder that the database has not applied yet. */
export async function pendingMigrations(pool: Pool, expected: readonly string[]): Promise<string[]> {
  const exists = await pool.query<{ table: string | null }>(`SELECT to_regclass($1) AS "table"`, [MIGRATIONS_TABLE]);
  if (exists.rows[0]?.table == null) return [...expected];
  const applied = await pool.query<{ name: string }>(`SELECT name FROM ${MIGRATIONS_TABLE}`);
  const done = new Set(applied.rows.map((row) => row.name));
  return expected.filter((name) => !done.has(name));
}

/** Thrown at start-up with MIGRATE_ON_START=false when the database lacks migrations of this build. */
export class PendingMigrationsError extends Error {
  constructor(readonly pending: readonly string[]) {
    super(
      `migrations not applied: ${pending.join(', ')}. MIGRATE_ON_START=false, so the gateway does not apply ` +
        'them: run "npm run migrate" against this database first, or start with MIGRATE_ON_START=true',
    );
    this.name = 'PendingMigrationsError';
  }
}

/** Refuses to go on while the database lacks a migration in `dir`. */
export async function assertMigrated(pool: Pool, dir = MIGRATIONS_DIR): Promise<void> {
  const pending = await pendingMigrations(pool, await listMigrationNames(dir));
  if (pending.length > 0) throw new PendingMigrationsError(pending);
}
