import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, Pool, escapeIdentifier, type PoolConfig } from 'pg';
import { databaseUrl, withClient } from '../../src/db/dev-postgres';
import { migrate } from '../../src/db/migrate';
import { createCitusDatabase, dropCitusDatabase } from './citus-cluster';
import { isDatabaseBusy } from './database-busy';
import { ON_CITUS_GLOBAL } from './find-citus';
import { testLogger } from './logger';

// global-setup.ts picks one PostgreSQL server per jest run and builds a migrated template database
// on it. Every test file then clones a database of its own, so files run in parallel without
// sharing rows, and a clone costs a file copy instead of a migration run.

/**
 * The environment variables global-setup.ts sets for the workers: the server's maintenance database and
 * the run's id, one set for each kind of server (one jest run may have both projects), and the Citus
 * workers' maintenance databases, as JSON.
 */
export function runEnvironment(citus: boolean) {
  const prefix = citus ? 'MG_TEST_CITUS_' : 'MG_TEST_';
  return { serverUrl: `${prefix}SERVER_URL`, runId: `${prefix}RUN_ID`, citusWorkers: 'MG_TEST_CITUS_WORKERS' } as const;
}

/**
 * True in a test file of a project whose databases are on a Citus coordinator (jest.config.js: the
 * citus project, or every integration test with TEST_CITUS=1). Tests that look at what one server
 * shows (a row's partition, a plan, a constraint name, pg_locks) branch their expectation on it, with
 * the reason beside the branch.
 */
export function onCitus(): boolean {
  return (globalThis as Record<string, unknown>)[ON_CITUS_GLOBAL] === true;
}

/** The maintenance database of the server this test file's databases are made on. */
export function testServerUrl(): string {
  return requiredEnv(runEnvironment(onCitus()).serverUrl);
}

/**
 * The partition a row's `tableoid::regclass::text` names. On Citus the coordinator returns a worker's
 * row with the oid of its shard there, named after the partition with `_<shard id>` appended.
 */
export function partitionOfRow(tableoid: string): string {
  return onCitus() ? tableoid.replace(/_\d+$/, '') : tableoid;
}

/** How many rows of user_metrics each partition holds, by name (on Citus, added up over its shards). */
export async function rowsByPartition(pool: Pool): Promise<Record<string, number>> {
  const { rows } = await pool.query<{ partition: string; n: number }>(
    `SELECT tableoid::regclass::text AS partition, count(*)::int AS n FROM user_metrics GROUP BY 1 ORDER BY 1`,
  );
  const counts: Record<string, number> = {};
  for (const row of rows) {
    const partition = partitionOfRow(row.partition);
    counts[partition] = (counts[partition] ?? 0) + row.n;
  }
  return counts;
}

export interface TestDatabase {
  readonly name: string;
  readonly url: string;
  readonly pool: Pool;
  /** Ends the pool and drops the database, disconnecting anyone still on it. */
  drop(): Promise<void>;
}

/**
 * A pool for a test's own connections. An idle connection the server ends (57P01 from a DROP ... WITH
 * (FORCE) or a restart a test makes) is dropped by the pool and replaced on the next query; unheard, its
 * 'error' would fail whichever test runs at that moment in this worker. pool.end() resolves before its
 * connections have closed, so a DROP ... WITH (FORCE) just after it can still end one of them. A query's
 * own error still reaches its caller.
 */
export function createTestPool(config: PoolConfig): Pool {
  const pool = new Pool(config);
  pool.on('error', () => undefined);
  return pool;
}

/** A database of its own for one test file: a clone of the migrated template, or empty with migrated: false. */
export async function createTestDatabase(options: { migrated?: boolean } = {}): Promise<TestDatabase> {
  const variables = runEnvironment(onCitus());
  const serverUrl = requiredEnv(variables.serverUrl);
  const runId = requiredEnv(variables.runId);
  const name = `${testDatabasePrefix(runId)}${randomId()}`;
  const { url, dropDatabaseNow, migrateHere } = onCitus()
    ? await makeCitusDatabase(serverUrl, JSON.parse(requiredEnv(variables.citusWorkers)), name)
    : await makeDatabase(serverUrl, name, options.migrated === false ? 'template0' : templateName(runId));
  const pool = createTestPool({ connectionString: url });
  let dropping: Promise<void> | undefined;
  const drop = async (): Promise<void> => {
    await pool.end();
    await dropDatabaseNow();
  };
  if (migrateHere && options.migrated !== false) await migrate(pool, testLogger);
  return { name, url, pool, drop: () => (dropping ??= drop()) };
}

interface MadeDatabase {
  readonly url: string;
  dropDatabaseNow(): Promise<void>;
  /** True when the database is made empty and the migrations must be run in it. */
  readonly migrateHere: boolean;
}

async function makeDatabase(serverUrl: string, name: string, template: string): Promise<MadeDatabase> {
  await withClient(serverUrl, (client) => createDatabase(client, name, template));
  return {
    url: databaseUrl(serverUrl, name),
    dropDatabaseNow: () => withClient(serverUrl, (client) => dropDatabase(client, name)),
    migrateHere: false,
  };
}

/**
 * On a Citus cluster a database is made on every node and migrated (0008 distributes
 * the tables): a clone of a template is no use there, Citus keeps its metadata and shards per
 * database on each node, and its background sessions keep a template busy.
 */
async function makeCitusDatabase(serverUrl: string, workerServerUrls: string[], name: string): Promise<MadeDatabase> {
  return {
    url: await createCitusDatabase(serverUrl, workerServerUrls, name),
    dropDatabaseNow: () => dropCitusDatabase(serverUrl, workerServerUrls, name),
    migrateHere: true,
  };
}

/** The run id in every name lets teardown find this run's leftovers without touching another run's. */
export function templateName(runId: string): string {
  return `mg_tpl_${runId}`;
}

export function testDatabasePrefix(runId: string): string {
  return `mg_t_${runId}_`;
}

export function randomId(): string {
  return randomBytes(4).toString('hex');
}

const CREATE_ATTEMPTS = 3;

/**
 * CREATE DATABASE ... TEMPLATE fails while another session is connected to the template (the server
 * itself waits 5 s first); a session that has just disconnected can still count for a moment.
 */
export async function createDatabase(client: Client, name: string, template: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await client.query(`CREATE DATABASE ${escapeIdentifier(name)} TEMPLATE ${escapeIdentifier(template)}`);
      return;
    } catch (error) {
      if (!isDatabaseBusy(error) || attempt === CREATE_ATTEMPTS) throw error;
      await sleep(100 * attempt);
    }
  }
}

export async function dropDatabase(client: Client, name: string): Promise<void> {
  await client.query(`DROP DATABASE IF EXISTS ${escapeIdentifier(name)} WITH (FORCE)`);
}

function requiredEnv(name: string): string {
  const value = process.env[name];
  if (!value) {
    throw new Error(
      `${name} is not set: a test file that uses the database belongs to the integration (or citus) ` +
        'project of jest.config.js, whose globalSetup prepares it',
    );
  }
  return value;
}
