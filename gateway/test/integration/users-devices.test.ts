import { createTestDatabase, type TestDatabase } from '../helpers/database';
import { postJson, request, startTestGateway } from '../helpers/gateway';
import { metric } from '../helpers/metric';

let db: TestDatabase;
let gateway: Awaited<ReturnType<typeof startTestGateway>>;

beforeAll(async () => {
  db = await createTestDatabase();
  gateway = await startTestGateway(db);
});

afterAll(async () => {
  await gateway?.stop();
  await db?.drop();
});

describe('users', () => {
  it('registers a user (201 with the stored row) and reads it back', async () => {
    const created = await postJson(`${gateway.url}/v1/users`, { name: 'Zoë Ñúñez', age: 29 });
    expect(created).toMatchObject({
      status: 201,
      body: { id: expect.any(Number), name: 'Zoë Ñúñez', age: 29, created_at: expect.any(String) },
    });
    const read = await request(`${gateway.url}/v1/users/${created.body.id}`);
    expect(read).toEqual(expect.objectContaining({ status: 200, body: created.body }));
  });

  it('accepts metrics for a user the moment it is registered', async () => {
    const created = await postJson(`${gateway.url}/v1/users`, { name: 'Fresh' });
    expect(created.body.age).toBeNull();
    expect(
      (await postJson(`${gateway.url}/v1/metrics`, metric({ user_id: created.body.id, device_id: null }))).status,
    ).toBe(201);
  });

  it('refuses invalid users with 400 and pointers', async () => {
    const response = await postJson(`${gateway.url}/v1/users`, { name: '', age: -1, nick: 'x' });
    expect(response.status).toBe(400);
    expect(response.body.details.map((d: { path: string }) => d.path).sort()).toEqual(['/age', '/name', '/nick']);
    expect((await postJson(`${gateway.url}/v1/users`, '{"name":')).body.error).toBe('invalid_json');
  });

  it('answers 404 for a missing user and 400 for an id that is no int4', async () => {
    expect(await request(`${gateway.url}/v1/users/999999`)).toMatchObject({
      status: 404,
      body: { error: 'not_found' },
    });
    for (const id of ['abc', '0', '2147483648', '1.5', '-3']) {
      expect(await request(`${gateway.url}/v1/users/${id}`)).toMatchObject({
        status: 400,
        body: { error: 'validation_failed' },
      });
    }
  });
});

describe('devices', () => {
  const device = { id: 'id774-wc-935-uJq2AcOUx', type: 'Android 8.1', name: 'vivo V11i' };

  it('registers a device, reads it back, and answers 409 for the same id again', async () => {
    const created = await postJson(`${gateway.url}/v1/devices`, device);
    expect(created).toMatchObject({ status: 201, body: { ...device, created_at: expect.any(String) } });
    expect(await request(`${gateway.url}/v1/devices/${device.id}`)).toMatchObject({ status: 200, body: created.body });
    const again = await postJson(`${gateway.url}/v1/devices`, { ...device, name: 'other' });
    expect(again).toMatchObject({ status: 409, body: { error: 'already_exists' } });
    const user = await postJson(`${gateway.url}/v1/users`, { name: 'Device Owner' });
    expect(
      (await postJson(`${gateway.url}/v1/metrics`, metric({ user_id: user.body.id, device_id: device.id }))).status,
    ).toBe(201);
  });

  it('reads a device whose id needs URL escaping', async () => {
    const odd = { id: 'dev/with space?&#ü', type: null, name: null };
    expect((await postJson(`${gateway.url}/v1/devices`, odd)).status).toBe(201);
    expect(await request(`${gateway.url}/v1/devices/${encodeURIComponent(odd.id)}`)).toMatchObject({
      status: 200,
      body: { id: odd.id },
    });
  });

  it('refuses invalid devices and answers 404 for unknown ones', async () => {
    expect(await postJson(`${gateway.url}/v1/devices`, { id: '' })).toMatchObject({ status: 400 });
    expect(await postJson(`${gateway.url}/v1/devices`, { id: 'x'.repeat(256) })).toMatchObject({ status: 400 });
    expect(await request(`${gateway.url}/v1/devices/nope`)).toMatchObject({
      status: 404,
      body: { error: 'not_found' },
    });
  });
});

describe('health', () => {
  it('answers /healthz and /readyz with 200 when the database is migrated', async () => {
    expect(await request(`${gateway.url}/healthz`)).toMatchObject({ status: 200, body: { status: 'ok' } });
    expect(await request(`${gateway.url}/readyz`)).toMatchObject({ status: 200, body: { status: 'ready' } });
  });

  it('answers /readyz with 503 and Retry-After when a migration is missing', async () => {
    await db.pool.query(`UPDATE pgmigrations SET name = name || '-renamed'`);
    try {
      const response = await request(`${gateway.url}/readyz`);
      expect(response).toMatchObject({ status: 503, body: { error: 'unavailable' } });
      expect(response.body.message).toContain('0001_initial-schema');
      expect(response.headers.get('retry-after')).toBe('5');
    } finally {
      await db.pool.query(`UPDATE pgmigrations SET name = replace(name, '-renamed', '')`);
    }
  });
});
