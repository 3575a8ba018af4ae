import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../../src/db/dev-postgres';
import type { TestDatabase } from '../helpers/database';
import { postJson, request, startTestGateway } from '../helpers/gateway';
import { testLogger } from '../helpers/logger';
import { numberedMetric } from '../helpers/numbered-metrics';
import { until } from '../helpers/until';

// PostgreSQL stops and starts again under load. The test runs a PostgreSQL of its own, so it can stop
// it freely. While it is down: the process stays up, /readyz answers 503, wait=true requests get 503
// (never a false success, never a hang), wait=false rows are spooled; once it is back the gateway
// recovers by itself within seconds and every acknowledged row is stored exactly once.

let dataDir: string;
let server: EmbeddedPostgres;
let gateway: Awaited<ReturnType<typeof startTestGateway>>;

// talked_time names the request: n / 1000 keeps any n of the run inside the 0 .. 86400 s range.
const metric = (n: number) => numberedMetric(n, { scale: 1000 });

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'mg-outage-'));
  server = await startEmbeddedPostgres({ dataDir, logger: testLogger });
  const gatewayUrl = server.url.replace(/\/postgres$/, '/gateway');
  const admin = new Client({ connectionString: server.url });
  await admin.connect();
  await admin.query('CREATE DATABASE gateway');
  await admin.end();
  gateway = await startTestGateway({ url: gatewayUrl } as TestDatabase, { ACK_TIMEOUT_MS: '1500' });
  const setup = new Client({ connectionString: gatewayUrl });
  await setup.connect();
  await setup.query(`INSERT INTO users (id, name) VALUES (1, 'one')`);
  await setup.end();
}, 60_000);

afterAll(async () => {
  await gateway?.stop();
  await server?.stop();
  await rm(dataDir, { recursive: true, force: true });
});

it('answers 503 while PostgreSQL is down, recovers by itself, and stores every acknowledged row once', async () => {
  const acknowledged: number[] = [];
  const unavailable: number[] = [];
  let next = 0;
  let running = true;
  const client = async (): Promise<void> => {
    while (running) {
      const n = next++;
      const wait = n % 2 === 0;
      const response = await postJson(`${gateway.url}/v1/metrics${wait ? '' : '?wait=false'}`, metric(n));
      if (response.status === 201 || response.status === 202) acknowledged.push(n);
      else if (response.status === 503 || response.status === 429) unavailable.push(n);
      else throw new Error(`unexpected ${response.status}: ${JSON.stringify(response.body)}`);
    }
  };
  const load = Promise.all(Array.from({ length: 8 }, client));
  await new Promise((resolve) => setTimeout(resolve, 500));

  await server.stop();
  await until(async () => (await request(`${gateway.url}/readyz`)).status === 503, '/readyz 503', 20_000);
  expect((await request(`${gateway.url}/healthz`)).status).toBe(200);
  const started = Date.now();
  const down = await postJson(`${gateway.url}/v1/metrics`, metric(-1 + 1_000_000));
  expect(down).toMatchObject({ status: 503, body: { error: 'unavailable' } });
  expect(down.headers.get('retry-after')).toMatch(/^\d+$/);
  expect(Date.now() - started).toBeLessThan(5000); // never a hang
  await new Promise((resolve) => setTimeout(resolve, 1000));

  server = await startEmbeddedPostgres({ dataDir, port: server.port, logger: testLogger });
  // Typically 1-5 s (the backoff tops out at 5 s); the bound is loose for a busy CI machine.
  await until(async () => (await request(`${gateway.url}/readyz`)).status === 200, '/readyz 200', 30_000);
  // Each probe sends a value of its own: a probe answered 503 stays buffered and is committed later.
  let probe = 2_000_000;
  const probeStored = async (): Promise<boolean> =>
    (await postJson(`${gateway.url}/v1/metrics`, metric(probe++))).status === 201;
  await until(probeStored, 'a probe stored', 30_000);
  running = false;
  await load;
  await gateway.batcher.drain();

  expect(unavailable.length).toBeGreaterThan(0);
  const { rows } = await gateway.pool.query<{ t: number }>('SELECT talked_time AS t FROM user_metrics');
  const stored = rows.map((row) => row.t);
  expect(stored.length).toBe(new Set(stored).size); // none twice
  const storedSet = new Set(stored);
  expect(acknowledged.filter((n) => !storedSet.has(n / 1000))).toEqual([]);
}, 90_000);
