import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createMetricsWriter } from '../../src/db/metrics-writer';
import { Batcher } from '../../src/ingest/batcher';
import { encodeMetricRow } from '../../src/ingest/copy-encode';
import type { Metric } from '../../src/ingest/schema';
import { replaySpool } from '../../src/spool/replay';
import { segmentFileName } from '../../src/spool/spool';
import { createTestDatabase, type TestDatabase } from '../helpers/database';
import { testLogger } from '../helpers/logger';
import { MAIN, startGatewayProcess } from '../helpers/process';
import { until } from '../helpers/until';

// What a spool left by a crashed gateway meets at the next start: PostgreSQL down, a user deleted
// meanwhile, rows already stored under their event_id, a second crash in the middle of the replay,
// and more rows than the buffer holds. Whatever happens, every spooled row ends stored exactly once
// (or in rejected_metrics), and the spool is never thrown away before its rows are safe.

let db: TestDatabase;
let dir: string;

const metricRow = (n: number, extra: Partial<Metric> = {}): string =>
  encodeMetricRow(
    { user_id: 1, talked_time: n, microphone_used: true, speaker_used: false, time_recorded: 0, ...extra },
    '2026-01-01T00:00:00Z',
    '2026-01-02T00:00:00.000Z',
  );

/** A spool segment file as a crashed gateway leaves it: rows 1..n of a spool id of its own. */
async function leaveSpool(rows: readonly string[]): Promise<string> {
  const spoolId = randomUUID();
  await writeFile(path.join(dir, segmentFileName(spoolId, 1)), rows.map((row, i) => `${i + 1}\t${row}`).join(''));
  return spoolId;
}

async function talkedTimes(): Promise<number[]> {
  const { rows } = await db.pool.query<{ t: number }>('SELECT talked_time AS t FROM user_metrics ORDER BY 1');
  return rows.map((row) => row.t);
}

function newBatcher(bufferMaxRows = 100): Batcher {
  return new Batcher({
    batchMaxRows: Math.min(50, bufferMaxRows),
    batchMaxWaitMs: 1,
    bufferMaxRows,
    flushConcurrency: 2,
    writer: createMetricsWriter(db.pool),
    logger: testLogger,
  });
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

beforeEach(async () => {
  db = await createTestDatabase();
  await db.pool.query(`INSERT INTO users (id, name) VALUES (1, 'one'), (2, 'two')`);
  dir = await mkdtemp(path.join(os.tmpdir(), 'mg-replay-faults-'));
});

afterEach(async () => {
  await db?.drop();
  await rm(dir, { recursive: true, force: true });
});

it('replays more rows than the buffer holds, without a timer overflow or busy wait', async () => {
  await leaveSpool(range(1, 500).map((n) => metricRow(n)));
  const warnings: Error[] = [];
  const onWarning = (warning: Error): void => void warnings.push(warning);
  process.on('warning', onWarning);
  try {
    const result = await replaySpool(dir, db.pool, newBatcher(20), testLogger);
    expect(result).toMatchObject({ replayed: 500, alreadyCommitted: 0, malformed: 0 });
  } finally {
    process.off('warning', onWarning);
  }
  expect(warnings.map((warning) => warning.name)).not.toContain('TimeoutOverflowWarning');
  expect(await talkedTimes()).toEqual(range(1, 500));
  expect(await readdir(dir)).toEqual([]);
});

it('sends the rows of a user deleted before the replay to rejected_metrics, and stores the rest', async () => {
  await leaveSpool([metricRow(1), metricRow(2, { user_id: 2 }), metricRow(3)]);
  await db.pool.query('DELETE FROM users WHERE id = 2');
  await replaySpool(dir, db.pool, newBatcher(), testLogger);
  expect(await talkedTimes()).toEqual([1, 3]);
  const { rows } = await db.pool.query<{ user: string; reason: string }>(
    `SELECT payload->>'user_id' AS user, reason FROM rejected_metrics`,
  );
  expect(rows).toEqual([{ user: '2', reason: expect.stringMatching(/user/) }]);
});

it('stores a spooled row with an event_id once, also when it was stored before the crash', async () => {
  const eventId = randomUUID();
  await db.pool.query(
    `INSERT INTO user_metrics (user_id, talked_time, microphone_used, speaker_used, time_recorded, event_id)
     VALUES (1, 7, true, false, '2026-01-01T00:00:00Z', $1)`,
    [eventId],
  );
  // The commit record was lost with the crash (or another gateway stored the same event).
  await leaveSpool([metricRow(7, { event_id: eventId }), metricRow(8, { event_id: randomUUID() })]);
  await replaySpool(dir, db.pool, newBatcher(), testLogger);
  expect(await talkedTimes()).toEqual([7, 8]);
});

it('refuses to start while PostgreSQL is down, and keeps the spool for the start that succeeds', async () => {
  await leaveSpool(range(1, 50).map((n) => metricRow(n)));
  const before = await readdir(dir);
  await expect(
    startGatewayProcess({ DATABASE_URL: 'postgres://postgres@127.0.0.1:1/nowhere', SPOOL_DIR: dir }),
  ).rejects.toThrow(/exited with 1/);
  expect(await readdir(dir)).toEqual(expect.arrayContaining(before));
  const gateway = await startGatewayProcess({ DATABASE_URL: db.url, SPOOL_DIR: dir });
  try {
    expect(await talkedTimes()).toEqual(range(1, 50));
  } finally {
    gateway.child.kill('SIGTERM');
    expect(await gateway.exited).toBe(0);
  }
});

it('stores every row exactly once when the gateway is killed in the middle of a replay', async () => {
  const total = 30_000;
  await leaveSpool(range(1, total).map((n) => metricRow(n)));
  // Small batches make the replay take long enough to be interrupted.
  const env = { ...process.env, DATABASE_URL: db.url, SPOOL_DIR: dir, PORT: '0', BATCH_MAX_ROWS: '100' };
  const child = spawn(process.execPath, [MAIN], { env, stdio: 'ignore' });
  const exited = new Promise((resolve) => child.on('exit', resolve));
  try {
    let stored = 0;
    const replayBegun = async (): Promise<boolean> => (stored = (await talkedTimes()).length) > 0;
    await until(replayBegun, 'the replay stored a row', 60_000);
    expect(stored).toBeGreaterThan(0);
    expect(stored).toBeLessThan(total);
  } finally {
    child.kill('SIGKILL');
    await exited;
  }
  const gateway = await startGatewayProcess({ DATABASE_URL: db.url, SPOOL_DIR: dir });
  try {
    const { rows } = await db.pool.query<{ n: number; distinct: number }>(
      'SELECT count(*)::int AS n, count(DISTINCT talked_time)::int AS distinct FROM user_metrics',
    );
    expect(rows[0]).toEqual({ n: total, distinct: total });
  } finally {
    gateway.child.kill('SIGTERM');
    expect(await gateway.exited).toBe(0);
  }
}, 120_000);
