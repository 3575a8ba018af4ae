// The benchmark's database: a fresh one on the chosen server, migrated and seeded, dropped at the end.

import { randomBytes } from 'node:crypto';
import { DatabaseError, Pool, escapeIdentifier } from 'pg';
import type { Logger } from 'pino';
import { seedDemoData } from '../gateway/src/db/demo-data';
import { databaseUrl, openDevServer, withClient, type DevServer } from '../gateway/src/db/dev-postgres';
import { MIGRATIONS_TABLE, migrate } from '../gateway/src/db/migrate';

export const METRICS_TABLE = 'user_metrics';
/** Same shape as user_metrics, without foreign keys or triggers: the physical limit of the table. */
export const NO_FK_TABLE = 'user_metrics_nofk';

/** BENCH_DATABASE_URL, else DATABASE_URL's server, else an embedded PostgreSQL in a temporary folder. */
export function openBenchServer(env: NodeJS.ProcessEnv, logger: Logger): Promise<DevServer> {
  return openDevServer({ env, variables: ['BENCH_DATABASE_URL', 'DATABASE_URL'], logger });
}

export interface BenchDatabase {
  readonly name: string;
  readonly url: string;
  readonly pool: Pool;
  /** Applied migrations, in order. */
  readonly migrations: readonly string[];
  /** Ends the pool and drops the database, disconnecting anyone still on it. Idempotent. */
  drop(): Promise<void>;
}

/**
 * Creates mg_bench_<random>, migrates it (with the migrations of `migrationsDir`, by default all),
 * seeds the demo users and devices and adds the no-FK table.
 */
export async function createBenchDatabase(
  server: DevServer,
  logger: Logger,
  migrationsDir?: string,
): Promise<BenchDatabase> {
  const name = `mg_bench_${randomBytes(4).toString('hex')}`;
  await withClient(server.url, (client) => client.query(`CREATE DATABASE ${escapeIdentifier(name)}`));
  const url = databaseUrl(server.url, name);
  const pool = benchPool(url);
  let dropping: Promise<void> | undefined;
  const drop = (): Promise<void> =>
    (dropping ??= (async () => {
      await pool.end().catch(() => undefined);
      await withClient(server.url, (client) =>
        client.query(`DROP DATABASE IF EXISTS ${escapeIdentifier(name)} WITH (FORCE)`),
      );
    })());
  try {
    return { name, url, pool, migrations: await prepare(pool, logger, migrationsDir), drop };
  } catch (error) {
    await drop().catch(() => undefined);
    throw error;
  }
}

/**
 * A database on a Citus coordinator (`--citus`): the citus extension installed and the workers added.
 * Migrated (0008 distributes the tables) and seeded like a bench database; emptied before each run,
 * never dropped: it is the caller's.
 */
export async function openCitusBenchDatabase(url: string, logger: Logger): Promise<BenchDatabase> {
  const pool = benchPool(url);
  try {
    const citus = await pool.query(`SELECT 1 FROM pg_extension WHERE extname = 'citus'`);
    if (citus.rowCount === 0) throw new Error('--citus: that database has no citus extension (CREATE EXTENSION citus)');
    const migrations = await prepare(pool, logger);
    return { name: new URL(url).pathname.slice(1), url, pool, migrations, drop: () => pool.end() };
  } catch (error) {
    await pool.end().catch(() => undefined);
    throw error;
  }
}

/** Citus's version and where its workers are, for the report. */
export async function describeCitus(pool: Pool): Promise<string> {
  const { rows } = await pool.query<{ version: string; workers: string[] | null }>(
    `SELECT citus_version() AS version,
            array_agg(nodename || ':' || nodeport ORDER BY nodeid) FILTER (WHERE shouldhaveshards AND groupid <> 0) AS workers
       FROM pg_dist_node`,
  );
  const facts = rows[0];
  return `${facts?.version.split(' on ')[0] ?? 'Citus'}, workers ${(facts?.workers ?? []).join(', ')}`;
}

// No statement of the benchmark's own may hang a run forever (a TRUNCATE behind a stuck lock, say).
function benchPool(url: string): Pool {
  return new Pool({ connectionString: url, max: 2, application_name: 'mg-bench', statement_timeout: 600_000 });
}

/** Migrates, seeds the demo users and devices, adds the no-FK table; returns the applied migrations. */
async function prepare(pool: Pool, logger: Logger, migrationsDir?: string): Promise<string[]> {
  await migrate(pool, logger, migrationsDir);
  const applied = await pool.query<{ name: string }>(`SELECT name FROM ${MIGRATIONS_TABLE} ORDER BY run_on, id`);
  await seedDemoData(pool);
  await pool.query(`CREATE TABLE IF NOT EXISTS ${NO_FK_TABLE} (LIKE ${METRICS_TABLE} INCLUDING ALL)`);
  // The parallel COPY is reported as into "the same keys"; LIKE ... INCLUDING ALL gives them, this checks it.
  const [keys, noFkKeys] = await Promise.all([indexKeys(pool, METRICS_TABLE), indexKeys(pool, NO_FK_TABLE)]);
  if (keys.join('; ') !== noFkKeys.join('; ')) {
    throw new Error(`${NO_FK_TABLE} has the keys ${noFkKeys.join('; ')}, ${METRICS_TABLE} has ${keys.join('; ')}`);
  }
  // Autovacuum would analyze the freshly seeded tables at some moment during the benchmark, and the
  // plan of every per-row foreign-key check can change with it; analyzing now makes all runs equal.
  await pool.query('VACUUM ANALYZE users, devices');
  return applied.rows.map((row) => row.name);
}

/** The indexes of `table` as "unique btree (a, b)", sorted; for a partitioned table, those of the parent. */
async function indexKeys(pool: Pool, table: string): Promise<string[]> {
  const { rows } = await pool.query<{ key: string }>(
    `SELECT CASE WHEN indisunique THEN 'unique ' ELSE '' END
            || substring(pg_get_indexdef(indexrelid) FROM ' USING (.*)$') AS key
       FROM pg_index WHERE indrelid = $1::regclass ORDER BY key`,
    [table],
  );
  return rows.map((row) => row.key);
}

const INSUFFICIENT_PRIVILEGE = '42501';

/** Empties the metric tables and writes out dirty pages, so that every run starts from the same state. */
export async function resetTables(pool: Pool): Promise<void> {
  const tables = [METRICS_TABLE, NO_FK_TABLE, 'rejected_metrics'].join(', ');
  await pool.query(`TRUNCATE ${tables} RESTART IDENTITY`);
  await pool.query(`VACUUM ANALYZE ${tables}`);
  try {
    await pool.query('CHECKPOINT');
  } catch (error) {
    // CHECKPOINT needs a superuser (or pg_checkpoint); without it runs are only a little less equal.
    if (!(error instanceof DatabaseError && error.code === INSUFFICIENT_PRIVILEGE)) throw error;
  }
}

export async function countRows(pool: Pool, table: string): Promise<number> {
  const result = await pool.query<{ count: string }>(`SELECT count(*) AS count FROM ${escapeIdentifier(table)}`);
  return Number(result.rows[0]?.count ?? NaN);
}

/** Bytes of `table`, its indexes and TOAST, its partitions included. */
export async function tableBytes(pool: Pool, table: string): Promise<number> {
  const { rows } = await pool.query<{ bytes: string }>(
    `SELECT (pg_total_relation_size($1::regclass)
             + coalesce((SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits WHERE inhparent = $1::regclass), 0)
            )::text AS bytes`,
    [table],
  );
  return Number(rows[0]?.bytes ?? NaN);
}

/** Users 1..`users` and the devices `deviceIds` (those not there yet), then analyzed, as the bench needs them. */
export async function registerUsersAndDevices(pool: Pool, users: number, deviceIds: readonly string[]): Promise<void> {
  await pool.query(
    `INSERT INTO users (id, name) SELECT g, 'bench user ' || g FROM generate_series(1, $1::int) AS g ON CONFLICT DO NOTHING`,
    [users],
  );
  await pool.query(
    `INSERT INTO devices (id, type) SELECT d, 'phone' FROM unnest($1::text[]) AS d ON CONFLICT DO NOTHING`,
    [deviceIds],
  );
  await pool.query('VACUUM ANALYZE users, devices');
}

/** Records migrations as applied without running them. */
export async function recordMigrationsApplied(pool: Pool, names: readonly string[]): Promise<void> {
  await pool.query(`INSERT INTO ${MIGRATIONS_TABLE} (name, run_on) SELECT n, now() FROM unnest($1::text[]) AS n`, [
    names,
  ]);
}

export interface ServerFacts {
  readonly version: string;
  readonly settings: string;
}

const REPORTED_SETTINGS = [
  'shared_buffers',
  'synchronous_commit',
  'fsync',
  'wal_level',
  'max_wal_size',
  'checkpoint_timeout',
  'max_connections',
];

export async function describeServer(pool: Pool): Promise<ServerFacts> {
  const version = await pool.query<{ server_version: string }>('SHOW server_version');
  const settings = await pool.query<{ name: string; setting: string; unit: string | null }>(
    `SELECT name, current_setting(name) AS setting FROM pg_settings WHERE name = ANY($1) ORDER BY name`,
    [REPORTED_SETTINGS],
  );
  return {
    version: version.rows[0]?.server_version ?? 'unknown',
    settings: settings.rows.map((row) => `${row.name}=${row.setting}`).join(', '),
  };
}
