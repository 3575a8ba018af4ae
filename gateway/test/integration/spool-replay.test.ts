import { appendFile, mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createMetricsWriter } from '../../src/db/metrics-writer';
import { Batcher } from '../../src/ingest/batcher';
import { encodeMetricRow } from '../../src/ingest/copy-encode';
import { replaySpool } from '../../src/spool/replay';
import { Spool, segmentFileName } from '../../src/spool/spool';
import { createTestDatabase, type TestDatabase } from '../helpers/database';
import { postJson, startTestGateway } from '../helpers/gateway';
import { testLogger } from '../helpers/logger';
import { metric } from '../helpers/metric';

// What a crashed gateway left in its spool, replayed into the database: rows whose commit is recorded
// are skipped, the rest stored once; damaged lines are reported, never stored or fatal.

let db: TestDatabase;
let dir: string;

const row = (n: number): string =>
  encodeMetricRow(
    { user_id: 1, talked_time: n, microphone_used: true, speaker_used: false, time_recorded: 0 },
    '2026-01-01T00:00:00Z',
    '2026-01-02T00:00:00.000Z',
  );

beforeAll(async () => {
  db = await createTestDatabase();
  await db.pool.query(`INSERT INTO users (id, name) VALUES (1, 'one')`);
});

beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'mg-replay-'));
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

afterAll(async () => {
  await db?.drop();
});

it('stores the uncommitted rows once, skips committed ones, damaged and torn lines', async () => {
  const spool = await Spool.open({ dir, segmentBytes: 600, logger: testLogger }); // several segments
  for (let n = 1; n <= 10; n++) await spool.append([row(n)]);
  await spool.close();
  // Rows 3..5 were committed before the crash, in the transaction that stored them.
  await db.pool.query(`INSERT INTO user_metrics (user_id, talked_time, microphone_used, speaker_used, time_recorded)
                       SELECT 1, n, true, false, '2026-01-01T00:00:00Z' FROM generate_series(3, 5) n`);
  await db.pool.query('INSERT INTO spool_commits (spool_id, first_seq, last_seq) VALUES ($1, 3, 5)', [spool.id]);
  const files = (await readdir(dir)).filter((name) => name.endsWith('.spool')).sort();
  expect(files.length).toBeGreaterThan(1);
  const last = path.join(dir, files[files.length - 1] as string);
  await appendFile(last, `not-a-number\t${row(99)}`); // damaged
  await appendFile(last, `11\t1\t\\N\t1`); // torn: no newline

  const batcher = new Batcher({
    batchMaxRows: 4,
    batchMaxWaitMs: 1,
    bufferMaxRows: 100,
    flushConcurrency: 2,
    writer: createMetricsWriter(db.pool),
    logger: testLogger,
  });
  const result = await replaySpool(dir, db.pool, batcher, testLogger);

  expect(result).toEqual({ files: files.length, replayed: 7, alreadyCommitted: 3, malformed: 1 });
  const { rows } = await db.pool.query<{ t: number }>('SELECT talked_time AS t FROM user_metrics ORDER BY 1');
  expect(rows.map((r) => r.t)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  expect((await readdir(dir)).filter((name) => name.endsWith('.spool'))).toEqual([]);
  const commits = await db.pool.query('SELECT count(*)::int AS n FROM spool_commits');
  expect(commits.rows[0].n).toBe(0);
});

it('answers 503, not 202, when the spool cannot be written', async () => {
  const gateway = await startTestGateway(db, { SPOOL_DIR: dir });
  try {
    await rm(dir, { recursive: true, force: true }); // the disk is gone from under it
    const sent = metric({ talked_time: 77, time_recorded: 0 });
    const queued = await postJson(`${gateway.url}/v1/metrics?wait=false`, sent);
    expect(queued).toMatchObject({ status: 503, body: { error: 'unavailable' } });
    expect(queued.headers.get('retry-after')).toBe('5');
    // wait=true needs no spool: its answer already means committed.
    expect((await postJson(`${gateway.url}/v1/metrics`, metric({ talked_time: 78, time_recorded: 0 }))).status).toBe(
      201,
    );
  } finally {
    await gateway.stop();
  }
});

it('records damaged rows with a valid sequence number in rejected_metrics instead of dropping them', async () => {
  const spoolId = '0f8fad5b-d9cb-469f-a165-70867728950e';
  const file = path.join(dir, segmentFileName(spoolId, 1));
  // Row 1 is whole; row 2's received_at is no timestamp, so even its rejection record is refused;
  // row 3 holds a NUL, which neither COPY nor jsonb takes.
  const badTime = row(2).replace('2026-01-02T00:00:00.000Z', 'not-a-time');
  const nul = row(3).replace('\t3\t', '\t3\u0000\t');
  await appendFile(file, `1\t${row(1)}2\t${badTime}3\t${nul}`);
  const batcher = new Batcher({
    batchMaxRows: 10,
    batchMaxWaitMs: 1,
    bufferMaxRows: 100,
    flushConcurrency: 1,
    writer: createMetricsWriter(db.pool),
    logger: testLogger,
  });
  const before = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM rejected_metrics');
  const result = await replaySpool(dir, db.pool, batcher, testLogger);
  expect(result).toMatchObject({ replayed: 3, malformed: 0 });
  const { rows } = await db.pool.query<{ raw: string | null; reason: string }>(
    `SELECT payload->>'raw_row' AS raw, reason FROM rejected_metrics ORDER BY id OFFSET $1`,
    [before.rows[0]?.n],
  );
  expect(rows).toHaveLength(2);
  expect(rows.every((r) => r.reason.length > 0)).toBe(true);
  expect(rows.filter((r) => r.raw?.includes('not-a-time'))).toHaveLength(1);
  const stored = await db.pool.query('SELECT 1 FROM user_metrics WHERE talked_time = 1');
  expect(stored.rowCount).toBeGreaterThanOrEqual(1);
});
