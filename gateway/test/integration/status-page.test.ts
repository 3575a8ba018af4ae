import { createApiKey } from '../../src/auth/api-keys';
import type { Gateway } from '../../src/gateway';
import { createTestDatabase, type TestDatabase } from '../helpers/database';
import { postJson, postNdjson, request, startTestGateway } from '../helpers/gateway';
import { metric } from '../helpers/metric';
import { startGatewayProcess } from '../helpers/process';
import { until } from '../helpers/until';

// GET / (the status page), its files, and GET /v1/stats, over real HTTP: the figures move by exactly
// what was sent, the refusals are listed as their answers said, and the page asks for a key only
// where /metrics does. The page in a real browser is status-page-browser.test.ts.

let db: TestDatabase;
let gateway: Gateway;

beforeAll(async () => {
  db = await createTestDatabase();
  await db.pool.query(`INSERT INTO users (id, name) VALUES (1, 'one')`);
  gateway = await startTestGateway(db);
});

afterAll(async () => {
  await gateway?.stop();
  await db?.drop();
});

describe('GET /', () => {
  it('serves the page, which loads only its own files', async () => {
    const response = await fetch(`${gateway.url}/`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/html/);
    expect(response.headers.get('content-security-policy')).toMatch(/default-src 'none'.*script-src 'self'/);
    const html = await response.text();
    expect(html).toContain('status/status.js');
    expect(html).toContain('status/status.css');
    expect(html).not.toMatch(/(src|href)="(https?:)?\/\//); // nothing from the network
  });

  it.each([
    ['status.js', /javascript/],
    ['status.css', /^text\/css/],
  ])('serves %s from gateway/static', async (file, type) => {
    const response = await fetch(`${gateway.url}/status/${file}`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(type);
    expect(response.headers.get('x-content-type-options')).toBe('nosniff');
    expect((await response.text()).length).toBeGreaterThan(500);
  });

  it('is found by the built gateway too (dist/), as `npm start` and the Docker image run it', async () => {
    const built = await startGatewayProcess({ DATABASE_URL: db.url, SPOOL: 'false', LOG_LEVEL: 'warn' });
    try {
      for (const path of ['/', '/status/status.js', '/status/status.css', '/v1/stats']) {
        expect({ path, status: (await fetch(`${built.url}${path}`)).status }).toEqual({ path, status: 200 });
      }
    } finally {
      built.child.kill('SIGTERM');
      await built.exited;
    }
  });

  it('answers 404 in JSON for a file that is not there', async () => {
    const response = await request(`${gateway.url}/status/nothing.js`);
    expect(response).toMatchObject({ status: 404, body: { error: 'not_found' } });
  });
});

describe('GET /v1/stats', () => {
  it('counts exactly the rows sent, and lists the refused ones as their answers said', async () => {
    const before = (await request(`${gateway.url}/v1/stats`)).body;
    expect(before.buffer).toEqual({ depth: 0, capacity: 200_000 });

    const lines = [
      JSON.stringify(metric({ talked_time: 1 })),
      JSON.stringify(metric({ talked_time: 2, talk_time: 3 })), // line 2: unknown field
      '',
      '{"user_id": 1,', // line 4: not JSON
      JSON.stringify(metric({ talked_time: 5, user_id: 999 })), // line 5: no such user
      JSON.stringify(metric({ talked_time: 6 })),
    ];
    const bulk = await postNdjson(`${gateway.url}/v1/metrics/bulk`, `${lines.join('\n')}\n`);
    expect(bulk.body).toMatchObject({ accepted: 2, rejected: 3 });
    expect((await postJson(`${gateway.url}/v1/metrics`, metric({ talked_time: 7 }))).status).toBe(201);
    expect((await postJson(`${gateway.url}/v1/metrics`, metric({ talked_time: -1 }))).status).toBe(400);
    expect((await postJson(`${gateway.url}/v1/metrics`, '{"broken')).status).toBe(400);

    const { status, headers, body } = await request(`${gateway.url}/v1/stats`);
    expect(status).toBe(200);
    expect(headers.get('cache-control')).toBe('no-store');
    expect(body.totals.accepted_rows - before.totals.accepted_rows).toBe(3);
    expect(body.totals.rejected_rows - before.totals.rejected_rows).toBe(5);
    expect(body.totals.flushed_rows - before.totals.flushed_rows).toBe(3);
    const reasons = Object.fromEntries(body.rejected_by_reason.map((r: any) => [r.reason, r.at_door]));
    expect(reasons).toMatchObject({ validation_failed: 2, invalid_json: 2, unknown_reference: 1, overloaded: 0 });
    expect(body.ingest.accepted_rows_per_second).toBeGreaterThan(0);
    expect(body.flush.batches).toBeGreaterThan(0);
    expect(body.flush.mean_latency_ms).toBeGreaterThan(0);

    // Newest first: the two single metrics, then the bulk upload's lines from the last up.
    expect(body.recent_rejections.map((r: any) => [r.endpoint, r.line, r.error])).toEqual([
      ['single', null, 'invalid_json'],
      ['single', null, 'validation_failed'],
      ['bulk', 5, 'unknown_reference'],
      ['bulk', 4, 'invalid_json'],
      ['bulk', 2, 'validation_failed'],
    ]);
    expect(body.recent_rejections[1].message).toMatch(/^\/talked_time: /);
    expect(body.recent_rejections[2].message).toBe('/user_id: no user with id 999');
    expect(body.recent_rejections[4].message).toMatch(/\/talk_time/);
    for (const entry of body.recent_rejections) expect(Date.parse(entry.time)).toBeGreaterThan(Date.now() - 60_000);
  });

  it('keeps only the last 20 rejections, and never whole lines', async () => {
    const long = `{"user_id": 1, "note": "${'x'.repeat(10_000)}"}`;
    const body = `${Array.from({ length: 50 }, () => long).join('\n')}\n`;
    expect((await postNdjson(`${gateway.url}/v1/metrics/bulk`, body)).body).toMatchObject({ rejected: 50 });
    const { recent_rejections: recent } = (await request(`${gateway.url}/v1/stats`)).body;
    expect(recent).toHaveLength(20);
    expect(recent.map((r: any) => r.line)).toEqual(Array.from({ length: 20 }, (_, i) => 50 - i));
    for (const entry of recent) expect(entry.message.length).toBeLessThanOrEqual(200);
    expect(JSON.stringify(recent)).not.toContain('x'.repeat(100));
  });

  it('draws a point a second for the chart', async () => {
    // Two points taken after this test began, however long a loaded machine makes that take.
    const since = Date.now();
    let history: any;
    const twoNewPoints = async (): Promise<boolean> => {
      history = (await request(`${gateway.url}/v1/stats`)).body.history;
      return history.points.filter((p: { t: number }) => p.t > since).length >= 2;
    };
    await until(twoNewPoints, 'two points of the chart taken after the test began', 15_000);
    expect(history.interval_seconds).toBe(1);
    const [a, b] = history.points.slice(-2);
    expect(a.t).toBeGreaterThan(since);
    // A timer never fires early; a busy machine may make one late, by a second at worst.
    expect(b.t - a.t).toBeGreaterThanOrEqual(900);
    expect(b.t - a.t).toBeLessThanOrEqual(2000);
  });
});

describe('with AUTH_REQUIRED=true', () => {
  let key: string;
  let open: Gateway;
  let strict: Gateway;

  beforeAll(async () => {
    key = (await createApiKey(db.pool, 'status-viewer', 'ingest')).key;
    open = await startTestGateway(db, { AUTH_REQUIRED: 'true' });
    strict = await startTestGateway(db, { AUTH_REQUIRED: 'true', METRICS_AUTH_REQUIRED: 'true' });
  });

  afterAll(async () => {
    await open?.stop();
    await strict?.stop();
  });

  it('leaves the page and its figures open, like /metrics', async () => {
    for (const path of ['/', '/status/status.js', '/v1/stats']) {
      expect({ path, status: (await fetch(`${open.url}${path}`)).status }).toEqual({ path, status: 200 });
    }
  });

  it('with METRICS_AUTH_REQUIRED=true, puts the figures behind any key but leaves the page open', async () => {
    expect((await fetch(`${strict.url}/`)).status).toBe(200);
    expect((await fetch(`${strict.url}/status/status.js`)).status).toBe(200);
    expect(await request(`${strict.url}/v1/stats`)).toMatchObject({ status: 401, body: { error: 'unauthorized' } });
    const withKey = await request(`${strict.url}/v1/stats`, { headers: { authorization: `Bearer ${key}` } });
    expect(withKey.status).toBe(200);
    expect(withKey.body.buffer.capacity).toBe(200_000);
  });

  it('does not list requests refused for their key as rejected lines', async () => {
    expect((await postJson(`${strict.url}/v1/metrics`, metric({ talked_time: 1 }))).status).toBe(401);
    const { body } = await request(`${strict.url}/v1/stats`, { headers: { authorization: `Bearer ${key}` } });
    expect(body.recent_rejections).toEqual([]);
  });
});
