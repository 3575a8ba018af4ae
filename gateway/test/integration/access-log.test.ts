import { Writable } from 'node:stream';
import { createLogger } from '../../src/logger';
import { createTestDatabase, type TestDatabase } from '../helpers/database';
import { postJson, postNdjson, request, startTestGateway } from '../helpers/gateway';
import { metric } from '../helpers/metric';

// ACCESS_LOG (http/access-log.ts): which requests get a line, and what a line holds.

interface AccessLine {
  level: number;
  msg: string;
  req: { id: number; method: string; url: string; headers: Record<string, string> };
  res: { statusCode: number | null };
  responseTime: number;
}

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
  await db.pool.query(`INSERT INTO users (id, name) VALUES (1, 'one')`);
  await db.pool.query(`SELECT setval(pg_get_serial_sequence('users', 'id'), 1)`);
});

afterAll(async () => {
  await db?.drop();
});

/** A gateway with `env`, whose log lines land in memory; `lines()` gives the access lines so far. */
async function gatewayLogging(env: Record<string, string>) {
  const written: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      written.push(chunk.toString('utf8'));
      done();
    },
  });
  const gateway = await startTestGateway(db, env, createLogger('info', sink));
  const lines = (): AccessLine[] =>
    written
      .join('')
      .split('\n')
      .filter((line) => line.includes('"responseTime"'))
      .map((line) => JSON.parse(line) as AccessLine);
  // The line is written when the response closes, a moment after the client has it.
  const settle = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 50));
  return { gateway, lines, settle };
}

describe('ACCESS_LOG=errors (the default)', () => {
  let logged: Awaited<ReturnType<typeof gatewayLogging>>;

  beforeAll(async () => {
    logged = await gatewayLogging({});
  });

  afterAll(async () => {
    await logged?.gateway.stop();
  });

  it('logs nothing for a stored metric, and one line for a refused one', async () => {
    const { gateway, lines, settle } = logged;
    expect((await postJson(`${gateway.url}/v1/metrics`, metric())).status).toBe(201);
    expect((await postJson(`${gateway.url}/v1/metrics?wait=false`, metric())).status).toBe(202);
    await settle();
    expect(lines()).toEqual([]);

    const refused = await request(`${gateway.url}/v1/metrics?wait=true`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer secret-looking' },
      body: '{"user_id":',
    });
    expect(refused.status).toBe(400);
    await settle();
    const [line, ...more] = lines();
    expect(more).toEqual([]);
    expect(line).toMatchObject({
      level: 30,
      msg: 'request completed',
      req: { method: 'POST', url: '/v1/metrics?wait=true', headers: { authorization: '[redacted]' } },
      res: { statusCode: 400 },
    });
    expect(line?.req.id).toEqual(expect.any(Number));
    expect(line?.responseTime).toEqual(expect.any(Number));
  });

  it('logs a refused bulk upload, not an accepted one', async () => {
    const { gateway, lines, settle } = logged;
    const before = lines().length;
    expect((await postNdjson(`${gateway.url}/v1/metrics/bulk`, `${JSON.stringify(metric())}\n`)).status).toBe(200);
    const refused = await request(`${gateway.url}/v1/metrics/bulk`, {
      method: 'POST',
      headers: { 'content-type': 'text/csv' },
      body: 'a,b',
    });
    expect(refused.status).toBe(415);
    await settle();
    expect(lines().slice(before)).toMatchObject([{ req: { url: '/v1/metrics/bulk' }, res: { statusCode: 415 } }]);
  });

  it('logs every request on an admin or read route, and none on a probe', async () => {
    const { gateway, lines, settle } = logged;
    const before = lines().length;
    expect((await request(`${gateway.url}/v1/users/1`)).status).toBe(200);
    expect((await postJson(`${gateway.url}/v1/users`, { name: 'two' })).status).toBe(201);
    expect((await request(`${gateway.url}/healthz`)).status).toBe(200);
    expect((await request(`${gateway.url}/no/such/route`)).status).toBe(404);
    await settle();
    expect(lines().slice(before)).toMatchObject([
      { req: { method: 'GET', url: '/v1/users/1' }, res: { statusCode: 200 } },
      { req: { method: 'POST', url: '/v1/users' }, res: { statusCode: 201 } },
      { req: { method: 'GET', url: '/no/such/route' }, res: { statusCode: 404 } },
    ]);
    const ids = lines().map((line) => line.req.id);
    expect(new Set(ids).size).toBe(ids.length);
  });
});

describe('ACCESS_LOG_SLOW_MS', () => {
  it('logs an ingest request that takes as long, whatever its answer', async () => {
    const { gateway, lines, settle } = await gatewayLogging({ ACCESS_LOG_SLOW_MS: '0' });
    try {
      expect((await postJson(`${gateway.url}/v1/metrics`, metric())).status).toBe(201);
      await settle();
      expect(lines()).toMatchObject([{ req: { url: '/v1/metrics' }, res: { statusCode: 201 } }]);
    } finally {
      await gateway.stop();
    }
  });
});

describe('ACCESS_LOG=all and off', () => {
  it('all: a line for every ingest request', async () => {
    const { gateway, lines, settle } = await gatewayLogging({ ACCESS_LOG: 'all' });
    try {
      for (let i = 0; i < 3; i++) expect((await postJson(`${gateway.url}/v1/metrics`, metric())).status).toBe(201);
      await request(`${gateway.url}/readyz`);
      await settle();
      expect(lines().map((line) => line.res.statusCode)).toEqual([201, 201, 201]);
    } finally {
      await gateway.stop();
    }
  });

  it('off: no access line at all, refused or not', async () => {
    const { gateway, lines, settle } = await gatewayLogging({ ACCESS_LOG: 'off' });
    try {
      expect((await postJson(`${gateway.url}/v1/metrics`, { nope: 1 })).status).toBe(400);
      expect((await request(`${gateway.url}/v1/users/1`)).status).toBe(200);
      expect((await request(`${gateway.url}/no/such/route`)).status).toBe(404);
      for (let i = 0; i < 2; i++) expect((await postJson(`${gateway.url}/v1/metrics`, metric())).status).toBe(201);
      await settle();
      expect(lines()).toEqual([]);
      // Unlogged, yet every request is counted on /metrics, by declared route and status.
      const exposition = (await request<string>(`${gateway.url}/metrics`)).body;
      const counted = (labels: string) =>
        Number(exposition.match(new RegExp(`^metrics_gateway_http_requests_total\\{${labels}\\} (\\d+)$`, 'm'))?.[1]);
      expect(counted('route="/v1/metrics",code="400"')).toBe(1);
      expect(counted('route="/v1/metrics",code="201"')).toBe(2);
      expect(counted('route="/v1/users/:id",code="200"')).toBe(1);
      expect(counted('route="unmatched",code="404"')).toBe(1);
    } finally {
      await gateway.stop();
    }
  });

  it('a value that is not a policy is refused at start', async () => {
    await expect(gatewayLogging({ ACCESS_LOG: 'some' })).rejects.toThrow(/ACCESS_LOG must be one of all, errors, off/);
  });
});
