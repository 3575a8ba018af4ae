import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { until } from '../helpers/until';
import { createTestDatabase, type TestDatabase } from '../helpers/database';
import { postNdjson } from '../helpers/gateway';
import { startGatewayProcess } from '../helpers/process';
import { numberedMetric } from '../helpers/numbered-metrics';

// The real process: SIGTERM stops intake, flushes every buffered row, closes and exits 0.

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
  await db.pool.query(`INSERT INTO users (id, name) VALUES (1, 'one')`);
});

afterAll(async () => {
  await db?.drop();
});

it('flushes every buffered row on SIGTERM and exits 0', async () => {
  // Rows stay buffered: batches are only cut when full or after a minute.
  const gateway = await startGatewayProcess({
    DATABASE_URL: db.url,
    SPOOL: 'false',
    BATCH_MAX_WAIT_MS: '60000',
    BATCH_MAX_ROWS: '100000',
  });
  const rows = 3000;
  const body = Array.from({ length: rows }, (_, i) =>
    JSON.stringify({
      user_id: 1,
      talked_time: i,
      microphone_used: true,
      speaker_used: true,
      time_recorded: 1_700_000_000_000 + i,
    }),
  ).join('\n');
  const response = await postNdjson(`${gateway.url}/v1/metrics/bulk?wait=false`, body);
  expect(response).toMatchObject({ status: 202, body: { accepted: rows } });
  const { rows: before } = await db.pool.query('SELECT count(*)::int AS n FROM user_metrics');
  expect(before[0].n).toBe(0);

  gateway.child.kill('SIGTERM');
  expect(await gateway.exited).toBe(0);
  const { rows: after } = await db.pool.query(
    'SELECT count(*)::int AS n, sum(talked_time)::bigint AS total FROM user_metrics',
  );
  expect(after[0]).toEqual({ n: rows, total: String((rows * (rows - 1)) / 2) });
  expect(gateway.output()).toContain('"lostRows":0');
});

const metric = (i: number) => numberedMetric(i);

async function count(from: number, to: number): Promise<number> {
  const { rows } = await db.pool.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM user_metrics WHERE talked_time >= $1 AND talked_time < $2',
    [from, to],
  );
  return rows[0]?.n ?? -1;
}

it('exits with 1 at SHUTDOWN_TIMEOUT_MS while a lock holds every write, keeps the spooled rows and counts the lost ones', async () => {
  const spoolDir = await mkdtemp(path.join(os.tmpdir(), 'mg-shutdown-'));
  const env = { DATABASE_URL: db.url, SPOOL_DIR: spoolDir, SHUTDOWN_TIMEOUT_MS: '1500', ACK_TIMEOUT_MS: '60000' };
  const gateway = await startGatewayProcess(env);
  const locker = await db.pool.connect();
  try {
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE user_metrics IN EXCLUSIVE MODE');
    const spooled = Array.from({ length: 200 }, (_, i) => JSON.stringify(metric(10_000 + i))).join('\n');
    expect(await postNdjson(`${gateway.url}/v1/metrics/bulk?wait=false`, spooled)).toMatchObject({
      status: 202,
      body: { accepted: 200 },
    });
    // wait=true rows are only in memory: their request is still waiting when SIGTERM comes.
    const waiting = postNdjson(
      `${gateway.url}/v1/metrics/bulk`,
      Array.from({ length: 200 }, (_, i) => JSON.stringify(metric(20_000 + i))).join('\n'),
    ).catch((error: unknown) => error);
    await new Promise((resolve) => setTimeout(resolve, 300));

    const signalled = Date.now();
    gateway.child.kill('SIGTERM');
    expect(await gateway.exited).toBe(1);
    // The deadline plus a second of grace for closing up, plus a margin for a busy machine.
    expect(Date.now() - signalled).toBeLessThan(1500 + 1000 + 2500);
    await waiting;
    const stopped = gateway
      .output()
      .split('\n')
      .find((line) => line.includes('stopped at the shutdown deadline'));
    expect(JSON.parse(stopped as string)).toMatchObject({ flushed: false, lostRows: 200, spooledRows: 200 });
  } finally {
    await locker.query('COMMIT');
    locker.release();
  }
  // The next start replays the spool: the 200 acknowledged rows are stored exactly once.
  const restarted = await startGatewayProcess(env);
  try {
    await until(async () => (await count(10_000, 10_200)) === 200, 'the rows stored', 20_000);
    expect(await count(20_000, 20_200)).toBeLessThanOrEqual(200);
  } finally {
    restarted.child.kill('SIGTERM');
    expect(await restarted.exited).toBe(0);
    await rm(spoolDir, { recursive: true, force: true });
  }
  expect(await count(10_000, 10_200)).toBe(200);
});

it('writes the wait=false rows still waiting in the spool on SIGTERM, leaving no spool file, and exits 0', async () => {
  const spoolDir = await mkdtemp(path.join(os.tmpdir(), 'mg-shutdown-backlog-'));
  // A buffer of 100 rows and writes held by a lock: most of the 1000 rows wait on disk only.
  const gateway = await startGatewayProcess({
    DATABASE_URL: db.url,
    SPOOL_DIR: spoolDir,
    BUFFER_MAX_ROWS: '100',
    BATCH_MAX_ROWS: '50',
  });
  const locker = await db.pool.connect();
  try {
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE user_metrics IN EXCLUSIVE MODE');
    const body = Array.from({ length: 1000 }, (_, i) => JSON.stringify(metric(30_000 + i))).join('\n');
    expect(await postNdjson(`${gateway.url}/v1/metrics/bulk?wait=false`, body)).toMatchObject({
      status: 202,
      body: { accepted: 1000 },
    });
  } finally {
    await locker.query('COMMIT');
    locker.release();
  }
  gateway.child.kill('SIGTERM');
  expect(await gateway.exited).toBe(0);
  expect(await count(30_000, 31_000)).toBe(1000);
  expect((await readdir(spoolDir)).filter((name) => name.endsWith('.spool'))).toEqual([]);
  await rm(spoolDir, { recursive: true, force: true });
});

it('takes no new requests after SIGTERM', async () => {
  const gateway = await startGatewayProcess({ DATABASE_URL: db.url, SPOOL: 'false', BATCH_MAX_WAIT_MS: '60000' });
  const url = gateway.url;
  gateway.child.kill('SIGTERM');
  expect(await gateway.exited).toBe(0);
  await expect(fetch(`${url}/healthz`)).rejects.toThrow();
});

it('stops with a message naming the variable when the configuration is bad', async () => {
  await expect(startGatewayProcess({ DATABASE_URL: db.url, BATCH_MAX_ROWS: 'lots' })).rejects.toThrow(
    /exited with 1[\s\S]*BATCH_MAX_ROWS/,
  );
});
