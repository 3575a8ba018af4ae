import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setImmediate as yieldToEvents, setTimeout as sleep } from 'node:timers/promises';
import type { PoolClient } from 'pg';
import {
  MetricsClient,
  type ClientOptions,
  type DropReason,
  type Metric,
  type RefusedRow,
} from 'metrics-gateway-client';
import { createTestDatabase, type TestDatabase } from '../helpers/database';
import { startTestGateway } from '../helpers/gateway';
import { numberedMetric } from '../helpers/numbered-metrics';
import { startGatewayProcess, type GatewayProcess } from '../helpers/process';

// The client library (client/) against a real gateway while things go wrong: the gateway process
// killed (SIGKILL) and restarted mid-run, its PostgreSQL connections cut again and again, and 429s
// from a small buffer while writes are blocked. Each tracked event ends in exactly one of the
// client's events (stored, refused, dropped); every stored one is in user_metrics exactly once (by
// event_id) and nothing else is; refusals come per event with their reason; the queue never holds
// more than maxQueueRows. Fake-gateway unit tests: client/test/client.test.ts.

let db: TestDatabase;
let spoolDir: string;

beforeAll(async () => {
  db = await createTestDatabase();
  await db.pool.query(`INSERT INTO users (id, name) VALUES (1, 'one')`);
  spoolDir = await mkdtemp(path.join(os.tmpdir(), 'mg-client-'));
});

afterAll(async () => {
  await db?.drop();
  await rm(spoolDir, { recursive: true, force: true });
});

/** A client with every event it emits recorded, and the most rows it ever held. */
function recordedClient(options: ClientOptions) {
  const client = new MetricsClient(options);
  const stored: Metric[] = [];
  const refused: RefusedRow[] = [];
  const dropped: { rows: readonly Metric[]; reason: DropReason }[] = [];
  const retried: (number | string)[] = [];
  client.on('stored', (rows) => stored.push(...rows));
  client.on('refused', (rows) => refused.push(...rows));
  client.on('dropped', (rows, reason) => dropped.push({ rows, reason }));
  client.on('retry', (retry) => retried.push(retry.status));
  return { client, stored, refused, dropped, retried, maxHeld: 0 };
}
type Recorded = ReturnType<typeof recordedClient>;

/**
 * Tracks `count` metrics made by `make`, yielding to the event loop every 500 as an application
 * would; with `paced`, waits while the queue is nearly full instead of having rows dropped.
 */
async function track(
  recorded: Recorded,
  count: number,
  make: (n: number) => Metric,
  { paced, bound }: { paced: boolean; bound: number },
): Promise<void> {
  for (let n = 1; n <= count; n++) {
    while (paced && recorded.client.pendingRows >= bound) await sleep(2);
    recorded.client.track(make(n));
    recorded.maxHeld = Math.max(recorded.maxHeld, recorded.client.pendingRows);
    if (n % 500 === 0) await yieldToEvents();
  }
}

/** event_id -> how many rows carry it, over every row of user_metrics. */
async function storedEventIds(): Promise<Map<string, number>> {
  const { rows } = await db.pool.query<{ event_id: string; n: number }>(
    'SELECT event_id::text, count(*)::int AS n FROM user_metrics GROUP BY event_id',
  );
  return new Map(rows.map((row) => [row.event_id, row.n]));
}

/** Every tracked event told of once; user_metrics holds exactly the stored ones, once each. */
async function expectExactlyOnce(recorded: Recorded, tracked: number): Promise<void> {
  const { stored, refused, dropped } = recorded;
  const told = [...stored, ...refused.map((row) => row.metric), ...dropped.flatMap((drop) => drop.rows)];
  expect(told).toHaveLength(tracked);
  expect(new Set(told.map((row) => row.talked_time)).size).toBe(tracked);
  // Stored twice would show as a talked_time (each event's own) on two rows.
  const { rows } = await db.pool.query<{ twice: number }>(
    'SELECT (count(*) - count(DISTINCT talked_time))::int AS twice FROM user_metrics',
  );
  expect(rows[0]?.twice).toBe(0);
  const inDatabase = await storedEventIds();
  expect([...inDatabase.values()].filter((n) => n !== 1)).toEqual([]);
  expect(inDatabase.size).toBe(stored.length);
  expect(stored.filter((row) => !inDatabase.has(row.event_id as string))).toEqual([]);
}

const metric = (n: number): Metric => numberedMetric(n, { scale: 1000 }) as unknown as Metric;

it('200,000 events, the gateway SIGKILLed and restarted in the middle: each stored exactly once', async () => {
  await db.pool.query('TRUNCATE user_metrics');
  const env = { DATABASE_URL: db.url, SPOOL_DIR: spoolDir, LOG_LEVEL: 'warn' };
  const running: GatewayProcess[] = [await startGatewayProcess(env)];
  const url = (running[0] as GatewayProcess).url;
  const bound = 40_000;
  const recorded = recordedClient({ url, maxQueueRows: bound, retries: 20, maxRetryWaitMs: 500 });
  try {
    const total = 200_000;
    let killed = false;
    const killer = (async () => {
      // Kill it once a good part is stored, while requests are in flight.
      while (recorded.stored.length < 60_000) await sleep(5);
      const first = running[0] as GatewayProcess;
      first.child.kill('SIGKILL');
      expect(await first.exited).toBe('SIGKILL');
      killed = true;
      await sleep(300);
      running.push(await startGatewayProcess({ ...env, PORT: new URL(url).port }));
    })();
    await track(recorded, total, metric, { paced: true, bound });
    const totals = await recorded.client.close({ deadlineMs: 30_000 });
    await killer;
    expect(killed).toBe(true);
    expect(totals).toEqual({ tracked: total, stored: total, refused: 0, dropped: 0 });
    expect(recorded.retried.length).toBeGreaterThan(0); // the outage was seen
    expect(recorded.maxHeld).toBeLessThanOrEqual(bound);
    await expectExactlyOnce(recorded, total);
  } finally {
    for (const gateway of running) {
      if (gateway.child.exitCode === null && gateway.child.signalCode === null) gateway.child.kill('SIGKILL');
      await gateway.exited;
    }
  }
}, 60_000);

it("the gateway's PostgreSQL connections cut again and again: every event stored exactly once", async () => {
  await db.pool.query('TRUNCATE user_metrics');
  const gateway = await startTestGateway(db, { ACK_TIMEOUT_MS: '1000' });
  const recorded = recordedClient({ url: gateway.url, flushAt: 2000, retries: 30, maxRetryWaitMs: 300 });
  let cuts = 0;
  let cutting = true;
  const cutter = (async () => {
    while (cutting) {
      // A cut every 150 ms, but only once some events were stored since the last one: a batch that
      // takes longer than that (through a Citus coordinator, on a loaded machine) would otherwise be
      // cut every time and the run would never end, which tests the timing, not the client.
      const storedBefore = recorded.stored.length;
      await sleep(150);
      while (cutting && recorded.stored.length === storedBefore) await sleep(10);
      if (!cutting) break;
      const { rowCount } = await db.pool.query(
        `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'`,
      );
      cuts += rowCount ?? 0;
    }
  })();
  try {
    const total = 40_000;
    await track(recorded, total, metric, { paced: true, bound: 20_000 });
    await recorded.client.flush();
    cutting = false;
    await cutter;
    expect(cuts).toBeGreaterThan(5);
    expect(await recorded.client.close()).toEqual({ tracked: total, stored: total, refused: 0, dropped: 0 });
    await expectExactlyOnce(recorded, total);
  } finally {
    cutting = false;
    await cutter.catch(() => undefined);
    await gateway.stop();
  }
}, 60_000);

it('429s from a small buffer while writes are blocked, bad events among good ones, a full queue: each told once, refusals per event, the bound held', async () => {
  await db.pool.query('TRUNCATE user_metrics');
  const gateway = await startTestGateway(db, {
    BUFFER_MAX_ROWS: '500',
    BATCH_MAX_ROWS: '250',
    ACK_TIMEOUT_MS: '1000',
    BULK_BACKPRESSURE_TIMEOUT_MS: '200',
  });
  const bound = 6000;
  const recorded = recordedClient({
    url: gateway.url,
    flushAt: 2000,
    maxQueueRows: bound,
    retries: 50,
    maxRetryWaitMs: 100,
  });
  // Every 97th event names a user that does not exist, every 89th has a negative talked_time.
  const make = (n: number): Metric => {
    const row = metric(n);
    if (n % 97 === 0) return { ...row, user_id: 424_242 };
    if (n % 89 === 0) return { ...row, talked_time: -n };
    return row;
  };
  const blocker: PoolClient = await db.pool.connect();
  try {
    await blocker.query('BEGIN');
    await blocker.query('LOCK TABLE user_metrics IN EXCLUSIVE MODE');
    const total = 20_000;
    // Unpaced while writes are blocked: the queue fills, and the newest events are refused.
    const unpaced = track(recorded, total, make, { paced: false, bound });
    await sleep(1500);
    await blocker.query('COMMIT');
    await unpaced;
    await recorded.client.close({ deadlineMs: 30_000 });
    expect(recorded.retried).toContain(429);
    expect(recorded.maxHeld).toBeLessThanOrEqual(bound);
    const reasons = new Set(recorded.dropped.map((drop) => drop.reason));
    expect([...reasons]).toEqual(['queue_full']);
    // Refusals: per event, with the gateway's reason, and only the bad ones.
    expect(recorded.refused.length).toBeGreaterThan(0);
    for (const { metric: row, error } of recorded.refused) {
      expect(error).toBe(row.user_id === 424_242 ? 'unknown_reference' : 'validation_failed');
      if (row.user_id !== 424_242) expect(row.talked_time).toBeLessThan(0);
    }
    const refusedIds = new Set(recorded.refused.map((row) => row.metric.talked_time));
    expect(recorded.stored.some((row) => refusedIds.has(row.talked_time))).toBe(false);
    await expectExactlyOnce(recorded, total);
  } finally {
    await blocker.query('ROLLBACK').catch(() => undefined);
    blocker.release();
    await gateway.stop();
  }
}, 60_000);
