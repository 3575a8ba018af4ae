import { createApiKey } from '../../src/auth/api-keys';
import { ajv } from '../../src/contract/json-schema';
import { COMPONENTS, bulkProgressSchema, errorSchema } from '../../src/contract/schemas';
import { ROUTES, type Route, type RouteName } from '../../src/http/routes';
import type { Operation } from '../../src/http/openapi';
import { createTestDatabase, type TestDatabase } from '../helpers/database';
import { postJson, postNdjson, request, startTestGateway } from '../helpers/gateway';

// Real answers of every documented route, successes and errors, against their schemas in the
// contract (closed: a field the schema does not name fails too).

type Schema = { [key: string]: unknown };

/** `schema` with `additionalProperties: false` on every object that leaves it open. */
function closed(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(closed);
  if (schema === null || typeof schema !== 'object') return schema;
  const out: Schema = Object.fromEntries(Object.entries(schema).map(([key, value]) => [key, closed(value)]));
  if (out.type === 'object' && out.properties !== undefined && out.additionalProperties === undefined) {
    out.additionalProperties = false;
  }
  return out;
}

const errorWithProgress = {
  ...errorSchema,
  properties: { ...errorSchema.properties, ...bulkProgressSchema.properties },
};
const validators = new Map<object, ReturnType<typeof ajv.compile>>();
function validate(schema: object, body: unknown): string | undefined {
  let check = validators.get(schema);
  if (check === undefined) validators.set(schema, (check = ajv.compile(closed(schema) as object)));
  return check(body) ? undefined : ajv.errorsText(check.errors);
}

const checked = new Map<RouteName, Set<number>>();

/** Checks an answer of `name` against the schema its status has in the contract. */
function expectContract(name: RouteName, answer: { status: number; headers: Headers; body: unknown }): void {
  const route: Route & Partial<Operation> = ROUTES[name];
  const ok = route.ok?.[answer.status];
  let problem: string | undefined;
  if (ok !== undefined) {
    const [, content] = ok;
    const schema = COMPONENTS[content];
    if (schema !== undefined) problem = validate(schema, answer.body);
    else expect(answer.headers.get('content-type') ?? '').toContain(content === 'object' ? 'json' : content);
  } else {
    expect([...(route.errors ?? []), 500]).toContain(answer.status);
    const progress = route.bulkErrors?.includes(answer.status) === true;
    problem = validate(progress ? errorWithProgress : errorSchema, answer.body);
    if (answer.status === 429 || answer.status === 503) expect(answer.headers.get('retry-after')).toMatch(/^\d+$/);
  }
  expect({ name, status: answer.status, problem }).toEqual({ name, status: answer.status, problem: undefined });
  checked.set(name, (checked.get(name) ?? new Set()).add(answer.status));
}

let db: TestDatabase;
let gateway: Awaited<ReturnType<typeof startTestGateway>>;
let locked: Awaited<ReturnType<typeof startTestGateway>>;
let ingestKey: string;

const metric = {
  user_id: 1,
  device_id: 'contract-device',
  talked_time: 3,
  microphone_used: true,
  speaker_used: false,
  voice_sentiment: 0.5,
  time_recorded: '2026-01-02T03:04:05Z',
  event_id: '0f8fad5b-d9cb-469f-a165-70867728950e',
};

beforeAll(async () => {
  db = await createTestDatabase();
  gateway = await startTestGateway(db);
  locked = await startTestGateway(db, { AUTH_REQUIRED: 'true', METRICS_AUTH_REQUIRED: 'true' });
  ingestKey = (await createApiKey(db.pool, 'contract', 'ingest')).key;
});

afterAll(async () => {
  await locked?.stop();
  await gateway?.stop();
  await db?.drop();
});

describe('every answer matches its schema in the contract', () => {
  it('users and devices', async () => {
    const url = gateway.url;
    expectContract('createUser', await postJson(`${url}/v1/users`, { name: 'Ada', age: 36 }));
    expectContract('createUser', await postJson(`${url}/v1/users`, { name: '' }));
    expectContract('getUser', await request(`${url}/v1/users/1`));
    expectContract('getUser', await request(`${url}/v1/users/0`));
    expectContract('getUser', await request(`${url}/v1/users/99999`));
    expectContract('createDevice', await postJson(`${url}/v1/devices`, { id: 'contract-device', type: 'phone' }));
    expectContract('createDevice', await postJson(`${url}/v1/devices`, { id: 'contract-device' }));
    expectContract('getDevice', await request(`${url}/v1/devices/contract-device`));
    expectContract('getDevice', await request(`${url}/v1/devices/missing`));
  });

  it('ingest', async () => {
    const url = gateway.url;
    expectContract('postMetric', await postJson(`${url}/v1/metrics`, metric));
    expectContract('postMetric', await postJson(`${url}/v1/metrics?wait=false`, { ...metric, event_id: undefined }));
    expectContract('postMetric', await postJson(`${url}/v1/metrics`, { ...metric, talked_time: -1 }));
    expectContract('postMetric', await postJson(`${url}/v1/metrics`, { ...metric, user_id: 77 }));
    expectContract('postMetric', await request(`${url}/v1/metrics`, { method: 'POST', body: 'x' }));
    const lines = `${JSON.stringify({ ...metric, event_id: undefined })}\n{"user_id":1}\nnot json\n`;
    expectContract('postMetricsBulk', await postNdjson(`${url}/v1/metrics/bulk`, lines));
    expectContract('postMetricsBulk', await postNdjson(`${url}/v1/metrics/bulk?wait=false`, lines));
    expectContract('postMetricsBulk', await postNdjson(`${url}/v1/metrics/bulk?wait=maybe`, lines));
    expectContract('postMetricsBulk', await postJson(`${url}/v1/metrics/bulk`, metric));
  });

  it('reads', async () => {
    const url = gateway.url;
    expectContract('listUserMetrics', await request(`${url}/v1/users/1/metrics?limit=1`));
    expectContract('listUserMetrics', await request(`${url}/v1/users/1/metrics?limit=0`));
    expectContract('listUserMetrics', await request(`${url}/v1/users/99999/metrics`));
    expectContract('summarizeUserMetrics', await request(`${url}/v1/users/1/summary`));
    expectContract('summarizeUserMetrics', await request(`${url}/v1/users/1/summary?from=2026-02-30T00:00:00Z`));
    expectContract('summarizeUserMetrics', await request(`${url}/v1/users/99999/summary`));
  });

  it('operations and pages', async () => {
    const url = gateway.url;
    expectContract('health', await request(`${url}/healthz`));
    expectContract('ready', await request(`${url}/readyz`));
    expectContract('prometheusMetrics', await request(`${url}/metrics`));
    expectContract('openApiDocument', await request(`${url}/openapi.json`));
    expectContract('statusPage', await request(`${url}/`));
    expectContract('stats', await request(`${url}/v1/stats`));
    expectContract('docsPage', await request(`${url}/docs/`));
  });

  it('refusals of the key check', async () => {
    const url = locked.url;
    const ingest = { authorization: `Bearer ${ingestKey}` };
    expectContract('postMetric', await postJson(`${url}/v1/metrics`, metric));
    expectContract('createUser', await postJson(`${url}/v1/users`, { name: 'Ada' }, ingest));
    expectContract('getUser', await request(`${url}/v1/users/1`, { headers: ingest }));
    expectContract('stats', await request(`${url}/v1/stats`));
    expectContract('stats', await request(`${url}/v1/stats`, { headers: ingest }));
  });

  it('covered every documented route, with a check that can fail', () => {
    expect(validate(COMPONENTS.User as object, { id: 1, name: 'x', age: null, created_at: 'now' })).toMatch(/format/);
    expect(validate(COMPONENTS.Healthy as object, { status: 'ok', extra: 1 })).toMatch(/additional/);
    const documented = (Object.keys(ROUTES) as RouteName[]).filter((name) => 'summary' in ROUTES[name]);
    expect(documented.filter((name) => !checked.has(name))).toEqual([]);
  });
});
