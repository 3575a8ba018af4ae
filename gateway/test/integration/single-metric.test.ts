import { createTestDatabase, type TestDatabase } from '../helpers/database';
import { postJson, request, startTestGateway } from '../helpers/gateway';

const DEVICE = 'id847-gj-335-Vow6DhCP6';
const metric = {
  user_id: 1,
  device_id: DEVICE,
  talked_time: 42.5,
  microphone_used: true,
  speaker_used: false,
  voice_sentiment: 0.75,
  time_recorded: '2026-01-15T08:30:00.123+01:00',
};

let db: TestDatabase;
let gateway: Awaited<ReturnType<typeof startTestGateway>>;

async function metricCount(where = 'true', params: unknown[] = []): Promise<number> {
  const { rows } = await db.pool.query<{ n: string }>(`SELECT count(*) AS n FROM user_metrics WHERE ${where}`, params);
  return Number(rows[0]?.n);
}

beforeAll(async () => {
  db = await createTestDatabase();
  await db.pool.query(`INSERT INTO users (id, name, age) VALUES (1, 'Ada', 36), (2, 'Grace', null)`);
  await db.pool.query(`INSERT INTO devices (id, type, name) VALUES ($1, 'Android 8.1', 'vivo V11i')`, [DEVICE]);
  gateway = await startTestGateway(db);
});

afterAll(async () => {
  await gateway?.stop();
  await db?.drop();
});

describe('POST /v1/metrics', () => {
  it('answers 201 once the row is committed, with every value stored', async () => {
    const response = await postJson(`${gateway.url}/v1/metrics`, metric);
    expect(response).toMatchObject({ status: 201, body: { status: 'stored' } });
    expect(response.body).not.toHaveProperty('event_id');
    const { rows } = await db.pool.query(
      `SELECT user_id, device_id, talked_time, microphone_used, speaker_used, voice_sentiment,
              time_recorded = '2026-01-15T07:30:00.123Z' AS time_ok, event_id, received_at > now() - interval '1 minute' AS recent
         FROM user_metrics`,
    );
    expect(rows).toEqual([
      {
        user_id: 1,
        device_id: DEVICE,
        talked_time: 42.5,
        microphone_used: true,
        speaker_used: false,
        voice_sentiment: 0.75,
        time_ok: true,
        event_id: null,
        recent: true,
      },
    ]);
  });

  it('answers 202 with ?wait=false, and the row lands shortly after', async () => {
    const before = await metricCount('user_id = 2');
    const response = await postJson(`${gateway.url}/v1/metrics?wait=false`, { ...metric, user_id: 2, device_id: null });
    expect(response).toMatchObject({ status: 202, body: { status: 'queued' } });
    await gateway.batcher.drain();
    expect(await metricCount('user_id = 2')).toBe(before + 1);
  });

  it('echoes event_id and stores a repeated event_id once', async () => {
    const eventId = '2b7c1a3e-7f4d-4e2a-9c1b-5d6e7f8a9b0c';
    const first = await postJson(`${gateway.url}/v1/metrics`, { ...metric, event_id: eventId });
    const again = await postJson(`${gateway.url}/v1/metrics`, { ...metric, event_id: eventId, talked_time: 1 });
    expect(first).toMatchObject({ status: 201, body: { status: 'stored', event_id: eventId } });
    expect(again).toMatchObject({ status: 201, body: { status: 'stored', event_id: eventId } });
    expect(await metricCount('event_id = $1', [eventId])).toBe(1);
    // The same key for another user is another event.
    await postJson(`${gateway.url}/v1/metrics`, { ...metric, user_id: 2, event_id: eventId });
    expect(await metricCount('event_id = $1', [eventId])).toBe(2);
  });

  it('stores concurrent repeats of one event_id once', async () => {
    const eventId = '7e0d1f2a-3b4c-4d5e-8f60-718293a4b5c6';
    const responses = await Promise.all(
      Array.from({ length: 20 }, () => postJson(`${gateway.url}/v1/metrics`, { ...metric, event_id: eventId })),
    );
    expect(responses.map((r) => r.status)).toEqual(Array(20).fill(201));
    expect(await metricCount('event_id = $1', [eventId])).toBe(1);
  });

  it('refuses a schema violation with 400 validation_failed and JSON pointers', async () => {
    const before = await metricCount();
    const { talked_time, ...rest } = metric;
    const response = await postJson(`${gateway.url}/v1/metrics`, { ...rest, talk_time: talked_time, user_id: 0 });
    expect(response.status).toBe(400);
    expect(response.body.error).toBe('validation_failed');
    expect(response.body.details.map((d: { path: string }) => d.path).sort()).toEqual([
      '/talk_time',
      '/talked_time',
      '/user_id',
    ]);
    expect(await metricCount()).toBe(before);
  });

  it('refuses unknown users and devices with 422 unknown_reference', async () => {
    const user = await postJson(`${gateway.url}/v1/metrics`, { ...metric, user_id: 404 });
    expect(user).toMatchObject({ status: 422, body: { error: 'unknown_reference', details: [{ path: '/user_id' }] } });
    const device = await postJson(`${gateway.url}/v1/metrics`, { ...metric, device_id: 'no-such-device' });
    expect(device).toMatchObject({
      status: 422,
      body: { error: 'unknown_reference', details: [{ path: '/device_id' }] },
    });
  });

  it('accepts a user registered a moment ago by someone else', async () => {
    await postJson(`${gateway.url}/v1/metrics`, { ...metric, user_id: 77 }); // a miss, not remembered
    await db.pool.query(`INSERT INTO users (id, name) VALUES (77, 'Late Registrant')`);
    expect((await postJson(`${gateway.url}/v1/metrics`, { ...metric, user_id: 77 })).status).toBe(201);
  });

  it.each([
    ['malformed JSON', 400, 'invalid_json', '{"user_id": 1,'],
    ['an empty body', 400, 'validation_failed', ''],
    ['a JSON array', 400, 'validation_failed', '[1,2]'],
  ])('answers %s with %d %s', async (_name, status, error, body) => {
    const response = await postJson(`${gateway.url}/v1/metrics`, body);
    expect(response).toMatchObject({
      status,
      body: { error, message: expect.any(String), details: expect.any(Array) },
    });
  });

  it('answers 415 for another Content-Type and 413 for a body over METRIC_MAX_BYTES', async () => {
    const text = await request(`${gateway.url}/v1/metrics`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain' },
      body: JSON.stringify(metric),
    });
    expect(text).toMatchObject({ status: 415, body: { error: 'unsupported_media_type' } });
    const huge = await postJson(`${gateway.url}/v1/metrics`, { ...metric, device_id: 'x'.repeat(20_000) });
    expect(huge).toMatchObject({ status: 413, body: { error: 'payload_too_large' } });
  });

  it('answers 400 for a bad ?wait value', async () => {
    const response = await postJson(`${gateway.url}/v1/metrics?wait=perhaps`, metric);
    expect(response).toMatchObject({
      status: 400,
      body: { error: 'validation_failed', details: [{ path: '/query/wait' }] },
    });
  });

  it('answers unknown routes with a JSON 404', async () => {
    expect(await request(`${gateway.url}/v1/nothing`)).toMatchObject({ status: 404, body: { error: 'not_found' } });
  });
});
