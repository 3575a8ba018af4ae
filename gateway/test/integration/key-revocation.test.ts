import { performance } from 'node:perf_hooks';
import { hashApiKey } from '../../src/auth/api-keys';
import {
  API_KEY_LISTENER_APPLICATION_NAME,
  ApiKeyChangeListener,
  type KeyChangeSubscriber,
} from '../../src/auth/api-key-changes';
import { parseKeysCommand, runKeysCommand } from '../../src/cli/keys-command';
import type { Gateway } from '../../src/gateway';
import { createTestDatabase, type TestDatabase } from '../helpers/database';
import { request, startTestGateway } from '../helpers/gateway';
import { testLogger } from '../helpers/logger';
import { until } from '../helpers/until';

// Revocation is immediate: migration 0005's trigger announces every change to api_keys on a channel
// that each gateway LISTENs to on a connection of its own. AUTH_CACHE_TTL_MS is a minute here, so a
// refusal within seconds can only come from the announcement.

const CACHE_TTL_MS = 60_000;
/** The promise is a second; a loaded machine gets a margin that is still far below the TTL. */
const REFUSED_WITHIN_MS = 5_000;

let db: TestDatabase;
let gateways: Gateway[] = [];
/** Listeners a test started itself, closed after it even when it fails. */
const listeners: ApiKeyChangeListener[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  gateways = await Promise.all(
    [1, 2].map(() => startTestGateway(db, { AUTH_REQUIRED: 'true', AUTH_CACHE_TTL_MS: String(CACHE_TTL_MS) })),
  );
});

afterEach(async () => {
  await Promise.all(listeners.splice(0).map((listener) => listener.close()));
});

afterAll(async () => {
  await Promise.all(gateways.map((gateway) => gateway.stop()));
  await db?.drop();
});

/** `npm run keys -- ...` against the test database; returns its last line of output. */
async function keys(...argv: string[]): Promise<string> {
  const out: string[] = [];
  const code = await runKeysCommand(
    parseKeysCommand(argv),
    db.pool,
    { out: (line) => out.push(line), err: (line) => out.push(line) },
    CACHE_TTL_MS,
  );
  expect({ argv, code }).toEqual({ argv, code: 0 });
  return out.at(-1) ?? '';
}

/**
 * What `gateway` makes of `key` on an admin route: 403 while an ingest key is valid (it passed the key
 * check, its scope is too small), 401 once it is refused. No rows, no side effects.
 */
async function keyCheck(gateway: Gateway, key: string): Promise<number> {
  return (await request(`${gateway.url}/v1/users/1`, { headers: { authorization: `Bearer ${key}` } })).status;
}

/** Milliseconds from now until `gateway` refuses `key`; fails past `boundMs`. */
async function msUntilRefused(gateway: Gateway, key: string, since: number, boundMs: number): Promise<number> {
  const refused = async (): Promise<boolean> => {
    const status = await keyCheck(gateway, key);
    if (status !== 401) expect(status).toBe(403);
    return status === 401;
  };
  await until(refused, 'the revoked key refused', boundMs - (performance.now() - since));
  return performance.now() - since;
}

async function startListener(subscriber: KeyChangeSubscriber): Promise<ApiKeyChangeListener> {
  const listener = new ApiKeyChangeListener({
    connectionString: db.url,
    subscriber,
    logger: testLogger,
    minRetryDelayMs: 50,
  });
  listeners.push(listener);
  await listener.start();
  return listener;
}

async function listenerConnections(): Promise<number> {
  const { rows } = await db.pool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1`,
    [API_KEY_LISTENER_APPLICATION_NAME],
  );
  return rows[0]?.n ?? -1;
}

it('refuses a key revoked with `npm run keys -- revoke` on every gateway within a second, long before AUTH_CACHE_TTL_MS', async () => {
  const key = await keys('create', '--name', 'device-1', '--scope', 'ingest');
  for (const gateway of gateways) {
    expect(await keyCheck(gateway, key)).toBe(403);
    expect(await keyCheck(gateway, key)).toBe(403); // now cached for a minute
  }
  await keys('revoke', '--name', 'device-1');
  const revokedAt = performance.now();
  const refusedAfter = await Promise.all(
    gateways.map((gateway) => msUntilRefused(gateway, key, revokedAt, CACHE_TTL_MS / 4)),
  );
  for (const ms of refusedAfter) expect(ms).toBeLessThan(REFUSED_WITHIN_MS);
});

it('hears of a change made by any writer, and not of a key merely being used', async () => {
  const forgotten: string[] = [];
  const listener = await startListener({
    forget: (hash) => forgotten.push(hash),
    forgetAll: () => forgotten.push('*'),
  });
  expect(listener.listening).toBe(true);
  expect(forgotten).toEqual(['*']); // a (re)connection empties the cache
  const key = await keys('create', '--name', 'device-2', '--scope', 'ingest');
  const hash = hashApiKey(key).toString('hex');
  await until(() => forgotten.includes(hash), 'the new key is announced');
  forgotten.length = 0;
  await db.pool.query(`UPDATE api_keys SET last_used_at = now() WHERE name = 'device-2'`);
  await db.pool.query(`UPDATE api_keys SET scope = 'admin' WHERE name = 'device-2'`);
  await db.pool.query(`DELETE FROM api_keys WHERE name = 'device-2'`);
  await until(() => forgotten.length >= 2, 'the change of scope and the deletion are announced');
  // Notifications arrive in commit order: the first is the change of scope, not the use.
  expect(forgotten).toEqual([hash, hash]);
  await listener.close();
  expect(listener.listening).toBe(false);
});

it('reconnects after losing its connection and then forgets every key, so a revocation missed meanwhile holds', async () => {
  const key = await keys('create', '--name', 'device-3', '--scope', 'ingest');
  for (const gateway of gateways) expect(await keyCheck(gateway, key)).toBe(403);
  let forgetAlls = 0;
  const listener = await startListener({ forget: () => undefined, forgetAll: () => forgetAlls++ });
  expect(forgetAlls).toBe(1);
  const listeners = gateways.length + 1;
  await until(async () => (await listenerConnections()) === listeners, 'every gateway listens');

  // Cut every listener off and revoke at once: the announcement may reach a listener or be missed.
  await db.pool.query(
    `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1`,
    [API_KEY_LISTENER_APPLICATION_NAME],
  );
  await keys('revoke', '--name', 'device-3');
  const revokedAt = performance.now();
  for (const gateway of gateways) {
    expect(await msUntilRefused(gateway, key, revokedAt, CACHE_TTL_MS / 4)).toBeLessThan(REFUSED_WITHIN_MS);
  }
  await until(async () => (await listenerConnections()) === listeners, 'every gateway listens again');
  await until(() => listener.listening, 'the listener is back');
  expect(forgetAlls).toBe(2);

  // A revocation after the reconnection is heard as before.
  const later = await keys('create', '--name', 'device-4', '--scope', 'ingest');
  for (const gateway of gateways) expect(await keyCheck(gateway, later)).toBe(403);
  await keys('revoke', '--name', 'device-4');
  const laterRevokedAt = performance.now();
  for (const gateway of gateways) {
    expect(await msUntilRefused(gateway, later, laterRevokedAt, CACHE_TTL_MS / 4)).toBeLessThan(REFUSED_WITHIN_MS);
  }
});

it('closes its listening connection when the gateway stops', async () => {
  const [first, second] = gateways;
  await second?.stop();
  await until(async () => (await listenerConnections()) === 1, 'one listener left');
  expect(await keyCheck(first as Gateway, 'mgk_' + 'x'.repeat(43))).toBe(401);
});
