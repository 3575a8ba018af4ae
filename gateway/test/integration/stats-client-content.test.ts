import { createApiKey } from '../../src/auth/api-keys';
import type { Gateway } from '../../src/gateway';
import { createTestDatabase, type TestDatabase } from '../helpers/database';
import { postJson, postNdjson, request, startTestGateway } from '../helpers/gateway';
import { metric } from '../helpers/metric';

// What a client sent (ids, field names, line text) is never shown without an admin key: GET /v1/stats
// is open (like /metrics) with AUTH_REQUIRED=true, so its recent rejections carry counts, times,
// endpoints, line numbers and error codes only, and their messages only for an admin key.

// Markers that the hostile requests below carry in every place a message could echo them.
const FIELD = 'leaked_field_name_q7x';
const DEVICE_ID = 'leaked-device-id-k3v';
const USER_ID = 987_654_321;
// Short: V8 quotes a short line that is not JSON whole in its message, a long one in part.
const LINE_TEXT = 'zq9w';
const MARKERS = [FIELD, DEVICE_ID, String(USER_ID), LINE_TEXT];

let db: TestDatabase;
let ingestKey: string;
let adminKey: string;

const bearer = (key: string): Record<string, string> => ({ authorization: `Bearer ${key}` });

/** Refusals that carry each marker: unknown fields, unknown ids, lines that are not JSON. */
async function sendHostileRequests(url: string, headers: Record<string, string>): Promise<void> {
  const lines = [
    JSON.stringify(metric({ talked_time: 1 })),
    JSON.stringify(metric({ talked_time: 2, [FIELD]: 1 })),
    JSON.stringify(metric({ talked_time: 3, device_id: DEVICE_ID })),
    JSON.stringify(metric({ talked_time: 4, user_id: USER_ID })),
    `{"user_id": 1, "${LINE_TEXT}`,
    `${LINE_TEXT} {`,
  ];
  const bulk = await postNdjson(`${url}/v1/metrics/bulk`, `${lines.join('\n')}\n`, headers);
  expect(bulk.body).toMatchObject({ accepted: 1, rejected: 5 });
  expect((await postJson(`${url}/v1/metrics`, metric({ talked_time: 5, [FIELD]: 2 }), headers)).status).toBe(400);
  expect((await postJson(`${url}/v1/metrics`, metric({ talked_time: 6, device_id: DEVICE_ID }), headers)).status).toBe(
    422,
  );
  expect((await postJson(`${url}/v1/metrics`, `{"user_id": "${LINE_TEXT}`, headers)).status).toBe(400);
}

function expectNoClientContent(body: any): void {
  const text = JSON.stringify(body);
  for (const marker of MARKERS) expect({ marker, found: text.includes(marker) }).toEqual({ marker, found: false });
  expect(body.rejection_messages).toBe('need_admin_key');
  expect(body.recent_rejections.length).toBeGreaterThanOrEqual(8);
  for (const entry of body.recent_rejections) {
    expect(Object.keys(entry).sort()).toEqual(['endpoint', 'error', 'line', 'time']);
    expect(entry.error).toMatch(/^[a-z_]+$/);
  }
}

function expectMessages(body: any): void {
  expect(body.rejection_messages).toBe('shown');
  const messages = body.recent_rejections.map((entry: any) => entry.message).join('\n');
  for (const marker of MARKERS) expect({ marker, found: messages.includes(marker) }).toEqual({ marker, found: true });
}

beforeAll(async () => {
  db = await createTestDatabase();
  await db.pool.query(`INSERT INTO users (id, name) VALUES (1, 'one')`);
  ingestKey = (await createApiKey(db.pool, 'stats-ingest', 'ingest')).key;
  adminKey = (await createApiKey(db.pool, 'stats-admin', 'admin')).key;
});

afterAll(async () => {
  await db?.drop();
});

describe('with AUTH_REQUIRED=true, /v1/stats open', () => {
  let gateway: Gateway;

  beforeAll(async () => {
    gateway = await startTestGateway(db, { AUTH_REQUIRED: 'true' });
    await sendHostileRequests(gateway.url, bearer(ingestKey));
  });

  afterAll(async () => {
    await gateway?.stop();
  });

  it('without a key: counts, times, endpoints, line numbers and codes, nothing the clients sent', async () => {
    const { status, body } = await request(`${gateway.url}/v1/stats`);
    expect(status).toBe(200);
    expectNoClientContent(body);
    expect(body.recent_rejections.map((entry: any) => [entry.endpoint, entry.line, entry.error])).toEqual([
      ['single', null, 'invalid_json'],
      ['single', null, 'unknown_reference'],
      ['single', null, 'validation_failed'],
      ['bulk', 6, 'invalid_json'],
      ['bulk', 5, 'invalid_json'],
      ['bulk', 4, 'unknown_reference'],
      ['bulk', 3, 'unknown_reference'],
      ['bulk', 2, 'validation_failed'],
    ]);
    expect(body.totals.rejected_rows).toBe(8);
  });

  it('with an ingest key: still no messages', async () => {
    const { status, body } = await request(`${gateway.url}/v1/stats`, { headers: bearer(ingestKey) });
    expect(status).toBe(200);
    expectNoClientContent(body);
  });

  it('with an admin key: the messages, as the clients were answered', async () => {
    const { status, body } = await request(`${gateway.url}/v1/stats`, { headers: bearer(adminKey) });
    expect(status).toBe(200);
    expectMessages(body);
  });

  it('with a key that is not valid: 401, not the open answer', async () => {
    const response = await request(`${gateway.url}/v1/stats`, { headers: bearer(`mgk_${'A'.repeat(43)}`) });
    expect(response).toMatchObject({ status: 401, body: { error: 'unauthorized' } });
  });

  it('leaves the probes open even with a key that is not valid', async () => {
    expect((await fetch(`${gateway.url}/healthz`, { headers: bearer('not-a-key') })).status).toBe(200);
  });
});

describe('with AUTH_REQUIRED=true and METRICS_AUTH_REQUIRED=true', () => {
  let gateway: Gateway;

  beforeAll(async () => {
    gateway = await startTestGateway(db, { AUTH_REQUIRED: 'true', METRICS_AUTH_REQUIRED: 'true' });
    await sendHostileRequests(gateway.url, bearer(ingestKey));
  });

  afterAll(async () => {
    await gateway?.stop();
  });

  it('an ingest key opens the figures, not the messages; an admin key opens both', async () => {
    expect((await request(`${gateway.url}/v1/stats`)).status).toBe(401);
    expectNoClientContent((await request(`${gateway.url}/v1/stats`, { headers: bearer(ingestKey) })).body);
    expectMessages((await request(`${gateway.url}/v1/stats`, { headers: bearer(adminKey) })).body);
  });
});

describe('with AUTH_REQUIRED=false', () => {
  let gateway: Gateway;

  beforeAll(async () => {
    gateway = await startTestGateway(db);
    await sendHostileRequests(gateway.url, {});
  });

  afterAll(async () => {
    await gateway?.stop();
  });

  it('everything is open, messages included, as before', async () => {
    expectMessages((await request(`${gateway.url}/v1/stats`)).body);
  });
});
