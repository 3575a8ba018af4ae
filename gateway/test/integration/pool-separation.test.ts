import { setTimeout as sleep } from 'node:timers/promises';
import { Client } from 'pg';
import { createTestDatabase, type TestDatabase } from '../helpers/database';
import { numberedMetrics } from '../helpers/numbered-metrics';
import { postJson, request, startTestGateway } from '../helpers/gateway';

// Batch writes and the request path have connection pools of their own (db/pool.ts), so neither can
// starve the other: with every COPY stuck behind a lock, lookups and reads still answer at once; and a
// burst of lookups stuck behind another lock does not delay the writing of batches. Default settings
// (PG_POOL_MAX=10, FLUSH_CONCURRENCY=2, REQUEST_DEADLINE_MS=10000).

const HOLD_MS = 6000;
/** Well under HOLD_MS: an answer that waited for the lock would take longer; a loaded machine will not. */
const PROMPT_MS = 2500;
const CACHED_USER = 1;

let db: TestDatabase;
let gateway: Awaited<ReturnType<typeof startTestGateway>>;
const metric = numberedMetrics();
let nextFreshId = 1000;

beforeAll(async () => {
  db = await createTestDatabase();
  await db.pool.query(`INSERT INTO users (id, name) VALUES ($1, 'cached')`, [CACHED_USER]);
  gateway = await startTestGateway(db);
  expect((await postJson(`${gateway.url}/v1/metrics`, metric(CACHED_USER))).status).toBe(201);
});

afterAll(async () => {
  await gateway?.stop();
  await db?.drop();
});

async function timed(send: () => Promise<{ status: number }>): Promise<{ status: number; ms: number }> {
  const started = Date.now();
  const { status } = await send();
  return { status, ms: Date.now() - started };
}

/** Runs `during` while another session holds the lock, and releases it HOLD_MS after taking it. */
async function withLock<T>(statement: string, during: () => Promise<T>): Promise<T> {
  const locker = new Client({ connectionString: db.url });
  await locker.connect();
  try {
    await locker.query('BEGIN');
    await locker.query(statement);
    const release = sleep(HOLD_MS).then(() => locker.query('ROLLBACK'));
    const result = await during();
    await release;
    return result;
  } finally {
    await locker.end();
  }
}

function report(what: string, answers: readonly { status: number; ms: number }[]): void {
  if (!process.env.REPORT_TIMINGS) return;
  const ms = answers.map((answer) => answer.ms).sort((a, b) => a - b);
  const statuses = [...new Set(answers.map((answer) => answer.status))].join('/');
  process.stdout.write(
    `${what}: ${answers.length} answers ${statuses}, median ${ms[ms.length >> 1]} ms, max ${ms.at(-1)} ms\n`,
  );
}

it('with every COPY stuck behind a lock on user_metrics, lookups and reads answer at once', async () => {
  const freshUsers = async (): Promise<number[]> => {
    const ids = Array.from({ length: 20 }, () => nextFreshId++);
    await db.pool.query(`INSERT INTO users (id, name) SELECT id, 'fresh' FROM unnest($1::int[]) AS id`, [ids]);
    return ids;
  };
  const lookupsAndReads = async (users: readonly number[]) => ({
    lookups: await Promise.all(
      users.map((id) => timed(() => postJson(`${gateway.url}/v1/metrics?wait=false`, metric(id)))),
    ),
    reads: await Promise.all(
      Array.from({ length: 10 }, () => timed(() => request(`${gateway.url}/v1/users/${CACHED_USER}/metrics`))),
    ),
  });
  // The same requests without a lock, for comparison.
  const unlocked = await lookupsAndReads(await freshUsers());
  report('lookups (wait=false, users not cached), no lock', unlocked.lookups);
  report('reads, no lock', unlocked.reads);
  const users = await freshUsers();
  const { stuck, lookups, reads } = await withLock('LOCK TABLE user_metrics IN SHARE MODE', async () => {
    // wait=true writes: every flush slot is taken by a COPY waiting for the lock.
    const stuckWrites = Array.from({ length: 6 }, () =>
      timed(() => postJson(`${gateway.url}/v1/metrics`, metric(CACHED_USER))),
    );
    await sleep(300);
    return { stuck: stuckWrites, ...(await lookupsAndReads(users)) };
  });
  report('lookups (wait=false, users not cached) while COPYs are stuck', lookups);
  report('reads while COPYs are stuck', reads);
  for (const answer of lookups) expect(answer).toEqual({ status: 202, ms: expect.any(Number) });
  for (const answer of reads) expect(answer).toEqual({ status: 200, ms: expect.any(Number) });
  expect(Math.max(...lookups.map((answer) => answer.ms), ...reads.map((answer) => answer.ms))).toBeLessThan(PROMPT_MS);
  const writes = await Promise.all(stuck);
  report('wait=true writes stuck behind the lock', writes);
  // They waited for the lock, and were committed once it went (within ACK_TIMEOUT_MS).
  for (const answer of writes) expect(answer.status).toBe(201);
  expect(Math.min(...writes.map((answer) => answer.ms))).toBeGreaterThan(HOLD_MS - 1000);
}, 60_000);

it('a burst of lookups stuck behind a lock on devices does not delay the writing of batches', async () => {
  const devices = Array.from({ length: 40 }, () => `fresh-device-${nextFreshId++}`);
  await db.pool.query(`INSERT INTO devices (id) SELECT unnest($1::varchar[])`, [devices]);
  const { burst, writes } = await withLock('LOCK TABLE devices IN ACCESS EXCLUSIVE MODE', async () => {
    const burstAnswers = Promise.all(
      devices.map((device) => timed(() => postJson(`${gateway.url}/v1/metrics`, metric(CACHED_USER, device)))),
    );
    await sleep(300);
    // Rows of a cached user without a device: nothing to look up, and their COPY does not read devices.
    const writeAnswers: { status: number; ms: number }[] = [];
    for (let i = 0; i < 5; i++) {
      writeAnswers.push(await timed(() => postJson(`${gateway.url}/v1/metrics`, metric(CACHED_USER))));
    }
    return { burst: await burstAnswers, writes: writeAnswers };
  });
  report('burst of lookups behind the devices lock', burst);
  report('wait=true writes during the burst', writes);
  for (const answer of writes) expect(answer.status).toBe(201);
  expect(Math.max(...writes.map((answer) => answer.ms))).toBeLessThan(PROMPT_MS);
  // The burst itself: each lookup gave up after its share of REQUEST_DEADLINE_MS (503), or was answered
  // once the lock went; none hung.
  for (const answer of burst) expect([201, 503]).toContain(answer.status);
  expect(burst.filter((answer) => answer.status === 503).length).toBeGreaterThan(0);
  expect(Math.max(...burst.map((answer) => answer.ms))).toBeLessThan(gateway.config.requestDeadlineMs + PROMPT_MS);
}, 60_000);
