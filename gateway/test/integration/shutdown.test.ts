import { createTestDatabase, type TestDatabase } from '../helpers/database';
import { postNdjson } from '../helpers/gateway';
import { startGatewayProcess } from '../helpers/process';

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

it('stops with a message naming the variable when the configuration is bad', async () => {
  await expect(startGatewayProcess({ DATABASE_URL: db.url, BATCH_MAX_ROWS: 'lots' })).rejects.toThrow(
    /exited with 1[\s\S]*BATCH_MAX_ROWS/,
  );
});
