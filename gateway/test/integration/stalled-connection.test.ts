import { setTimeout as sleep } from 'node:timers/promises';
import { createTestDatabase, type TestDatabase } from '../helpers/database';
import { postJson, postNdjson, startTestGateway } from '../helpers/gateway';
import { metric } from '../helpers/metric';
import { StallingProxy, type StallPlan, type StallRecord } from '../helpers/stalling-proxy';

// A connection to PostgreSQL that stops answering without closing (a middlebox that lost its state,
// a partition): unlike a clean stop, no error ever arrives by itself. The gateway talks to PostgreSQL
// through a proxy that makes one connection stall at a chosen statement. A write notices within
// WRITE_STALL_TIMEOUT_MS, closes that connection and is retried on a new one; whether its COMMIT
// did run, was lost, or arrives late, every row is stored exactly once. A lookup on the request path
// notices within its share of REQUEST_DEADLINE_MS and answers 503.

const STALL_MS = 1000;
const DEADLINE_MS = 2000;
/** What a loaded two-core machine may add. */
const MARGIN_MS = 2000;

let db: TestDatabase;
let proxy: StallingProxy;
let gateway: Awaited<ReturnType<typeof startTestGateway>>;
let nextValue = 1;

beforeAll(async () => {
  db = await createTestDatabase();
  await db.pool.query(`INSERT INTO users (id, name) VALUES (1, 'one')`);
  proxy = await StallingProxy.start(new URL(db.url));
  gateway = await startTestGateway(
    { ...db, url: proxy.via(db.url) },
    { WRITE_STALL_TIMEOUT_MS: String(STALL_MS), REQUEST_DEADLINE_MS: String(DEADLINE_MS), ACK_TIMEOUT_MS: '10000' },
  );
  // User 1 is cached from here on: the writes below need no lookup.
  expect((await upload(1)).status).toBe(200);
});

afterAll(async () => {
  await gateway?.stop();
  await proxy?.close();
  await db?.drop();
});

/** A bulk upload (wait=true) of `rows` rows with talked_time values of their own. */
async function upload(rows: number): Promise<{ status: number; body: any; values: number[]; ms: number }> {
  const values = Array.from({ length: rows }, () => nextValue++);
  const body = values
    .map((value) =>
      JSON.stringify({ user_id: 1, talked_time: value, microphone_used: true, speaker_used: false, time_recorded: 0 }),
    )
    .join('\n');
  const started = Date.now();
  const response = await postNdjson(`${gateway.url}/v1/metrics/bulk`, body);
  return { status: response.status, body: response.body, values, ms: Date.now() - started };
}

async function timesStored(values: readonly number[]): Promise<number[]> {
  // Grouped rather than a correlated subquery per value, which Citus (TEST_CITUS=1) does not plan.
  const { rows } = await db.pool.query<{ value: number; n: number }>(
    `SELECT talked_time AS value, count(*)::int AS n FROM user_metrics
      WHERE talked_time = ANY ($1::float8[]) GROUP BY talked_time`,
    [values],
  );
  const counts = new Map(rows.map((row) => [row.value, row.n]));
  return values.map((value) => counts.get(value) ?? 0);
}

/** Uploads through a connection that stalls as `plan` says; checks the answer and that every row is stored once. */
async function uploadThroughStall(plan: StallPlan): Promise<StallRecord> {
  const stallsBefore = proxy.stalls.length;
  proxy.stallNext(plan);
  const result = await upload(20);
  expect(proxy.stalls.length).toBe(stallsBefore + 1);
  const stall = proxy.stalls.at(-1) as StallRecord;
  expect(result.status).toBe(200);
  expect(result.body).toEqual({ accepted: 20, rejected: 0, errors: [] });
  expect(await timesStored(result.values)).toEqual(result.values.map(() => 1));
  // The gateway gave up on the stalled connection after WRITE_STALL_TIMEOUT_MS, not before, not much after.
  const noticedAfterMs = (stall.clientClosedAt ?? Infinity) - stall.stalledAt;
  expect(noticedAfterMs).toBeGreaterThanOrEqual(STALL_MS - 100);
  expect(noticedAfterMs).toBeLessThan(STALL_MS + MARGIN_MS);
  if (process.env.REPORT_TIMINGS) {
    process.stdout.write(
      `${expect.getState().currentTestName}: stall noticed after ${noticedAfterMs} ms, answered after ${result.ms} ms\n`,
    );
  }
  return stall;
}

it('a COPY whose connection stalls mid-transaction is written again on a new connection', async () => {
  await uploadThroughStall({ trigger: 'COPY', forwardTrigger: true, closeServerWhenClientCloses: true });
});

it('a COMMIT that ran but whose answer never comes back is not written twice', async () => {
  await uploadThroughStall({ trigger: 'COMMIT', forwardTrigger: true, closeServerWhenClientCloses: true });
});

it('a COMMIT lost in a partition that never heals: PostgreSQL ends the idle transaction, the rows are written again', async () => {
  await uploadThroughStall({ trigger: 'COMMIT', forwardTrigger: false, closeServerWhenClientCloses: false });
});

it('a COMMIT held in a partition that heals after the gateway gave up commits late, and is not written twice', async () => {
  const stall = await uploadThroughStall({
    trigger: 'COMMIT',
    forwardTrigger: false,
    closeServerWhenClientCloses: false,
    healAfterClientCloseMs: 100,
  });
  expect(stall.healedAt).toBeDefined();
});

it('a reference lookup whose connection stalls answers 503 within the deadline; the next request succeeds', async () => {
  await db.pool.query(`INSERT INTO users (id, name) VALUES (2, 'not cached')`);
  const talkedTime = nextValue++;
  const sent = metric({ user_id: 2, talked_time: talkedTime, time_recorded: 0 });
  proxy.stallNext({ trigger: 'FROM users', forwardTrigger: true, closeServerWhenClientCloses: true });
  const started = Date.now();
  const stalled = await postJson(`${gateway.url}/v1/metrics`, sent);
  const ms = Date.now() - started;
  expect(stalled.status).toBe(503);
  expect(stalled.headers.get('retry-after')).toBe('5');
  expect(ms).toBeLessThan(DEADLINE_MS + MARGIN_MS);
  // The stalled connection was closed, not left in the pool.
  for (let waited = 0; proxy.stalls.at(-1)?.clientClosedAt === undefined && waited < 2000; waited += 50)
    await sleep(50);
  expect(proxy.stalls.at(-1)?.clientClosedAt).toBeDefined();
  const retried = await postJson(`${gateway.url}/v1/metrics`, sent);
  expect(retried.status).toBe(201);
  expect(await timesStored([talkedTime])).toEqual([1]);
});
