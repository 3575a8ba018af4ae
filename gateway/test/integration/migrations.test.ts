import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { listMigrationNames, migrate } from '../../src/db/migrate';
import { MIGRATIONS_DIR, PROJECT_ROOT } from '../../src/paths';
import { createTestDatabase, createTestPool, rowsByPartition, type TestDatabase } from '../helpers/database';
import { postJson, postNdjson, startTestGateway } from '../helpers/gateway';
import { testLogger } from '../helpers/logger';
import { metric } from '../helpers/metric';
import { startGatewayProcess } from '../helpers/process';

// The migration runner on its edges: a migration that fails, a gateway told not to migrate, an
// upgrade of a database that already holds data, and `npm run migrate` itself.

const MIGRATE_JS = path.join(PROJECT_ROOT, 'dist', 'gateway', 'src', 'cli', 'migrate.js');
const execFileAsync = promisify(execFile);

let all: string[];
const databases: TestDatabase[] = [];
const dirs: string[] = [];

/** An empty database of its own, dropped after the file. */
async function emptyDatabase(): Promise<TestDatabase> {
  const db = await createTestDatabase({ migrated: false });
  databases.push(db);
  return db;
}

/** A migrations folder with copies of the named real migrations, plus `extra` files (name -> SQL). */
async function migrationsDir(names: readonly string[], extra: Record<string, string> = {}): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'mg-migrations-'));
  dirs.push(dir);
  for (const name of names) await copyFile(path.join(MIGRATIONS_DIR, `${name}.sql`), path.join(dir, `${name}.sql`));
  for (const [name, sql] of Object.entries(extra)) await writeFile(path.join(dir, `${name}.sql`), sql);
  return dir;
}

async function appliedNames(db: TestDatabase): Promise<string[]> {
  const { rows } = await db.pool.query<{ name: string }>('SELECT name FROM pgmigrations ORDER BY run_on, id');
  return rows.map((row) => row.name);
}

beforeAll(async () => {
  all = await listMigrationNames();
  expect(all.length).toBeGreaterThan(1);
});

afterAll(async () => {
  for (const db of databases) await db.drop();
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

describe('a migration that fails', () => {
  it('rolls back, releases the advisory lock, and lets the next run proceed', async () => {
    const db = await emptyDatabase();
    const broken = await migrationsDir([all[0] as string], {
      [`${all[1]}`]: '-- Up Migration\nCREATE TABLE half_done (id integer);\nSELECT 1 / 0;\n',
    });
    await expect(migrate(db.pool, testLogger, broken)).rejects.toThrow(/division by zero/);
    expect(await appliedNames(db)).toEqual([all[0]]);
    const { rows } = await db.pool.query(`SELECT to_regclass('half_done') AS t`);
    expect(rows[0].t).toBeNull();
    // No session holds an advisory lock on this database any more, not even an idle one in the pool.
    const locks = await db.pool.query(
      `SELECT count(*)::int AS n FROM pg_locks
        WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
    );
    expect(locks.rows[0].n).toBe(0);

    // Another process (a pool of its own) takes the lock and applies the rest. Were the lock still
    // held, pg_advisory_lock would wait: lock_timeout turns that into an error instead of a hang.
    const second = createTestPool({ connectionString: db.url, max: 1, options: '-c lock_timeout=10000' });
    try {
      expect(await migrate(second, testLogger)).toEqual(all.slice(1));
    } finally {
      await second.end();
    }
    expect(await appliedNames(db)).toEqual(all);
  });
});

describe('MIGRATE_ON_START=false', () => {
  it('refuses to start on a database without the migrations, naming them', async () => {
    const db = await emptyDatabase();
    const start = startGatewayProcess({ DATABASE_URL: db.url, MIGRATE_ON_START: 'false', SPOOL: 'false' });
    const failure = await start.then(
      () => new Error('the gateway started'),
      (error: Error) => error,
    );
    expect(failure.message).toMatch(/exited with 1/);
    expect(failure.message).toContain(`migrations not applied: ${all.join(', ')}`);
    expect(failure.message).toMatch(/npm run migrate/);
    expect(await db.pool.query(`SELECT to_regclass('pgmigrations') AS t`)).toMatchObject({ rows: [{ t: null }] });
  });

  it('names only the migrations that are missing', async () => {
    const db = await emptyDatabase();
    await migrate(db.pool, testLogger, await migrationsDir([all[0] as string]));
    await expect(startTestGateway(db, { MIGRATE_ON_START: 'false' })).rejects.toThrow(
      `migrations not applied: ${all.slice(1).join(', ')}.`,
    );
  });

  it('starts on a database that has them all', async () => {
    const db = await emptyDatabase();
    await migrate(db.pool, testLogger);
    const gateway = await startTestGateway(db, { MIGRATE_ON_START: 'false' });
    try {
      expect((await fetch(`${gateway.url}/readyz`)).status).toBe(200);
    } finally {
      await gateway.stop();
    }
  });
});

describe('an upgrade from the first migration', () => {
  it('keeps the rows already stored, and the later constraints and triggers hold for them', async () => {
    const db = await emptyDatabase();
    await migrate(db.pool, testLogger, await migrationsDir([all[0] as string]));
    await db.pool.query(`INSERT INTO users (id, name) VALUES (1, 'one'), (2, 'two'), (3, 'three')`);
    await db.pool.query(`INSERT INTO devices (id) VALUES ('phone'), ('desk')`);
    await db.pool.query(`
      INSERT INTO user_metrics (user_id, device_id, talked_time, microphone_used, speaker_used, voice_sentiment, time_recorded)
      SELECT 1 + i % 3, (ARRAY['phone', 'desk', NULL])[1 + i % 3], i, i % 2 = 0, true, i / 1000.0,
             '2025-01-01T00:00:00Z'::timestamptz + i * interval '1 minute'
        FROM generate_series(1, 300) AS i`);
    await db.pool.query(
      `INSERT INTO rejected_metrics (received_at, payload, reason) VALUES (now(), '{"user_id": 9}', 'gone')`,
    );
    const snapshot = async () =>
      (await db.pool.query('SELECT * FROM user_metrics ORDER BY id')).rows.map((row) => JSON.stringify(row));
    const before = await snapshot();
    expect(before).toHaveLength(300);

    expect(await migrate(db.pool, testLogger)).toEqual(all.slice(1));
    expect(await snapshot()).toEqual(before);
    expect((await db.pool.query('SELECT count(*)::int AS n FROM rejected_metrics')).rows[0].n).toBe(1);

    // The statement-level reference checks (0002) refuse a row of an unknown user, cascade a
    // deletion, detach a deleted device, and refuse to change a referenced key.
    await expect(
      db.pool.query(
        `INSERT INTO user_metrics (user_id, talked_time, microphone_used, speaker_used, time_recorded)
         VALUES (99, 1, true, true, now())`,
      ),
    ).rejects.toMatchObject({ code: '23503' });
    await db.pool.query('DELETE FROM users WHERE id = 3');
    await db.pool.query(`DELETE FROM devices WHERE id = 'desk'`);
    const after = await db.pool.query<{ user_id: number; device_id: string | null; n: number }>(
      'SELECT user_id, device_id, count(*)::int AS n FROM user_metrics GROUP BY 1, 2 ORDER BY 1, 2',
    );
    expect(after.rows).toEqual([
      { user_id: 1, device_id: 'phone', n: 100 },
      { user_id: 2, device_id: null, n: 100 },
    ]);
    await expect(db.pool.query('UPDATE users SET id = 10 WHERE id = 1')).rejects.toMatchObject({ code: '23503' });

    // And a gateway writes into the upgraded tables (spool_commits and api_keys came with the upgrade).
    const gateway = await startTestGateway(db, { MIGRATE_ON_START: 'false' });
    try {
      const sent = metric({ user_id: 2, talked_time: 4242, time_recorded: 0 });
      expect(await postJson(`${gateway.url}/v1/metrics`, sent)).toMatchObject({ status: 201 });
      expect(await postJson(`${gateway.url}/v1/metrics?wait=false`, sent)).toMatchObject({ status: 202 });
      await gateway.batcher.drain();
    } finally {
      await gateway.stop();
    }
    const stored = await db.pool.query('SELECT count(*)::int AS n FROM user_metrics WHERE talked_time = 4242');
    expect(stored.rows[0].n).toBe(2);
    expect((await db.pool.query('SELECT count(*)::int AS n FROM spool_commits')).rows[0].n).toBe(1);
  });
});

describe('partitioning a populated table (0007)', () => {
  it('turns a 0004-era table into a partition with every row, and keeps ids and retries right', async () => {
    const db = await emptyDatabase();
    const upTo0004 = all.filter((name) => name < '0005');
    await migrate(db.pool, testLogger, await migrationsDir(upTo0004));
    await db.pool.query(`INSERT INTO users (id, name) VALUES (1, 'one'), (2, 'two')`);
    await db.pool.query(`INSERT INTO devices (id) VALUES ('phone')`);
    await db.pool.query(`
      INSERT INTO user_metrics (user_id, device_id, talked_time, microphone_used, speaker_used, voice_sentiment,
                                time_recorded, event_id)
      SELECT 1 + i % 2, CASE WHEN i % 3 = 0 THEN 'phone' END, i, i % 2 = 0, true, i / 1000.0,
             '2025-03-01T00:00:00Z'::timestamptz + i * interval '1 hour',
             CASE WHEN i % 4 <> 0 THEN md5(i::text)::uuid END
        FROM generate_series(1, 500) AS i`);
    const snapshot = async () =>
      (await db.pool.query('SELECT * FROM user_metrics ORDER BY id')).rows.map((row) => JSON.stringify(row));
    const before = await snapshot();
    expect(before).toHaveLength(500);

    await migrate(db.pool, testLogger);
    expect(await snapshot()).toEqual(before);
    const partitions = await db.pool.query(
      `SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound
         FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'user_metrics'::regclass ORDER BY 1`,
    );
    // The newest row is 2025-03-21T20:00Z: the old table covers everything up to the end of that day.
    expect(partitions.rows).toEqual([
      { relname: 'user_metrics_before_0007', bound: "FOR VALUES FROM (MINVALUE) TO ('2025-03-22 00:00:00+00')" },
      { relname: 'user_metrics_default', bound: 'DEFAULT' },
    ]);
    expect(await rowsByPartition(db.pool)).toEqual({ user_metrics_before_0007: 500 });

    // A retry of a stored event is stored once; ids go on after the old ones.
    const gateway = await startTestGateway(db, { MIGRATE_ON_START: 'false' });
    try {
      const old = { time_recorded: '2025-03-01T01:00:00Z', event_id: md5Uuid(1), user_id: 2, talked_time: 1 };
      const fresh = { time_recorded: '2025-03-01T01:00:00Z', event_id: md5Uuid(9999), user_id: 2, talked_time: 7 };
      const body = [metric(old), metric(fresh), metric(fresh)].map((m) => JSON.stringify(m)).join('\n');
      const answer = await postNdjson(`${gateway.url}/v1/metrics/bulk`, body);
      expect(answer).toMatchObject({ status: 200, body: { accepted: 3, rejected: 0 } });
    } finally {
      await gateway.stop();
    }
    // (The batch's first COPY met the repeat and was rolled back: it used up a few ids.)
    const { rows: added } = await db.pool.query(`SELECT talked_time FROM user_metrics WHERE id > 500 ORDER BY id`);
    expect(added).toEqual([{ talked_time: 7 }]);
    expect(await db.pool.query('SELECT count(*)::int AS n FROM user_metrics')).toMatchObject({ rows: [{ n: 501 }] });
  });
});

/** The uuid that PostgreSQL's md5(n::text)::uuid makes. */
function md5Uuid(n: number): string {
  const hex = createHash('md5').update(String(n)).digest('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

describe('npm run migrate', () => {
  const runMigrate = (db: TestDatabase) =>
    execFileAsync(process.execPath, [MIGRATE_JS], {
      env: { ...process.env, DATABASE_URL: db.url, LOG_LEVEL: 'warn' },
      timeout: 30_000,
    });

  it('applies every migration to a fresh database, then finds nothing to do', async () => {
    const db = await emptyDatabase();
    const first = await runMigrate(db);
    expect(first.stdout).toBe(`migrations applied: ${all.join(', ')}\n`);
    expect(await appliedNames(db)).toEqual(all);
    const again = await runMigrate(db);
    expect(again.stdout).toBe('migrations: up to date\n');
  });

  it('exits 1 with the reason when the database cannot be reached', async () => {
    const db = await emptyDatabase();
    const url = new URL(db.url);
    url.pathname = '/mg_no_such_database';
    await expect(
      execFileAsync(process.execPath, [MIGRATE_JS], {
        env: { ...process.env, DATABASE_URL: url.toString(), LOG_LEVEL: 'warn' },
        timeout: 30_000,
      }),
    ).rejects.toMatchObject({ code: 1, stderr: expect.stringMatching(/migrate failed: .*mg_no_such_database/) });
  });
});
