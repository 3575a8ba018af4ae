import { ConfigError, loadConfig } from '../../src/config';
import { poolSizes, requestPoolSettings } from '../../src/db/pool';

// How PG_POOL_MAX is split between the writer and the request pool, and what REQUEST_DEADLINE_MS
// turns into on each database call of a request.

describe('the two pools', () => {
  it('give FLUSH_CONCURRENCY + 1 connections to the writer and the rest of PG_POOL_MAX to requests', () => {
    expect(poolSizes(10, 2)).toEqual({ writer: 3, request: 7 });
    expect(poolSizes(4, 2)).toEqual({ writer: 3, request: 1 });
  });

  it('refuse a PG_POOL_MAX that leaves no connection for requests', () => {
    expect(() => loadConfig({ PG_POOL_MAX: '3', FLUSH_CONCURRENCY: '2' })).toThrow(ConfigError);
    expect(() => loadConfig({ PG_POOL_MAX: '3', FLUSH_CONCURRENCY: '2' })).toThrow(/FLUSH_CONCURRENCY \+ 2 \(4\)/);
    expect(loadConfig({ PG_POOL_MAX: '4', FLUSH_CONCURRENCY: '2' }).pgPoolMax).toBe(4);
  });
});

describe('REQUEST_DEADLINE_MS', () => {
  it('defaults to 10 s, or ACK_TIMEOUT_MS if that is longer (a wait=true request is not cut before its own timeout)', () => {
    expect(loadConfig({}).requestDeadlineMs).toBe(10_000);
    expect(loadConfig({ ACK_TIMEOUT_MS: '500' }).requestDeadlineMs).toBe(10_000);
    expect(loadConfig({ ACK_TIMEOUT_MS: '30000' }).requestDeadlineMs).toBe(30_000);
    expect(loadConfig({ ACK_TIMEOUT_MS: '4000', REQUEST_DEADLINE_MS: '1500' }).requestDeadlineMs).toBe(1500);
  });

  it('bounds a lock wait to a quarter, a statement to half, a silent server to three quarters, a pool wait to a quarter', () => {
    expect(requestPoolSettings(10_000)).toMatchObject({
      lock_timeout: 2500,
      statement_timeout: 5000,
      query_timeout: 7500,
      connectionTimeoutMillis: 2500,
      keepAlive: true,
    });
  });
});
