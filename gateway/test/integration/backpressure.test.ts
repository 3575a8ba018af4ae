import { gzipSync } from 'node:zlib';
import type { PoolClient } from 'pg';
import { until } from '../helpers/until';
import { createTestDatabase, type TestDatabase } from '../helpers/database';
import { postJson, postNdjson, startTestGateway } from '../helpers/gateway';
import { numberedMetric } from '../helpers/numbered-metrics';

// A slow database must slow the clients, not grow the gateway's memory: the buffer holds at most
// BUFFER_MAX_ROWS; wait=false rows beyond it wait in the spool on disk; wait=true requests beyond it
// get 429 or wait; a request that cannot be committed in time gets 503 instead of a false success, and
// a bulk upload stopped part-way says exactly what is stored. The database is made slow by holding a lock
// that every COPY into user_metrics waits for.

let db: TestDatabase;
let gateway: Awaited<ReturnType<typeof startTestGateway>>;
const BUFFER = 1000;

const metric = (i: number) => numberedMetric(i);

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

it('wait=false: a full buffer spills to the spool, with no 429, memory within the buffer, every row stored once', async () => {
  const before = await count();
  const rows = BUFFER + BUFFER / 2;
  const release = await blockWrites();
  let most = 0;
  const sampler = setInterval(() => (most = Math.max(most, gateway.batcher.depth)), 2);
  try {
    const answers = [];
    for (let i = 0; i < rows; i += 100) {
      answers.push(
        ...(await Promise.all(
          Array.from({ length: 100 }, (_, j) => postJson(`${gateway.url}/v1/metrics?wait=false`, metric(i + j))),
        )),
      );
    }
    expect(answers.filter((response) => response.status !== 202)).toEqual([]);
    expect(gateway.batcher.depth).toBeLessThanOrEqual(BUFFER);
  } finally {
    clearInterval(sampler);
    await release();
  }
  expect(most).toBeLessThanOrEqual(BUFFER);
  await until(async () => (await count()) === before + rows, 'the rows stored', 20_000);
}, 90_000);

it('wait=false without a spool (SPOOL=false): single POSTs get 429 with Retry-After while the buffer is full', async () => {
  const unspooled = await startTestGateway(db, {
    BUFFER_MAX_ROWS: String(BUFFER),
    BATCH_MAX_ROWS: '250',
    SPOOL: 'false',
  });
  try {
    const before = await count();
    const release = await blockWrites();
    try {
      const queued = await Promise.all(
        Array.from({ length: BUFFER }, (_, i) => postJson(`${unspooled.url}/v1/metrics?wait=false`, metric(i))),
      );
      expect(queued.every((response) => response.status === 202)).toBe(true);
      expect(unspooled.batcher.depth).toBe(BUFFER);
      const refused = await postJson(`${unspooled.url}/v1/metrics?wait=false`, metric(BUFFER + 1));
      expect(refused).toMatchObject({ status: 429, body: { error: 'overloaded' } });
      expect(refused.headers.get('retry-after')).toBe('1');
    } finally {
      await release();
    }
    await unspooled.batcher.drain();
    expect(await count()).toBe(before + BUFFER);
  } finally {
    await unspooled.stop();
  }
}, 90_000);

it('wait=false bulk: taken into the spool while writes are blocked, memory within the buffer, every line stored after', async () => {
  const before = await count();
  const lines = 10_000;
  const body = Array.from({ length: lines }, (_, i) => JSON.stringify(metric(i))).join('\n');
  const release = await blockWrites();
  let most = 0;
  const sampler = setInterval(() => (most = Math.max(most, gateway.batcher.depth)), 2);
  try {
    const response = await postNdjson(`${gateway.url}/v1/metrics/bulk?wait=false`, body);
    expect(response).toMatchObject({ status: 202, body: { accepted: lines, rejected: 0 } });
    expect(gateway.batcher.depth).toBeLessThanOrEqual(BUFFER);
  } finally {
    clearInterval(sampler);
    await release();
  }
  expect(most).toBeLessThanOrEqual(BUFFER);
  await until(async () => (await count()) === before + lines, 'the rows stored', 20_000);
});

/** Lines of one test, told apart by talked_time = offset + line (offsets above the 10,000 of the other tests). */
async function storedLines(offset: number, lines: number): Promise<number[]> {
  const { rows } = await db.pool.query<{ t: number }>(
    'SELECT talked_time AS t FROM user_metrics WHERE talked_time > $1 AND talked_time <= $2 ORDER BY 1',
    [offset, offset + lines],
  );
  return rows.map((row) => row.t - offset);
}

function numberedBody(offset: number, lines: number): string {
  return Array.from({ length: lines }, (_, i) => JSON.stringify(metric(offset + i + 1))).join('\n');
}

interface Progress {
  accepted: number;
  rejected: number;
  pending: number;
  resend_from_line: number;
}

/** What a partial answer promises: lines before resend_from_line stored, and nothing withdrawn stored. */
function expectStoredToMatch(progress: Progress, stored: number[], lines: number): void {
  const before = Array.from({ length: progress.resend_from_line - 1 }, (_, i) => i + 1);
  expect(stored.filter((line) => line < progress.resend_from_line)).toEqual(before);
  expect(progress.accepted).toBe(before.length);
  // From resend_from_line on, only rows that were still pending may have been stored after the answer.
  expect(stored.length - progress.accepted).toBeLessThanOrEqual(progress.pending);
  expect(stored.every((line) => line >= 1 && line <= lines)).toBe(true);
}

it('bulk wait=true: 429 after BULK_BACKPRESSURE_TIMEOUT_MS says what is stored and from which line to send again', async () => {
  const hurried = await startTestGateway(db, {
    BUFFER_MAX_ROWS: String(BUFFER),
    BATCH_MAX_ROWS: '250',
    ACK_TIMEOUT_MS: '1000',
    BULK_BACKPRESSURE_TIMEOUT_MS: '300',
  });
  const offset = 11_000;
  const lines = 5000;
  try {
    const release = await blockWrites();
    let response;
    try {
      response = await postNdjson<Progress>(`${hurried.url}/v1/metrics/bulk`, numberedBody(offset, lines));
    } finally {
      await release();
    }
    expect(response).toMatchObject({ status: 429, body: { error: 'overloaded', accepted: 0, rejected: 0 } });
    expect(Number(response.headers.get('retry-after'))).toBeGreaterThan(0);
    // The batches being written when the answer went out could not settle: they are pending.
    expect(response.body.pending).toBeGreaterThan(0);
    expect(response.body.resend_from_line).toBe(1);
    await hurried.batcher.drain();
    const stored = await storedLines(offset, lines);
    expectStoredToMatch(response.body, stored, lines);
    // The rows that waited in the buffer were taken back out: only the pending ones were written.
    expect(stored.length).toBe(response.body.pending);
  } finally {
    await hurried.stop();
  }
});

it('bulk wait=true: 503 when nothing commits within ACK_TIMEOUT_MS says how many rows are pending', async () => {
  const offset = 17_000;
  const lines = 600;
  const release = await blockWrites();
  let response;
  try {
    response = await postNdjson<Progress>(`${gateway.url}/v1/metrics/bulk`, numberedBody(offset, lines));
  } finally {
    await release();
  }
  expect(response).toMatchObject({ status: 503, body: { error: 'unavailable', accepted: 0, resend_from_line: 1 } });
  expect(response.body.pending).toBeGreaterThan(0);
  expect(response.body.pending).toBeLessThan(lines); // the rows not yet in a batch were taken back
  await gateway.batcher.drain();
  const stored = await storedLines(offset, lines);
  expectStoredToMatch(response.body, stored, lines);
  expect(stored.length).toBe(response.body.pending);
});

it('bulk wait=true: a body that breaks off answers with exactly the rows stored before it', async () => {
  const offset = 18_000;
  const lines = 2000;
  const good = gzipSync(Buffer.from(`${numberedBody(offset, lines)}\n`));
  // A second gzip member that is damaged: the first decodes whole, then the stream fails.
  const body = Buffer.concat([
    good,
    Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0xff, 0xff, 0xff, 0xff, 0x00, 0x03, 0xde, 0xad]),
  ]);
  const response = await postNdjson<Progress>(`${gateway.url}/v1/metrics/bulk`, body, { 'content-encoding': 'gzip' });
  expect(response).toMatchObject({ status: 400, body: { rejected: 0, pending: 0 } });
  // zlib may fail before it hands over the last lines of the good member: whatever it handed over is stored.
  expect(response.body.accepted).toBeGreaterThan(0);
  const stored = await storedLines(offset, lines);
  expectStoredToMatch(response.body, stored, lines);
  expect(stored).toHaveLength(response.body.accepted);
});

it('wait=false: 429 once the spool is full (SPOOL_MAX_BYTES), with exactly the spooled rows accepted', async () => {
  const small = await startTestGateway(db, {
    BUFFER_MAX_ROWS: String(BUFFER),
    BATCH_MAX_ROWS: '250',
    SPOOL_MAX_BYTES: String(256 * 1024),
    SPOOL_SEGMENT_BYTES: String(64 * 1024),
  });
  const offset = 21_000;
  const lines = 20_000;
  try {
    const release = await blockWrites();
    let response;
    try {
      response = await postNdjson<Progress>(`${small.url}/v1/metrics/bulk?wait=false`, numberedBody(offset, lines));
    } finally {
      await release();
    }
    expect(response).toMatchObject({ status: 429, body: { error: 'overloaded', pending: 0 } });
    expect(response.body.accepted).toBeGreaterThan(0);
    expect(response.body.accepted).toBeLessThan(lines);
    await until(
      async () => (await storedLines(offset, lines)).length === response.body.accepted,
      'the rows stored',
      20_000,
    );
    expectStoredToMatch(response.body, await storedLines(offset, lines), lines);
  } finally {
    await small.stop();
  }
});
