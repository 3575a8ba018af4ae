import { createTestDatabase, type TestDatabase } from '../helpers/database';
import { postJson, postNdjson, startTestGateway } from '../helpers/gateway';
import { metric } from '../helpers/metric';

// Rows that pass every check at the door can still be refused by PostgreSQL at flush time, for
// example when their user is deleted in between. Those rows go to rejected_metrics; every other row
// of the same batch is stored.

let db: TestDatabase;
let gateway: Awaited<ReturnType<typeof startTestGateway>>;

async function count(sql: string, params: unknown[] = []): Promise<number> {
  const { rows } = await db.pool.query<{ n: string }>(sql, params);
  return Number(rows[0]?.n);
}

beforeAll(async () => {
  db = await createTestDatabase();
  await db.pool.query(`INSERT INTO users (id, name) SELECT g, 'user ' || g FROM generate_series(1, 20) g`);
  // A long wait makes concurrent requests share one batch.
  gateway = await startTestGateway(db, { BATCH_MAX_WAIT_MS: '150' });
});

/** Makes the gateway look these users up, so that its cache vouches for them at the door. */
async function warmCache(users: number[]): Promise<void> {
  await Promise.all(users.map((user) => postJson(`${gateway.url}/v1/metrics?wait=false`, metric({ user_id: user }))));
  await gateway.batcher.drain();
}

afterAll(async () => {
  await gateway?.stop();
  await db?.drop();
});

it('stores the good rows of a batch and records the row whose user was deleted meanwhile', async () => {
  await warmCache([11, 12, 13, 14, 15]);
  await db.pool.query('DELETE FROM users WHERE id = 13');
  const responses = await Promise.all(
    [11, 12, 13, 14, 15].map((user) =>
      postJson(
        `${gateway.url}/v1/metrics`,
        metric({ user_id: user, talked_time: 99, time_recorded: '2026-01-01T00:00:00Z' }),
      ),
    ),
  );
  expect(responses.map((r) => r.status)).toEqual([201, 201, 422, 201, 201]);
  expect(responses[2]?.body).toMatchObject({ error: 'unknown_reference' });
  expect(await count('SELECT count(*) AS n FROM user_metrics WHERE talked_time = 99')).toBe(4);
  const { rows } = await db.pool.query('SELECT payload, reason FROM rejected_metrics');
  expect(rows).toEqual([
    {
      payload: expect.objectContaining({ user_id: 13, talked_time: 99, time_recorded: '2026-01-01T00:00:00Z' }),
      reason: expect.stringContaining('foreign key'),
    },
  ]);
});

it('lands a queued (wait=false) row that PostgreSQL refuses in rejected_metrics', async () => {
  await warmCache([14]);
  await db.pool.query('DELETE FROM users WHERE id = 14');
  const response = await postJson(
    `${gateway.url}/v1/metrics?wait=false`,
    metric({ user_id: 14, device_id: null, talked_time: 7 }),
  );
  expect(response.status).toBe(202);
  await gateway.batcher.drain();
  expect(await count(`SELECT count(*) AS n FROM rejected_metrics WHERE payload->>'user_id' = '14'`)).toBe(1);
});

it('reports refused lines of a bulk upload by line number and stores the rest', async () => {
  await warmCache([15, 16, 17, 18, 19, 20]);
  await db.pool.query('DELETE FROM users WHERE id IN (16, 18)');
  const users = [15, 16, 17, 18, 19, 20];
  const body = users.map((user) => JSON.stringify(metric({ user_id: user, talked_time: 55 }))).join('\n');
  const response = await postNdjson(`${gateway.url}/v1/metrics/bulk`, body);
  expect(response.status).toBe(200);
  expect(response.body).toEqual({
    accepted: 4,
    rejected: 2,
    errors: [
      {
        line: 2,
        error: 'unknown_reference',
        details: [expect.objectContaining({ message: expect.stringContaining('foreign key') })],
      },
      { line: 4, error: 'unknown_reference', details: [expect.any(Object)] },
    ],
  });
  expect(await count('SELECT count(*) AS n FROM user_metrics WHERE talked_time = 55')).toBe(4);
});

it('accepts a re-registered user again after a refusal cleared the cache', async () => {
  await db.pool.query(`INSERT INTO users (id, name) VALUES (13, 'back again')`);
  expect((await postJson(`${gateway.url}/v1/metrics`, metric({ user_id: 13 }))).status).toBe(201);
  await db.pool.query('DELETE FROM users WHERE id = 12');
  // The refusals cleared the cache, so user 12 is looked up again and refused at the door.
  expect((await postJson(`${gateway.url}/v1/metrics`, metric({ user_id: 12 }))).body).toMatchObject({
    error: 'unknown_reference',
    details: [{ path: '/user_id', message: 'no user with id 12' }],
  });
});
