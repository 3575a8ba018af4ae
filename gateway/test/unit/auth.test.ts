import { generateApiKey, hashApiKey, isWellFormedApiKey, type ApiKeyPrincipal } from '../../src/auth/api-keys';
import { addressGroup } from '../../src/auth/address-group';
import { ApiKeyAuthenticator, LOOKUPS_WAITING_PER_SLOT } from '../../src/auth/authenticator';
import { ConcurrencyLimit } from '../../src/auth/concurrency-limit';
import { TokenBucketLimiter } from '../../src/auth/rate-limiter';
import { loadConfig } from '../../src/config';
import express from 'express';
import type { AddressInfo } from 'node:net';
import { requirementOf } from '../../src/http/access-control';
import { ROUTES, mountRoutes, type RouteName } from '../../src/http/routes';
import { testLogger } from '../helpers/logger';

const FLEET: ApiKeyPrincipal = { id: 1, name: 'fleet', scope: 'ingest' };

describe('API keys', () => {
  it('are mgk_ and 32 random bytes in base64url, different every time', () => {
    const keys = new Set(Array.from({ length: 100 }, generateApiKey));
    expect(keys.size).toBe(100);
    for (const key of keys) {
      expect(key).toMatch(/^mgk_[A-Za-z0-9_-]{43}$/);
      expect(isWellFormedApiKey(key)).toBe(true);
    }
    expect(isWellFormedApiKey('mgk_short')).toBe(false);
    expect(hashApiKey('mgk_x')).toHaveLength(32);
  });
});

describe('ApiKeyAuthenticator', () => {
  /** An authenticator over a fake table of keys, with a clock the test moves. */
  function setUp(ttlMs = 30_000) {
    const key = generateApiKey();
    const table = new Map<string, ApiKeyPrincipal>([[hashApiKey(key).toString('hex'), FLEET]]);
    let now = 0;
    let failing = false;
    const lookup = jest.fn(async (hash: Buffer) => {
      if (failing) throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
      return table.get(hash.toString('hex'));
    });
    const authenticator = new ApiKeyAuthenticator({
      lookup,
      ttlMs,
      logger: testLogger,
      now: () => now,
      maxUnknownKeys: 2,
    });
    return {
      key,
      lookup,
      authenticator,
      advance: (ms: number) => (now += ms),
      revoke: () => table.clear(),
      setFailing: (value: boolean) => (failing = value),
    };
  }

  it('asks the database once per key per TTL, however many requests come', async () => {
    const { key, lookup, authenticator, advance } = setUp();
    const answers = await Promise.all(Array.from({ length: 50 }, () => authenticator.authenticate(key)));
    expect(answers.every((principal) => principal === FLEET)).toBe(true);
    advance(29_999);
    expect(await authenticator.authenticate(key)).toBe(FLEET);
    expect(lookup).toHaveBeenCalledTimes(1);
    advance(1);
    expect(await authenticator.authenticate(key)).toBe(FLEET);
    expect(lookup).toHaveBeenCalledTimes(2);
  });

  it('stops taking a revoked key once the TTL has passed', async () => {
    const { key, authenticator, advance, revoke } = setUp();
    expect(await authenticator.authenticate(key)).toBe(FLEET);
    revoke();
    advance(10_000);
    expect(await authenticator.authenticate(key)).toBe(FLEET);
    advance(20_000);
    expect(await authenticator.authenticate(key)).toBeUndefined();
  });

  it('with a TTL of 0, asks on every request', async () => {
    const { key, lookup, authenticator } = setUp(0);
    await authenticator.authenticate(key);
    await authenticator.authenticate(key);
    expect(lookup).toHaveBeenCalledTimes(2);
  });

  it('refuses a string that is not shaped like a key without asking', async () => {
    const { lookup, authenticator } = setUp();
    expect(await authenticator.authenticate('secret')).toBeUndefined();
    expect(lookup).not.toHaveBeenCalled();
  });

  it('remembers unknown keys, but only the most recent few', async () => {
    const { lookup, authenticator } = setUp();
    const [a, b, c] = [generateApiKey(), generateApiKey(), generateApiKey()];
    for (const key of [a, b, a, b]) expect(await authenticator.authenticate(key)).toBeUndefined();
    expect(lookup).toHaveBeenCalledTimes(2);
    await authenticator.authenticate(c); // forgets a, the oldest
    await authenticator.authenticate(a);
    expect(lookup).toHaveBeenCalledTimes(4);
  });

  it('keeps the last answer for another TTL when a re-check fails, and fails a key it never saw', async () => {
    const { key, lookup, authenticator, advance, setFailing } = setUp();
    expect(await authenticator.authenticate(key)).toBe(FLEET);
    setFailing(true);
    advance(30_000);
    expect(await authenticator.authenticate(key)).toBe(FLEET);
    expect(await authenticator.authenticate(key)).toBe(FLEET);
    expect(lookup).toHaveBeenCalledTimes(2);
    await expect(authenticator.authenticate(generateApiKey())).rejects.toThrow(/ECONNREFUSED/);
    setFailing(false);
    advance(30_000);
    expect(await authenticator.authenticate(key)).toBe(FLEET);
    expect(lookup).toHaveBeenCalledTimes(4);
  });

  it('does not remember a first lookup that failed', async () => {
    const { key, authenticator, setFailing } = setUp();
    setFailing(true);
    await expect(authenticator.authenticate(key)).rejects.toThrow();
    await expect(authenticator.authenticate(key)).rejects.toThrow();
    setFailing(false);
    expect(await authenticator.authenticate(key)).toBe(FLEET);
  });

  it('asks again at once for a key it was told to forget, or after forgetAll', async () => {
    const { key, lookup, authenticator, revoke } = setUp();
    expect(await authenticator.authenticate(key)).toBe(FLEET);
    revoke();
    authenticator.forget(hashApiKey(key).toString('hex'));
    expect(await authenticator.authenticate(key)).toBeUndefined();
    expect(lookup).toHaveBeenCalledTimes(2);
    authenticator.forgetAll();
    expect(await authenticator.authenticate(key)).toBeUndefined();
    expect(lookup).toHaveBeenCalledTimes(3);
  });

  it('does not keep the answer of a lookup that was running when its key was forgotten', async () => {
    const { key, lookup, authenticator, revoke } = setUp();
    // The lookup reads the key as valid; the revocation commits and is announced before its answer lands.
    const first = authenticator.authenticate(key);
    revoke();
    authenticator.forget(hashApiKey(key).toString('hex'));
    expect(await first).toBe(FLEET);
    expect(await authenticator.authenticate(key)).toBeUndefined();
    expect(lookup).toHaveBeenCalledTimes(2);
  });

  it('looks up a key not known to be valid only within the budget it is given, and says when to retry', async () => {
    const { key, lookup, authenticator, advance } = setUp();
    const refuse = () => ({ allowed: false, retryAfterSeconds: 3 }) as const;
    await expect(authenticator.authenticate(generateApiKey(), refuse)).rejects.toMatchObject({
      code: 'overloaded',
      retryAfterSeconds: 3,
    });
    expect(lookup).not.toHaveBeenCalled();
    // A valid key is looked up within the budget; once cached, and when re-checked, it needs none.
    expect(await authenticator.authenticate(key, () => ({ allowed: true }))).toBe(FLEET);
    expect(await authenticator.authenticate(key, refuse)).toBe(FLEET);
    advance(30_000);
    expect(await authenticator.authenticate(key, refuse)).toBe(FLEET);
    expect(lookup).toHaveBeenCalledTimes(2);
  });

  it('runs at most maxConcurrentLookups lookups at once, lets a bounded line wait, and refuses the rest', async () => {
    const key = generateApiKey();
    const release: (() => void)[] = [];
    let running = 0;
    let mostRunning = 0;
    const lookup = jest.fn(
      (hash: Buffer) =>
        new Promise<ApiKeyPrincipal | undefined>((resolve) => {
          mostRunning = Math.max(mostRunning, ++running);
          release.push(() => {
            running--;
            resolve(hash.equals(hashApiKey(key)) ? FLEET : undefined);
          });
        }),
    );
    let now = 0;
    const authenticator = new ApiKeyAuthenticator({
      lookup,
      ttlMs: 1000,
      logger: testLogger,
      now: () => now,
      maxConcurrentLookups: 2,
    });
    const valid = authenticator.authenticate(key);
    await Promise.resolve();
    release.shift()?.();
    expect(await valid).toBe(FLEET);

    const capacity = 2 + 2 * LOOKUPS_WAITING_PER_SLOT;
    const flood = Array.from({ length: capacity }, () => authenticator.authenticate(generateApiKey()));
    await expect(authenticator.authenticate(generateApiKey())).rejects.toMatchObject({
      code: 'overloaded',
      message: expect.stringMatching(/AUTH_LOOKUP_CONCURRENCY/),
    });
    // A valid key due for a re-check keeps its answer meanwhile rather than being refused.
    now += 1000;
    expect(await authenticator.authenticate(key)).toBe(FLEET);
    while (release.length > 0 || running > 0) {
      release.shift()?.();
      await new Promise(setImmediate);
    }
    expect(await Promise.all(flood)).toEqual(Array.from({ length: capacity }, () => undefined));
    expect(mostRunning).toBe(2);
  });
});

describe('TokenBucketLimiter', () => {
  it('lets a burst through, then the rate, per key, and says when to retry', () => {
    let now = 0;
    const limiter = new TokenBucketLimiter<number>({ ratePerSecond: 2, burst: 3 }, () => now);
    expect([1, 2, 3].map(() => limiter.take(1).allowed)).toEqual([true, true, true]);
    expect(limiter.take(1)).toEqual({ allowed: false, retryAfterSeconds: 1 });
    expect(limiter.take(2).allowed).toBe(true);
    now += 499;
    expect(limiter.take(1).allowed).toBe(false);
    now += 1;
    expect(limiter.take(1).allowed).toBe(true);
    now += 60_000; // refills up to the burst, not beyond
    expect([1, 2, 3, 4].map(() => limiter.take(1).allowed)).toEqual([true, true, true, false]);
  });

  it('rounds Retry-After up to whole seconds at slow rates', () => {
    const limiter = new TokenBucketLimiter<number>({ ratePerSecond: 0.1, burst: 1 }, () => 0);
    limiter.take(1);
    expect(limiter.take(1)).toEqual({ allowed: false, retryAfterSeconds: 10 });
  });

  it('keeps at most maxKeys buckets, forgetting the least recently used', () => {
    const limiter = new TokenBucketLimiter<string>({ ratePerSecond: 1, burst: 1, maxKeys: 2 }, () => 0);
    expect(['a', 'b', 'a'].map((key) => limiter.take(key).allowed)).toEqual([true, true, false]);
    limiter.take('c'); // forgets b, the least recently used: a was used after it
    expect(limiter.take('a').allowed).toBe(false);
    expect(limiter.take('b').allowed).toBe(true); // a new, full bucket
  });
});

describe('addressGroup', () => {
  it.each([
    ['127.0.0.1', '127.0.0.1'],
    ['::ffff:10.1.2.3', '10.1.2.3'],
    ['2001:db8:1:2:3:4:5:6', '2001:db8:1:2::/64'],
    ['2001:db8:1:2::9', '2001:db8:1:2::/64'],
    ['2001:0db8:0000:0002:ffff::1', '2001:db8:0:2::/64'],
    ['2001:db8::1', '2001:db8:0:0::/64'],
    ['::1', '0:0:0:0::/64'],
    ['fe80::1%eth0', 'fe80:0:0:0::/64'],
    [undefined, 'unknown'],
  ])('groups %s as %s', (address, group) => {
    expect(addressGroup(address)).toBe(group);
  });
});

describe('ConcurrencyLimit', () => {
  it('runs at most maxRunning tasks at once, the others in order, and says when its line is full', async () => {
    const limit = new ConcurrencyLimit(2, 1);
    const started: number[] = [];
    const finish: (() => void)[] = [];
    const task = (n: number) => () =>
      new Promise<number>((resolve) => {
        started.push(n);
        finish[n] = () => resolve(n);
      });
    const runs = [1, 2, 3].map((n) => limit.run(task(n)));
    await Promise.resolve();
    expect(started).toEqual([1, 2]);
    expect(limit.full).toBe(true);
    finish[1]?.();
    expect(await runs[0]).toBe(1);
    await new Promise(setImmediate);
    expect(started).toEqual([1, 2, 3]);
    expect(limit.full).toBe(false);
    finish[2]?.();
    finish[3]?.();
    expect(await Promise.all(runs)).toEqual([1, 2, 3]);
  });

  it('frees the slot of a task that fails', async () => {
    const limit = new ConcurrencyLimit(1, 0);
    await expect(limit.run(() => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(await limit.run(async () => 'next')).toBe('next');
  });
});

describe('requirementOf', () => {
  const open = { metricsAuthRequired: false, docsAuthRequired: false };
  const closed = { metricsAuthRequired: true, docsAuthRequired: true };

  /**
   * What `method path` needs, as the app decides it: Express routes the request (any case, trailing
   * slash ignored), the route's scope says; a request no route takes needs admin (app.ts).
   */
  async function needed(method: string, path: string, policy: typeof open): Promise<string> {
    const app = express();
    const answer = (scope: Parameters<typeof requirementOf>[0]) => (_req: unknown, res: express.Response) =>
      res.json(requirementOf(scope, policy));
    const names = Object.keys(ROUTES) as RouteName[];
    mountRoutes(app, Object.fromEntries(names.map((name) => [name, answer(ROUTES[name].scope)])), () => []);
    app.use((_req, res) => res.json('admin'));
    const server = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    try {
      const { port } = server.address() as AddressInfo;
      return (await (await fetch(`http://127.0.0.1:${port}${path}`, { method })).json()) as string;
    } finally {
      server.close();
    }
  }

  it.each([
    ['GET', '/healthz', open, 'open'],
    ['GET', '/readyz', closed, 'open'],
    ['GET', '/metrics', open, 'open'],
    ['GET', '/metrics', closed, 'ingest'],
    ['GET', '/docs/swagger-ui.css', open, 'open'],
    ['GET', '/docs/', closed, 'ingest'],
    ['GET', '/openapi.json', closed, 'ingest'],
    ['POST', '/v1/metrics', open, 'ingest'],
    ['POST', '/v1/metrics/', open, 'ingest'],
    ['POST', '/V1/METRICS/BULK', open, 'ingest'],
    ['GET', '/v1/metrics', open, 'admin'],
    ['POST', '/v1/metrics/bulkx', open, 'admin'],
    ['POST', '/v1/users', open, 'admin'],
    ['GET', '/v1/users/1/metrics', open, 'admin'],
    ['GET', '/metricsx', open, 'admin'],
    ['GET', '/healthz-not', open, 'admin'],
    // The status page and its files hold no data; its figures are open exactly when /metrics is.
    ['GET', '/', closed, 'open'],
    ['GET', '/status/status.js', closed, 'open'],
    ['GET', '/v1/stats', open, 'open'],
    ['GET', '/v1/stats', closed, 'ingest'],
    // The root is listed as open for itself alone, not for what is below it.
    ['POST', '//v1/users', closed, 'admin'],
    ['GET', '/v1/statsx', open, 'admin'],
  ] as const)('%s %s needs %s', async (method, path, policy, expected) => {
    expect(await needed(method, path, policy)).toBe(expected);
  });
});

describe('security configuration', () => {
  it('has safe defaults: no auth, open /metrics and docs, no rate limit, limits on', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      authRequired: false,
      authCacheTtlMs: 30_000,
      metricsAuthRequired: false,
      docsAuthRequired: false,
      rateLimitPerKeyRps: 0,
      bulkMaxBytes: 0,
      bulkGzipMaxRatio: 200,
      bodyIdleTimeoutMs: 30_000,
      headersTimeoutMs: 20_000,
      requestTimeoutMs: 0,
      authLookupRatePerAddress: 20,
      authLookupBurstPerAddress: 40,
      authLookupConcurrency: 4,
      maxConnections: 1024,
      bulkMaxConcurrent: 16,
      bodyMinBytesPerSecond: 1024,
    });
  });

  it('keeps key lookups from taking the connections COPY needs', () => {
    // FLUSH_CONCURRENCY + 1 connections write batches; the rest serve requests, key lookups among them.
    expect(loadConfig({ PG_POOL_MAX: '5', FLUSH_CONCURRENCY: '2' }).authLookupConcurrency).toBe(2);
    expect(() => loadConfig({ PG_POOL_MAX: '5', FLUSH_CONCURRENCY: '2', AUTH_LOOKUP_CONCURRENCY: '3' })).toThrow(
      /AUTH_LOOKUP_CONCURRENCY \(3\) must be at most PG_POOL_MAX - FLUSH_CONCURRENCY - 1 \(2\)/,
    );
  });

  it('requires keys by default in production, and AUTH_REQUIRED says otherwise', () => {
    expect(loadConfig({ NODE_ENV: 'production' }).authRequired).toBe(true);
    expect(loadConfig({ NODE_ENV: 'production', AUTH_REQUIRED: 'false' }).authRequired).toBe(false);
    expect(loadConfig({ NODE_ENV: 'development' }).authRequired).toBe(false);
  });

  it('takes AUTH_REQUIRED=true, and the burst defaults to the rate', () => {
    const config = loadConfig({ AUTH_REQUIRED: 'true', RATE_LIMIT_PER_KEY_RPS: '50' });
    expect(config).toMatchObject({ authRequired: true, rateLimitPerKeyRps: 50, rateLimitBurst: 50 });
  });

  it.each(['METRICS_AUTH_REQUIRED', 'DOCS_AUTH_REQUIRED'])('refuses %s=true without AUTH_REQUIRED=true', (name) => {
    expect(() => loadConfig({ [name]: 'true' })).toThrow(new RegExp(`${name} needs AUTH_REQUIRED=true`));
  });

  it('refuses a rate limit without AUTH_REQUIRED=true, and bad numbers by name', () => {
    expect(() => loadConfig({ RATE_LIMIT_PER_KEY_RPS: '5' })).toThrow(/RATE_LIMIT_PER_KEY_RPS needs AUTH_REQUIRED/);
    expect(() => loadConfig({ BULK_MAX_BYTES: '-1' })).toThrow(/BULK_MAX_BYTES must be an integer/);
    expect(() => loadConfig({ AUTH_CACHE_TTL_MS: 'soon' })).toThrow(/AUTH_CACHE_TTL_MS must be an integer/);
    expect(() => loadConfig({ HEADERS_TIMEOUT_MS: '5000', REQUEST_TIMEOUT_MS: '1000' })).toThrow(
      /HEADERS_TIMEOUT_MS \(5000\) must not be more than REQUEST_TIMEOUT_MS/,
    );
  });
});
