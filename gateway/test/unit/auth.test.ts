import { generateApiKey, hashApiKey, isWellFormedApiKey, type ApiKeyPrincipal } from '../../src/auth/api-keys';
import { ApiKeyAuthenticator } from '../../src/auth/authenticator';
import { KeyRateLimiter } from '../../src/auth/rate-limiter';
import { loadConfig } from '../../src/config';
import { pathPolicy, requirementOf } from '../../src/http/access-control';
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
});

describe('KeyRateLimiter', () => {
  it('lets a burst through, then the rate, per key, and says when to retry', () => {
    let now = 0;
    const limiter = new KeyRateLimiter({ ratePerSecond: 2, burst: 3 }, () => now);
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
    const limiter = new KeyRateLimiter({ ratePerSecond: 0.1, burst: 1 }, () => 0);
    limiter.take(1);
    expect(limiter.take(1)).toEqual({ allowed: false, retryAfterSeconds: 10 });
  });
});

describe('requirementOf', () => {
  const open = pathPolicy({ metricsAuthRequired: false, docsAuthRequired: false });
  const closed = pathPolicy({ metricsAuthRequired: true, docsAuthRequired: true });

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
  ] as const)('%s %s needs %s', (method, path, policy, expected) => {
    expect(requirementOf(method, path, policy)).toBe(expected);
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
    });
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
