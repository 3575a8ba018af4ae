import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { escapeIdentifier } from 'pg';
import { bindSpoolToDatabase, SPOOL_IDENTITY_FILE } from '../../src/spool/identity';
import { createTestDatabase, createTestPool, randomId, type TestDatabase } from '../helpers/database';
import { postNdjson, startTestGateway } from '../helpers/gateway';
import { testLogger } from '../helpers/logger';
import { startGatewayProcess, type GatewayProcess } from '../helpers/process';

// A spool holds rows for one database. Started against another DATABASE_URL, a gateway must not
// replay them there: it refuses to start, names both databases, and leaves the files for a gateway
// started against the right one.

let dbA: TestDatabase;
let dbB: TestDatabase;
let spoolDir: string;
const running: GatewayProcess[] = [];

async function storedIn(db: TestDatabase): Promise<number> {
  const { rows } = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM user_metrics');
  return (rows[0] as { n: number }).n;
}

async function spoolFiles(): Promise<string[]> {
  return (await readdir(spoolDir)).filter((name) => name.endsWith('.spool')).sort();
}

async function recordedDatabase(dir: string): Promise<unknown> {
  return JSON.parse(await readFile(path.join(dir, SPOOL_IDENTITY_FILE), 'utf8'));
}

async function start(db: TestDatabase, env: Record<string, string> = {}): Promise<GatewayProcess> {
  const gateway = startGatewayProcess({ DATABASE_URL: db.url, SPOOL_DIR: spoolDir, LOG_LEVEL: 'warn', ...env });
  void gateway.then(
    (started) => running.push(started),
    () => undefined,
  );
  return gateway;
}

beforeAll(async () => {
  [dbA, dbB] = await Promise.all([createTestDatabase(), createTestDatabase()]);
  for (const db of [dbA, dbB]) await db.pool.query(`INSERT INTO users (id, name) VALUES (1, 'one')`);
});

beforeEach(async () => {
  spoolDir = await mkdtemp(path.join(os.tmpdir(), 'mg-identity-'));
});

afterEach(async () => {
  for (const gateway of running.splice(0)) {
    if (gateway.child.exitCode === null && gateway.child.signalCode === null) gateway.child.kill('SIGKILL');
    await gateway.exited;
  }
  await rm(spoolDir, { recursive: true, force: true });
});

afterAll(async () => {
  await Promise.all([dbA?.drop(), dbB?.drop()]);
});

it("refuses to replay database A's spool into database B, leaves the files, and replays them into A", async () => {
  // The rows would wait a minute in memory: they are only in the spool when the process dies.
  const first = await start(dbA, { BATCH_MAX_WAIT_MS: '60000' });
  const lines = Array.from({ length: 20 }, (_, n) =>
    JSON.stringify({ user_id: 1, talked_time: n, microphone_used: true, speaker_used: false, time_recorded: 0 }),
  );
  expect(await postNdjson(`${first.url}/v1/metrics/bulk?wait=false`, lines.join('\n'))).toMatchObject({
    status: 202,
    body: { accepted: 20 },
  });
  first.child.kill('SIGKILL');
  expect(await first.exited).toBe('SIGKILL');
  const files = await spoolFiles();
  expect(files.length).toBeGreaterThan(0);

  const refusal = start(dbB).then((gateway) => `it started, at ${gateway.url}`);
  await expect(refusal).rejects.toThrow(
    new RegExp(
      `spool directory ${spoolDir} holds rows for database "${dbA.name}" \\(system identifier \\d+\\), but this ` +
        `gateway is connected to database "${dbB.name}".*Point SPOOL_DIR at another directory`,
    ),
  );
  expect(await spoolFiles()).toEqual(files);
  expect(await storedIn(dbB)).toBe(0);

  const second = await start(dbA);
  // The spool is replayed before the gateway listens.
  expect(await storedIn(dbA)).toBe(20);
  second.child.kill('SIGTERM');
  expect(await second.exited).toBe(0);
  expect(await spoolFiles()).toEqual([]);
  expect(await storedIn(dbB)).toBe(0);
});

it('binds an empty spool directory to the next database, and releases its lock on stop', async () => {
  const onA = await startTestGateway(dbA, { SPOOL_DIR: spoolDir });
  const second = startTestGateway(dbA, { SPOOL_DIR: spoolDir });
  try {
    expect(await recordedDatabase(spoolDir)).toMatchObject({ database: dbA.name });
    await expect(second).rejects.toThrow(/is in use by process/);
  } finally {
    await second.then(
      (gateway) => gateway.stop(),
      () => undefined,
    );
    await onA.stop();
  }
  const onB = await startTestGateway(dbB, { SPOOL_DIR: spoolDir });
  try {
    expect(await recordedDatabase(spoolDir)).toMatchObject({ database: dbB.name });
  } finally {
    await onB.stop();
  }
});

it('falls back to the database name for a role that may not run pg_control_system()', async () => {
  const role = `mg_spool_${randomId()}`;
  await dbB.pool.query(`CREATE ROLE ${escapeIdentifier(role)} LOGIN`);
  // pg_proc is per database: this grant goes for dbB only.
  await dbB.pool.query('REVOKE EXECUTE ON FUNCTION pg_control_system() FROM PUBLIC');
  const url = new URL(dbB.url);
  url.username = role;
  const restricted = createTestPool({ connectionString: url.toString(), max: 1 });
  try {
    await bindSpoolToDatabase(spoolDir, restricted, testLogger);
    expect(await recordedDatabase(spoolDir)).toEqual({ systemIdentifier: null, database: dbB.name });
    // The same database seen by a role that reads the identifier is still the same database...
    await writeFile(path.join(spoolDir, 'rows.spool'), '1\trow\n');
    await bindSpoolToDatabase(spoolDir, dbB.pool, testLogger);
    // ...and another one is still refused.
    await expect(bindSpoolToDatabase(spoolDir, dbA.pool, testLogger)).rejects.toThrow(
      new RegExp(`holds rows for database "${dbB.name}", but this gateway is connected to database "${dbA.name}"`),
    );
  } finally {
    await restricted.end();
    await dbB.pool.query('GRANT EXECUTE ON FUNCTION pg_control_system() TO PUBLIC');
    await dbB.pool.query(`DROP ROLE ${escapeIdentifier(role)}`);
  }
});
