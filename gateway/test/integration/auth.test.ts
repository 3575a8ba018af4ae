import { performance } from 'node:perf_hooks';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { createApiKey, generateApiKey, revokeApiKey } from '../../src/auth/api-keys';
import type { Gateway } from '../../src/gateway';
import { createLogger } from '../../src/logger';
import { createTestDatabase, type TestDatabase } from '../helpers/database';
import { postJson, postNdjson, request, startTestGateway } from '../helpers/gateway';
import { numberedMetric } from '../helpers/numbered-metrics';
import { until } from '../helpers/until';

// AUTH_REQUIRED=true end to end: every way to be refused (401, 403, 429) and every way to get in,
// over real HTTP against keys stored in a real database.

const CACHE_TTL_MS = 300;
const DEVICE = 'auth-test-device';

let db: TestDatabase;
let gateway: Gateway;
let logLines: string[];
let ingestKey: string;
let adminKey: string;

const bearer = (key: string): Record<string, string> => ({ authorization: `Bearer ${key}` });

beforeAll(async () => {
  db = await createTestDatabase();
  await db.pool.query(`INSERT INTO users (id, name) VALUES (1, 'one')`);
  await db.pool.query(`SELECT setval(pg_get_serial_sequence('users', 'id'), 1)`);
  await db.pool.query(`INSERT INTO devices (id) VALUES ($1)`, [DEVICE]);
  ingestKey = (await createApiKey(db.pool, 'fleet', 'ingest')).key;
  adminKey = (await createApiKey(db.pool, 'ops', 'admin')).key;

  // The real logger, writing into memory, to check that no key ever reaches a log line.
  logLines = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      logLines.push(chunk.toString('utf8'));
      done();
    },
  });
  gateway = await startTestGateway(
    db,
    { AUTH_REQUIRED: 'true', AUTH_CACHE_TTL_MS: String(CACHE_TTL_MS) },
    createLogger('info', sink),
  );
});

afterAll(async () => {
  await gateway?.stop();
  await db?.drop();
});

/** One request of each kind the API has, for "everywhere" checks. */
function everyRoute(url: string, headers: Record<string, string>, n: number) {
  return {
    single: () => postJson(`${url}/v1/metrics`, numberedMetric(n), headers),
    bulk: () => postNdjson(`${url}/v1/metrics/bulk`, `${JSON.stringify(numberedMetric(n))}\n`, headers),
    createUser: () => postJson(`${url}/v1/users`, { name: `user ${n}` }, headers),
    readUser: () => request(`${url}/v1/users/1`, { headers }),
    createDevice: () => postJson(`${url}/v1/devices`, { id: `device-${n}` }, headers),
    readDevice: () => request(`${url}/v1/devices/${DEVICE}`, { headers }),
  };
}

function expectUnauthorized(response: { status: number; headers: Headers; body: any }, invalidToken: boolean): void {
  expect(response.status).toBe(401);
  expect(response.body).toEqual({ error: 'unauthorized', message: expect.any(String), details: [] });
  const challenge = response.headers.get('www-authenticate') ?? '';
  expect(challenge).toMatch(/^Bearer /);
  expect(challenge.includes('error="invalid_token"')).toBe(invalidToken);
}

describe('without a valid key', () => {
  it('answers 401 with WWW-Authenticate: Bearer on every route when no Authorization header is sent', async () => {
    for (const [route, send] of Object.entries(everyRoute(gateway.url, {}, 1))) {
      const response = await send();
      expect({ route, status: response.status }).toEqual({ route, status: 401 });
      expectUnauthorized(response, false);
    }
    expect(await db.pool.query('SELECT 1 FROM user_metrics')).toHaveProperty('rowCount', 0);
  });

  it.each([
    ['another scheme', `Basic ${Buffer.from('user:password').toString('base64')}`],
    ['the scheme alone', 'Bearer'],
    ['the key without the scheme', 'KEY'],
    ['two tokens', 'Bearer KEY extra'],
    ['a token with characters a bearer token cannot have', 'Bearer mgk_abc,def'],
    ['a token too long to be a key', `Bearer ${'a'.repeat(600)}`],
  ])('answers 401 invalid_token to a malformed header: %s', async (_case, header) => {
    const response = await postJson(`${gateway.url}/v1/metrics`, numberedMetric(2), {
      authorization: header.replace('KEY', ingestKey),
    });
    expectUnauthorized(response, true);
  });

  it('answers 401 to a key of the right shape that was never issued, and to a string that is no key at all', async () => {
    for (const key of [generateApiKey(), 'not-a-key', ingestKey.slice(0, -1)]) {
      const response = await postJson(`${gateway.url}/v1/metrics`, numberedMetric(3), bearer(key));
      expectUnauthorized(response, true);
      expect(JSON.stringify(response.body)).not.toContain(key);
    }
  });

  // How soon every gateway refuses a revoked key is key-revocation.test.ts's subject.
  it('refuses a revoked key', async () => {
    const { key } = await createApiKey(db.pool, 'soon-revoked', 'admin');
    expect((await postJson(`${gateway.url}/v1/metrics`, numberedMetric(4), bearer(key))).status).toBe(201);
    await revokeApiKey(db.pool, 'soon-revoked');
    let response = await postJson(`${gateway.url}/v1/metrics`, numberedMetric(5), bearer(key));
    const refused = async (): Promise<boolean> => {
      if (response.status === 401) return true;
      expect(response.status).toBe(201); // the announcement of the revocation is on its way
      response = await postJson(`${gateway.url}/v1/metrics`, numberedMetric(5), bearer(key));
      return false;
    };
    await until(refused, 'the revoked key refused');
    expectUnauthorized(response, true);
  });
});

describe('with a valid key', () => {
  it('lets an ingest key post single metrics and bulk uploads, and answers 403 on every other route', async () => {
    const routes = everyRoute(gateway.url, bearer(ingestKey), 10);
    expect(await routes.single()).toMatchObject({ status: 201, body: { status: 'stored' } });
    expect(await routes.bulk()).toMatchObject({ status: 200, body: { accepted: 1, rejected: 0 } });
    for (const send of [routes.createUser, routes.readUser, routes.createDevice, routes.readDevice]) {
      const response = await send();
      expect(response).toMatchObject({ status: 403, body: { error: 'forbidden', details: [] } });
      expect(response.headers.get('www-authenticate')).toMatch(/^Bearer .*error="insufficient_scope"/);
    }
    // A route that does not exist yet is an admin route too: new routes are closed until opened.
    expect(await request(`${gateway.url}/v1/whatever`, { headers: bearer(ingestKey) })).toMatchObject({
      status: 403,
    });
    const { rows } = await db.pool.query('SELECT count(*)::int AS n FROM user_metrics WHERE talked_time = 10');
    expect(rows[0].n).toBe(2);
  });

  it('matches routes as Express does: the ingest routes with a trailing slash or in capitals stay ingest routes', async () => {
    expect((await postJson(`${gateway.url}/v1/metrics/`, numberedMetric(11), bearer(ingestKey))).status).toBe(201);
    expect((await postJson(`${gateway.url}/V1/Metrics`, numberedMetric(11), bearer(ingestKey))).status).toBe(201);
  });

  it('lets an admin key use every route', async () => {
    const routes = everyRoute(gateway.url, bearer(adminKey), 20);
    expect(await routes.single()).toMatchObject({ status: 201 });
    expect(await routes.bulk()).toMatchObject({ status: 200, body: { accepted: 1 } });
    expect(await routes.createUser()).toMatchObject({ status: 201, body: { name: 'user 20' } });
    expect(await routes.readUser()).toMatchObject({ status: 200, body: { id: 1 } });
    expect(await routes.createDevice()).toMatchObject({ status: 201, body: { id: 'device-20' } });
    expect(await routes.readDevice()).toMatchObject({ status: 200, body: { id: DEVICE } });
    // Through the key check, the usual answers come back: 404 for a missing route.
    expect(await request(`${gateway.url}/v1/whatever`, { headers: bearer(adminKey) })).toMatchObject({
      status: 404,
      body: { error: 'not_found' },
    });
  });

  it('accepts the scheme in any case and with extra spaces', async () => {
    const response = await postJson(`${gateway.url}/v1/metrics`, numberedMetric(21), {
      authorization: `bearer   ${adminKey}`,
    });
    expect(response.status).toBe(201);
  });

  it('records when a key was last used', async () => {
    const { rows } = await db.pool.query(`SELECT last_used_at FROM api_keys WHERE name = 'fleet'`);
    expect(rows[0].last_used_at).toBeInstanceOf(Date);
  });
});

it('keeps /healthz and /readyz, and by default /metrics and /docs, open without a key', async () => {
  expect(await request(`${gateway.url}/healthz`)).toMatchObject({ status: 200 });
  expect(await request(`${gateway.url}/readyz`)).toMatchObject({ status: 200 });
  for (const path of ['/metrics', '/docs', '/openapi.json']) {
    // Open: whatever the route answers (it may not exist in this build), it is not the key check.
    expect((await request(`${gateway.url}${path}`)).status).not.toBe(401);
  }
});

it('never writes a key into the logs, and names the key that was used', async () => {
  await postJson(`${gateway.url}/v1/metrics`, numberedMetric(30), bearer(ingestKey));
  await postJson(`${gateway.url}/v1/users`, { name: 'refused' }, bearer(ingestKey));
  await postJson(`${gateway.url}/v1/metrics`, numberedMetric(31), bearer(adminKey.replace(/.$/, 'x')));
  const logs = logLines.join('');
  expect(logs).not.toContain(ingestKey.slice(4));
  expect(logs).not.toContain(adminKey.slice(4, -1));
  expect(logs).toContain('[redacted]');
  expect(logs).toContain('"apiKey":"fleet"');
});

describe('METRICS_AUTH_REQUIRED and DOCS_AUTH_REQUIRED', () => {
  let strict: Gateway;

  beforeAll(async () => {
    strict = await startTestGateway(db, {
      AUTH_REQUIRED: 'true',
      METRICS_AUTH_REQUIRED: 'true',
      DOCS_AUTH_REQUIRED: 'true',
    });
  });

  afterAll(async () => {
    await strict?.stop();
  });

  it('put /metrics, /docs and /openapi.json behind any valid key, and leave the probes open', async () => {
    for (const path of ['/metrics', '/docs', '/docs/index.html', '/openapi.json']) {
      expectUnauthorized(await request(`${strict.url}${path}`), false);
      const withKey = await request(`${strict.url}${path}`, { headers: bearer(ingestKey) });
      expect({ path, status: withKey.status }).not.toEqual({ path, status: 401 });
      expect(withKey.status).not.toBe(403);
    }
    expect(await request(`${strict.url}/healthz`)).toMatchObject({ status: 200 });
    expect(await request(`${strict.url}/readyz`)).toMatchObject({ status: 200 });
  });
});

describe('RATE_LIMIT_PER_KEY_RPS', () => {
  let limited: Gateway;

  beforeAll(async () => {
    limited = await startTestGateway(db, {
      AUTH_REQUIRED: 'true',
      RATE_LIMIT_PER_KEY_RPS: '2',
      RATE_LIMIT_BURST: '3',
    });
  });

  afterAll(async () => {
    await limited?.stop();
  });

  // No bound here depends on how fast this machine is: refills during the burst are allowed for, and
  // waiting Retry-After can only add tokens (the refill itself is tested with a clock in unit/auth).
  it('answers 429 overloaded with Retry-After past a key’s burst, per key, and lets it in again after Retry-After', async () => {
    const send = (key: string) => postJson(`${limited.url}/v1/metrics?wait=false`, numberedMetric(40), bearer(key));
    const started = performance.now();
    let taken = 0;
    let response = await send(ingestKey);
    for (; response.status === 202 && taken < 100; response = await send(ingestKey)) taken++;
    const elapsedSeconds = (performance.now() - started) / 1000;
    expect(response).toMatchObject({ status: 429, body: { error: 'overloaded' } });
    expect(response.headers.get('retry-after')).toBe('1');
    // The burst of 3, and at 2 requests/s whatever refilled while they were sent.
    expect(taken).toBeGreaterThanOrEqual(3);
    expect(taken).toBeLessThanOrEqual(3 + Math.ceil(elapsedSeconds * 2));
    // Another key has a bucket of its own; the probes have none.
    expect((await send(adminKey)).status).toBe(202);
    expect((await request(`${limited.url}/healthz`)).status).toBe(200);
    await sleep(1000);
    expect((await send(ingestKey)).status).toBe(202);
  });
});

describe('AUTH_REQUIRED=false', () => {
  let open: Gateway;

  beforeAll(async () => {
    open = await startTestGateway(db, {});
  });

  afterAll(async () => {
    await open?.stop();
  });

  it('takes every request without a key, and ignores any Authorization header', async () => {
    const headerSets: Record<string, string>[] = [
      {},
      { authorization: 'Bearer nonsense' },
      { authorization: 'Basic abc' },
    ];
    for (const headers of headerSets) {
      const routes = everyRoute(open.url, headers, 50);
      expect((await routes.single()).status).toBe(201);
      expect((await routes.bulk()).status).toBe(200);
      expect((await routes.createUser()).status).toBe(201);
      expect((await routes.readUser()).status).toBe(200);
      expect((await routes.readDevice()).status).toBe(200);
    }
  });
});
