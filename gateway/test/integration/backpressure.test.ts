import type { PoolClient } from 'pg';
import { createTestDatabase, type TestDatabase } from '../helpers/database';
import { postJson, postNdjson, startTestGateway } from '../helpers/gateway';

// A slow database must slow the clients, not grow the gateway's memory: the buffer holds at most
// BUFFER_MAX_ROWS, single POSTs beyond that get 429, bulk uploads wait, and a request that cannot be
// committed in time gets 503 instead of a false success. The database is made slow by holding a lock
// that every COPY into user_metrics waits for.

let db: TestDatabase;
let gateway: Awaited<ReturnType<typeof startTestGateway>>;
const BUFFER = 1000;

const metric = (i: number) => ({
  user_id: 1,
  talked_time: i,
  microphone_used: true,
  speaker_used: false,
  time_recorded: 1_700_000_000_000 + i,
});

async function count(): Promise<number> {
  const { rows } = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM user_metrics');
  return rows[0]?.n ?? -1;
}

/** Holds a lock that blocks every write to user_metrics until the returned function is called. */
async function blockWrites(): Promise<() => Promise<void>> {
  const client: PoolClient = await db.pool.connect();
  await client.query('BEGIN');
  await client.query('LOCK TABLE user_metrics IN EXCLUSIVE MODE');
  return async () => {
    await client.query('COMMIT');
    client.release();
  };
}

beforeAll(async () => {
  db = await createTestDatabase();
  await db.pool.query(`INSERT INTO users (id, name) VALUES (1, 'one')`);
  gateway = await startTestGateway(db, {
    BUFFER_MAX_ROWS: String(BUFFER),
    BATCH_MAX_ROWS: '250',
    ACK_TIMEOUT_MS: '500',
    BULK_BACKPRESSURE_TIMEOUT_MS: '20000',
  });
});

afterAll(async () => {
  await gateway?.stop();
  await db?.drop();
});

it('answers 503 with Retry-After when a row cannot be committed in time, and stores it once the database is back', async () => {
  const release = await blockWrites();
  try {
    const response = await postJson(`${gateway.url}/v1/metrics`, metric(1));
    expect(response).toMatchObject({ status: 503, body: { error: 'unavailable' } });
    expect(Number(response.headers.get('retry-after'))).toBeGreaterThan(0);
  } finally {
    await release();
  }
  await gateway.batcher.drain();
  expect(await count()).toBe(1);
});

it('refuses single POSTs with 429 and Retry-After while the buffer is full, and takes them again after', async () => {
  const before = await count();
  const release = await blockWrites();
  try {
    const queued = await Promise.all(
      Array.from({ length: BUFFER }, (_, i) => postJson(`${gateway.url}/v1/metrics?wait=false`, metric(i))),
    );
    expect(queued.every((response) => response.status === 202)).toBe(true);
    expect(gateway.batcher.depth).toBe(BUFFER);
    const refused = await postJson(`${gateway.url}/v1/metrics?wait=false`, metric(BUFFER + 1));
    expect(refused).toMatchObject({ status: 429, body: { error: 'overloaded' } });
    expect(refused.headers.get('retry-after')).toBe('1');
  } finally {
    await release();
  }
  await gateway.batcher.drain();
  expect(await count()).toBe(before + BUFFER);
  expect((await postJson(`${gateway.url}/v1/metrics`, metric(0))).status).toBe(201);
});

it('slows a bulk upload while the buffer is full instead of holding more rows, then takes every line', async () => {
  const before = await count();
  const lines = 10_000;
  const body = Array.from({ length: lines }, (_, i) => JSON.stringify(metric(i))).join('\n');
  const release = await blockWrites();
  let most = 0;
  const sampler = setInterval(() => (most = Math.max(most, gateway.batcher.depth)), 2);
  const upload = postNdjson(`${gateway.url}/v1/metrics/bulk?wait=false`, body);
  try {
    // The upload cannot finish while writes are blocked: the buffer has room for a tenth of it.
    const early = await Promise.race([
      upload.then(() => 'finished'),
      new Promise((r) => setTimeout(() => r('waiting'), 700)),
    ]);
    expect(early).toBe('waiting');
    expect(gateway.batcher.depth).toBeLessThanOrEqual(BUFFER);
  } finally {
    await release();
  }
  const response = await upload;
  clearInterval(sampler);
  expect(response).toMatchObject({ status: 202, body: { accepted: lines, rejected: 0 } });
  expect(most).toBeLessThanOrEqual(BUFFER);
  await gateway.batcher.drain();
  expect(await count()).toBe(before + lines);
});
