import { setTimeout as sleep } from 'node:timers/promises';
import { Client } from 'pg';
import { createApiKey } from '../../src/auth/api-keys';
import { createTestDatabase, type TestDatabase } from '../helpers/database';
import { numberedMetrics } from '../helpers/numbered-metrics';
import { postJson, postNdjson, request, startTestGateway, type JsonResponse } from '../helpers/gateway';
import { until } from '../helpers/until';

// Another session holds a lock on a table the request path needs (a migration, VACUUM FULL, a long
// cascade delete do this in real life) for longer than the request deadline, while singles and bulk
// uploads (wait=true) and reads arrive. Every request is answered within the deadline plus a margin
// and while the lock is still held: success, or 503 with Retry-After, never a 500 and never a hang.
// Once the lock goes, every row answered with success is stored exactly once, and no row twice.
// The users, devices and keys each case sends were written straight into the database, so the
// gateway has not cached them and must look them up.

const DEADLINE_MS = 1500;
/** What a loaded two-core machine may add to a deadline. */
const MARGIN_MS = 2000;
/** Requests are sent during this much of the lock... */
const LOAD_MS = 2000;
/** ...which is held this long, so that a request waiting for the lock would take longer than the deadline and margin. */
const HOLD_MS = LOAD_MS + DEADLINE_MS + MARGIN_MS + 1500;

const CACHED_USER = 1;
const CACHED_DEVICE = 'cached-device';

let db: TestDatabase;
let gateway: Awaited<ReturnType<typeof startTestGateway>>;
let cachedKey: string;
/** Every row gets a talked_time of its own, which identifies it in user_metrics. */
const metric = numberedMetrics();
let nextFreshId = 1000;

beforeAll(async () => {
  db = await createTestDatabase();
  await db.pool.query(`INSERT INTO users (id, name) VALUES ($1, 'cached')`, [CACHED_USER]);
  await db.pool.query(`INSERT INTO devices (id) VALUES ($1)`, [CACHED_DEVICE]);
  cachedKey = (await createApiKey(db.pool, 'cached', 'admin')).key;
  gateway = await startTestGateway(db, {
    AUTH_REQUIRED: 'true',
    REQUEST_DEADLINE_MS: String(DEADLINE_MS),
    ACK_TIMEOUT_MS: String(DEADLINE_MS),
  });
  // The cached user, device and key are known to the gateway before any lock.
  const warm = await postJson(`${gateway.url}/v1/metrics`, metric(CACHED_USER, CACHED_DEVICE), bearer(cachedKey));
  expect(warm.status).toBe(201);
});

afterAll(async () => {
  await gateway?.stop();
  await db?.drop();
});

const bearer = (key: string): Record<string, string> => ({ authorization: `Bearer ${key}` });

/** Users and devices registered in the database directly, unknown to the gateway's cache. */
async function freshUsers(n: number): Promise<number[]> {
  const ids = Array.from({ length: n }, () => nextFreshId++);
  await db.pool.query(`INSERT INTO users (id, name) SELECT id, 'fresh' FROM unnest($1::int[]) AS id`, [ids]);
  return ids;
}

async function freshDevices(n: number): Promise<string[]> {
  const ids = Array.from({ length: n }, () => `fresh-device-${nextFreshId++}`);
  await db.pool.query(`INSERT INTO devices (id) SELECT unnest($1::varchar[])`, [ids]);
  return ids;
}

interface Outcome {
  readonly what: string;
  readonly status: number;
  readonly ms: number;
  readonly answeredAt: number;
  readonly retryAfter: string | null;
  /** talked_time of each row the request sent. */
  readonly values: readonly number[];
}

async function timed(what: string, values: number[], send: () => Promise<JsonResponse>): Promise<Outcome> {
  const started = Date.now();
  const response = await send();
  const answeredAt = Date.now();
  return {
    what,
    status: response.status,
    ms: answeredAt - started,
    answeredAt,
    retryAfter: response.headers.get('retry-after'),
    values,
  };
}

/** A request to send during the lock; called once per tick, every 100 ms. */
type Load = (tick: number) => Promise<Outcome> | undefined;

function single(what: string, body: Record<string, unknown>, key = cachedKey): Promise<Outcome> {
  return timed(what, [body.talked_time as number], () => postJson(`${gateway.url}/v1/metrics`, body, bearer(key)));
}

function bulk(what: string, lines: Record<string, unknown>[], key = cachedKey): Promise<Outcome> {
  const values = lines.map((line) => line.talked_time as number);
  const body = lines.map((line) => JSON.stringify(line)).join('\n');
  return timed(what, values, () => postNdjson(`${gateway.url}/v1/metrics/bulk`, body, bearer(key)));
}

function read(what: string, path: string): Promise<Outcome> {
  return timed(what, [], () => request(`${gateway.url}${path}`, { headers: bearer(cachedKey) }));
}

/**
 * Holds `LOCK TABLE table IN mode` in another session for HOLD_MS while `load` sends requests for
 * LOAD_MS; returns every answer and when the lock was released.
 */
async function underLock(
  table: string,
  mode: string,
  load: Load,
): Promise<{ outcomes: Outcome[]; releasedAt: number }> {
  const locker = new Client({ connectionString: db.url });
  await locker.connect();
  try {
    await locker.query('BEGIN');
    await locker.query(`LOCK TABLE ${table} IN ${mode} MODE`);
    const lockedAt = Date.now();
    const pending: Promise<Outcome>[] = [];
    for (let tick = 0; Date.now() - lockedAt < LOAD_MS; tick++) {
      const sent = load(tick);
      if (sent !== undefined) pending.push(sent);
      await sleep(100);
    }
    await sleep(Math.max(0, lockedAt + HOLD_MS - Date.now()));
    await locker.query('ROLLBACK');
    const releasedAt = Date.now();
    return { outcomes: await Promise.all(pending), releasedAt };
  } finally {
    await locker.end();
  }
}

function drained(): Promise<void> {
  return until(() => gateway.batcher.depth === 0, 'every buffered row written', 20_000);
}

/** Times each value of `values` is stored in user_metrics. */
async function storedCounts(values: readonly number[]): Promise<Map<number, number>> {
  const { rows } = await db.pool.query<{ value: number; n: number }>(
    `SELECT talked_time AS value, count(*)::int AS n FROM user_metrics WHERE talked_time = ANY($1::float8[])
      GROUP BY talked_time`,
    [values],
  );
  return new Map(rows.map((row) => [row.value, row.n]));
}

/** The promises of the deadline; returns the answers by status, for the case's own checks. */
async function expectDeadlinesKept(outcomes: readonly Outcome[], releasedAt: number): Promise<Map<number, Outcome[]>> {
  expect(outcomes.length).toBeGreaterThan(0);
  for (const outcome of outcomes) {
    const context = `${outcome.what}: ${outcome.status} after ${outcome.ms} ms`;
    expect({ context, ok: [200, 201, 503].includes(outcome.status) }).toEqual({ context, ok: true });
    expect({ context, inTime: outcome.ms <= DEADLINE_MS + MARGIN_MS }).toEqual({ context, inTime: true });
    expect({ context, beforeRelease: outcome.answeredAt < releasedAt }).toEqual({ context, beforeRelease: true });
    if (outcome.status === 503)
      expect({ context, retryAfter: outcome.retryAfter }).toEqual({ context, retryAfter: '5' });
  }
  await drained();
  const counts = await storedCounts(outcomes.flatMap((outcome) => outcome.values));
  for (const outcome of outcomes) {
    for (const value of outcome.values) {
      const stored = counts.get(value) ?? 0;
      // A 503 row may still be committed later (the contract says so), but never twice.
      const allowed = outcome.status === 503 ? [0, 1] : [1];
      const context = `${outcome.what} (${outcome.status}), row ${value}`;
      expect({ context, ok: allowed.includes(stored) }).toEqual({ context, ok: true });
    }
  }
  const byStatus = new Map<number, Outcome[]>();
  for (const outcome of outcomes) byStatus.set(outcome.status, [...(byStatus.get(outcome.status) ?? []), outcome]);
  if (process.env.REPORT_TIMINGS) {
    const summary = [...byStatus].map(([status, list]) => {
      const ms = list.map((outcome) => outcome.ms).sort((a, b) => a - b);
      return `${status}: ${list.length} (max ${ms.at(-1)} ms, median ${ms[Math.floor(ms.length / 2)]} ms)`;
    });
    process.stdout.write(`${expect.getState().currentTestName}: ${summary.join('; ')}\n`);
  }
  return byStatus;
}

const whats = (outcomes: readonly Outcome[] | undefined): string[] => [
  ...new Set((outcomes ?? []).map((outcome) => outcome.what)),
];

it('a lock on users: lookups of unknown users and writes answer 503 in time, never a hang', async () => {
  const users = await freshUsers(40);
  const { outcomes, releasedAt } = await underLock('users', 'ACCESS EXCLUSIVE', (tick) => {
    const fresh = users[tick % users.length] as number;
    if (tick % 5 === 4) {
      const lines = [metric(fresh), metric(CACHED_USER), metric(users[(tick + 1) % users.length] as number)];
      return bulk('bulk with unknown users', lines);
    }
    if (tick % 5 === 3)
      return timed('register a user', [], () => postJson(`${gateway.url}/v1/users`, { name: 'x' }, bearer(cachedKey)));
    return tick % 2 === 0
      ? single('single, unknown user', metric(fresh))
      : single('single, cached user', metric(CACHED_USER));
  });
  const byStatus = await expectDeadlinesKept(outcomes, releasedAt);
  // Nothing can be checked or committed while users is locked: the reference check of a COPY reads it too.
  expect(whats(byStatus.get(503))).toEqual(
    expect.arrayContaining(['single, unknown user', 'bulk with unknown users', 'register a user']),
  );
}, 60_000);

it('a lock on devices: unknown devices answer 503 in time; rows without a device are stored', async () => {
  const devices = await freshDevices(40);
  const { outcomes, releasedAt } = await underLock('devices', 'ACCESS EXCLUSIVE', (tick) => {
    const fresh = devices[tick % devices.length] as string;
    if (tick % 4 === 3) return bulk('bulk with unknown devices', [metric(CACHED_USER, fresh), metric(CACHED_USER)]);
    if (tick % 2 === 0) return single('single, unknown device', metric(CACHED_USER, fresh));
    return single('single, no device', metric(CACHED_USER));
  });
  const byStatus = await expectDeadlinesKept(outcomes, releasedAt);
  expect(whats(byStatus.get(503))).toEqual(
    expect.arrayContaining(['single, unknown device', 'bulk with unknown devices']),
  );
}, 60_000);

it('a lock on api_keys: a key not seen before answers 503 in time; a cached key goes on working', async () => {
  const freshKey = (await createApiKey(db.pool, 'fresh', 'ingest')).key;
  const { outcomes, releasedAt } = await underLock('api_keys', 'ACCESS EXCLUSIVE', (tick) => {
    switch (tick % 4) {
      case 0:
        return single('single, unknown key', metric(CACHED_USER), freshKey);
      case 1:
        return bulk('bulk, cached key', [metric(CACHED_USER), metric(CACHED_USER)]);
      case 2:
        return single('single, cached key', metric(CACHED_USER));
      default:
        return bulk('bulk, unknown key', [metric(CACHED_USER), metric(CACHED_USER)], freshKey);
    }
  });
  const byStatus = await expectDeadlinesKept(outcomes, releasedAt);
  expect(whats(byStatus.get(503))).toEqual(expect.arrayContaining(['single, unknown key', 'bulk, unknown key']));
  expect(whats(byStatus.get(201))).toEqual(['single, cached key']);
  expect(whats(byStatus.get(200))).toEqual(['bulk, cached key']);
}, 60_000);

it('a lock on user_metrics: writes and reads answer 503 in time; no row is stored twice', async () => {
  const users = await freshUsers(40);
  const { outcomes, releasedAt } = await underLock('user_metrics', 'ACCESS EXCLUSIVE', (tick) => {
    const fresh = users[tick % users.length] as number;
    switch (tick % 6) {
      case 0:
        return read('read metrics', `/v1/users/${CACHED_USER}/metrics`);
      case 1:
        return read('read summary', `/v1/users/${CACHED_USER}/summary`);
      case 2:
        return bulk('bulk', [metric(fresh), metric(CACHED_USER, CACHED_DEVICE)]);
      case 3:
        return read('read a user', `/v1/users/${fresh}`);
      default:
        return single('single', metric(tick % 2 === 0 ? fresh : CACHED_USER));
    }
  });
  const byStatus = await expectDeadlinesKept(outcomes, releasedAt);
  expect(whats(byStatus.get(503))).toEqual(expect.arrayContaining(['read metrics', 'read summary', 'bulk', 'single']));
  // The request pool is not held up by the stuck COPYs: a read of another table answers.
  expect(whats(byStatus.get(200))).toEqual(['read a user']);
}, 60_000);
