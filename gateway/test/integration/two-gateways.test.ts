import { createTestDatabase, type TestDatabase } from '../helpers/database';
import { postJson, postNdjson, startTestGateway } from '../helpers/gateway';
import { metric } from '../helpers/metric';

// Two gateways started at the same moment on one empty database: migrations are serialized by an
// advisory lock, both come up, and they ingest side by side without storing an event twice.

let db: TestDatabase;
let gateways: Awaited<ReturnType<typeof startTestGateway>>[] = [];

beforeAll(async () => {
  db = await createTestDatabase({ migrated: false });
  gateways = await Promise.all([startTestGateway(db), startTestGateway(db), startTestGateway(db)]);
});

afterAll(async () => {
  await Promise.all(gateways.map((gateway) => gateway.stop()));
  await db?.drop();
});

it('applies the migrations once while every gateway waits and comes up', async () => {
  const { rows } = await db.pool.query('SELECT name FROM pgmigrations');
  expect(rows.map((row) => row.name)).toContain('0001_initial-schema');
  expect(new Set(rows.map((row) => row.name)).size).toBe(rows.length);
  for (const gateway of gateways) {
    expect((await fetch(`${gateway.url}/readyz`)).status).toBe(200);
  }
});

it('ingests through all of them at once, and stores an event_id sent to each only once', async () => {
  await db.pool.query(`INSERT INTO users (id, name) VALUES (1, 'shared')`);
  const eventIds = Array.from({ length: 50 }, (_, i) => `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`);
  const body = eventIds.map((eventId) => JSON.stringify(metric({ event_id: eventId }))).join('\n');
  const [bulk, ...singles] = await Promise.all([
    ...gateways.map((gateway) => postNdjson(`${gateway.url}/v1/metrics/bulk`, body)),
    ...gateways.flatMap((gateway) =>
      eventIds.slice(0, 10).map((eventId) => postJson(`${gateway.url}/v1/metrics`, metric({ event_id: eventId }))),
    ),
  ]);
  expect(bulk).toMatchObject({ status: 200, body: { accepted: 50, rejected: 0 } });
  expect(singles.every((response) => response.status === 200 || response.status === 201)).toBe(true);
  const { rows } = await db.pool.query<{ events: string; total: string }>(
    'SELECT count(DISTINCT event_id) AS events, count(*) AS total FROM user_metrics',
  );
  expect(rows[0]).toEqual({ events: '50', total: '50' });
});
