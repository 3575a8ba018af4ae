import { performance } from 'node:perf_hooks';
import { createApiKey, generateApiKey } from '../../src/auth/api-keys';
import type { Gateway } from '../../src/gateway';
import { createTestDatabase, type TestDatabase } from '../helpers/database';
import { postJson, startTestGateway } from '../helpers/gateway';
import { metric } from '../helpers/metric';

// A key the gateway has not cached costs a query on the pool that COPY uses, so a flood of random
// keys from one address gets a budget of lookups (AUTH_LOOKUP_RATE_PER_ADDRESS, _BURST_) and then
// 429 without a query, while clients whose keys are cached go on as before.

const RATE = 2;
const BURST = 10;
const FLOOD = 100;

let db: TestDatabase;
let gateway: Gateway;
let key: string;

beforeAll(async () => {
  db = await createTestDatabase();
  await db.pool.query(`INSERT INTO users (id, name) VALUES (1, 'one')`);
  // Made before the gateway listens for key changes: the announcement of a key made later could arrive
  // after its first lookup was cached and empty that entry (a loaded machine did), costing one more lookup.
  ({ key } = await createApiKey(db.pool, 'fleet', 'ingest'));
  gateway = await startTestGateway(db, {
    AUTH_REQUIRED: 'true',
    AUTH_LOOKUP_RATE_PER_ADDRESS: String(RATE),
    AUTH_LOOKUP_BURST_PER_ADDRESS: String(BURST),
  });
});

afterAll(async () => {
  await gateway?.stop();
  await db?.drop();
});

const send = (key: string) =>
  postJson(`${gateway.url}/v1/metrics?wait=false`, metric(), { authorization: `Bearer ${key}` });

it('answers a flood of unknown keys from one address 429 past its budget, without a query, and still serves a known key', async () => {
  expect((await send(key)).status).toBe(202);
  // Every key lookup is one query on the gateway's request pool (findActiveApiKey).
  const queries = jest.spyOn(gateway.requestPool, 'query');
  const keyLookups = (): number =>
    queries.mock.calls.filter(([sql]) => typeof sql === 'string' && sql.includes('api_keys')).length;

  const started = performance.now();
  const answers = await Promise.all(Array.from({ length: FLOOD }, () => send(generateApiKey())));
  const elapsedSeconds = (performance.now() - started) / 1000;
  const statuses = answers.map((answer) => answer.status);
  const unauthorized = statuses.filter((status) => status === 401).length;
  const overloaded = answers.filter((answer) => answer.status === 429);

  // The burst at least (less the token the known key's first lookup took), and no more than the burst
  // and what refilled while the flood went on.
  const budget = BURST + Math.ceil(elapsedSeconds * RATE);
  expect(unauthorized).toBeGreaterThanOrEqual(BURST - 1);
  expect(unauthorized).toBeLessThanOrEqual(budget);
  expect(unauthorized + overloaded.length).toBe(FLOOD);
  expect(keyLookups()).toBe(unauthorized);
  for (const answer of overloaded) {
    expect(answer.body).toMatchObject({ error: 'overloaded', message: expect.stringMatching(/AUTH_LOOKUP_RATE/) });
    expect(Number(answer.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
  }

  // The same address, with the key it had before: cached, so no lookup and no budget needed.
  expect((await send(key)).status).toBe(202);
  expect(keyLookups()).toBe(unauthorized);
  queries.mockRestore();
});
