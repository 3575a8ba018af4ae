import type { Gateway } from '../../src/gateway';
import { createTestDatabase, type TestDatabase } from '../helpers/database';
import { startTestGateway } from '../helpers/gateway';
import { metric } from '../helpers/metric';

// Every answer carries the security headers (helmet, one middleware before every route): nosniff,
// no framing, and a Content-Security-Policy: nothing at all for data, the page's own for the pages.
// No HSTS: the gateway speaks plain HTTP. That the pages work under their policies is checked in
// Chromium by pages-browser.test.ts.

const DATA_POLICY = /^default-src 'none'; ?frame-ancestors 'none'$/;

let db: TestDatabase;
let gateway: Gateway;
let strict: Gateway;

beforeAll(async () => {
  db = await createTestDatabase();
  await db.pool.query(`INSERT INTO users (id, name) VALUES (1, 'one')`);
  gateway = await startTestGateway(db);
  strict = await startTestGateway(db, { AUTH_REQUIRED: 'true' });
});

afterAll(async () => {
  await gateway?.stop();
  await strict?.stop();
  await db?.drop();
});

function expectCommonHeaders(headers: Headers): void {
  expect(headers.get('x-content-type-options')).toBe('nosniff');
  expect(headers.get('x-frame-options')).toBe('DENY');
  expect(headers.get('referrer-policy')).toBe('no-referrer');
  expect(headers.get('cross-origin-resource-policy')).toBe('same-origin');
  expect(headers.get('strict-transport-security')).toBeNull();
  expect(headers.get('x-powered-by')).toBeNull();
  expect(headers.get('content-security-policy')).toMatch(/frame-ancestors 'none'/);
}

describe('data answers: no content may load, nothing may frame them', () => {
  it.each<[string, () => Promise<Response>, number]>([
    ['GET /healthz', () => fetch(`${gateway.url}/healthz`), 200],
    ['POST /v1/metrics', () => fetch(`${gateway.url}/v1/metrics`, jsonPost(metric())), 201],
    ['GET /openapi.json', () => fetch(`${gateway.url}/openapi.json`), 200],
    ['GET /metrics (Prometheus text)', () => fetch(`${gateway.url}/metrics`), 200],
    ['GET /v1/stats', () => fetch(`${gateway.url}/v1/stats`), 200],
    ['404', () => fetch(`${gateway.url}/no/such/route`), 404],
    ['400 validation_failed', () => fetch(`${gateway.url}/v1/metrics`, jsonPost(metric({ talked_time: -1 }))), 400],
    ['400 invalid_json', () => fetch(`${gateway.url}/v1/metrics`, jsonPost('{"broken')), 400],
    ['400 for a path that is not percent-encoding', () => fetch(`${gateway.url}/v1/users/%ff`), 400],
    ['415', () => fetch(`${gateway.url}/v1/metrics`, { method: 'POST', body: 'x' }), 415],
    ['401 (AUTH_REQUIRED=true)', () => fetch(`${strict.url}/v1/metrics`, jsonPost(metric())), 401],
  ])('%s', async (_name, send, status) => {
    const response = await send();
    expect(response.status).toBe(status);
    expectCommonHeaders(response.headers);
    expect(response.headers.get('content-security-policy')).toMatch(DATA_POLICY);
  });
});

describe('pages keep policies of their own', () => {
  it('/docs/: Swagger UI from this gateway only, no inline script or style', async () => {
    const response = await fetch(`${gateway.url}/docs/`);
    expect(response.status).toBe(200);
    expectCommonHeaders(response.headers);
    const policy = response.headers.get('content-security-policy') ?? '';
    expect(policy).toMatch(/default-src 'none'/);
    expect(policy).toMatch(/script-src 'self'(;|$)/);
    expect(policy).toMatch(/style-src 'self'(;|$)/);
    expect(policy).not.toMatch(/unsafe-/);
  });

  it('/docs redirect and its files carry the headers too', async () => {
    const redirect = await fetch(`${gateway.url}/docs`, { redirect: 'manual' });
    expect(redirect.status).toBe(301);
    expectCommonHeaders(redirect.headers);
    for (const file of ['swagger-ui-bundle.js', 'swagger-ui.css', 'swagger-initializer.js']) {
      const response = await fetch(`${gateway.url}/docs/${file}`);
      expect({ file, status: response.status }).toEqual({ file, status: 200 });
      expectCommonHeaders(response.headers);
    }
  });

  it('the status page and its files: its own policy', async () => {
    for (const path of ['/', '/status/status.js', '/status/status.css']) {
      const response = await fetch(`${gateway.url}${path}`);
      expect({ path, status: response.status }).toEqual({ path, status: 200 });
      expectCommonHeaders(response.headers);
      expect(response.headers.get('content-security-policy')).toMatch(/default-src 'none'; ?script-src 'self'/);
    }
  });
});

function jsonPost(body: unknown): RequestInit {
  return {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  };
}
