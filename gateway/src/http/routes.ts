import type { Express, RequestHandler } from 'express';
import type { Operation } from './openapi';

/**
 * Who may call a route: anyone, any valid key (`ingest` is the lesser scope), an admin key, or open
 * unless METRICS_AUTH_REQUIRED (`metricsAuth`) or DOCS_AUTH_REQUIRED (`docsAuth`) asks for any key.
 */
export type Scope = 'open' | 'ingest' | 'admin' | 'metricsAuth' | 'docsAuth';

/**
 * Everything about a route but its handler: app.ts attaches the behaviour each field asks for, and
 * openapi.ts documents the routes with a `summary`.
 */
export interface Route extends Partial<Operation> {
  readonly method: 'get' | 'post';
  /** As Express matches it: any case, trailing slash ignored. */
  readonly path: string | readonly string[];
  /** A folder of files: the path and everything below it, any method (the files answer GET and HEAD). */
  readonly mount?: true;
  readonly scope: Scope;
  /** Open, but a key sent along is checked and shows more (401 if bad): /v1/stats. */
  readonly keyOptional?: true;
  /**
   * json: a whole JSON body (`schema`) of at most `maxBytes` (METRIC_MAX_BYTES when unset), within the
   * body deadline; ndjson: a bulk upload, streamed for as long as it arrives (no request or body
   * deadline, at most BULK_MAX_CONCURRENT at once). Other routes read no body.
   */
  readonly body?:
    | { readonly type: 'json'; readonly schema: 'Metric' | 'NewUser' | 'NewDevice'; readonly maxBytes?: number }
    | { readonly type: 'ndjson' };
  /** No access log line: probes and pollers. */
  readonly quiet?: true;
  /**
   * Called per event by whole fleets (the ingest routes): an access log line only for a 4xx/5xx or a
   * slow request, unless ACCESS_LOG=all (access-log.ts).
   */
  readonly highVolume?: true;
  /** The status page lists the refusals in this route's answers, as this endpoint. */
  readonly rejections?: 'single' | 'bulk';
}

/** What a /v1 route may answer besides its own errors. */
const V1 = [401, 403, 429, 503];
const RECORD_BYTES = 16 * 1024;

/** Every route of the gateway, in the order Express tries them: the ingest routes first. */
export const ROUTES = {
  postMetric: {
    method: 'post',
    path: '/v1/metrics',
    scope: 'ingest',
    body: { type: 'json', schema: 'Metric' },
    highVolume: true,
    rejections: 'single',
    tag: 'metrics',
    summary: 'Store one metric',
    query: 'wait',
    ok: { 201: ['committed (wait=true)', 'SingleResult'], 202: ['buffered (wait=false)', 'SingleResult'] },
    errors: [400, 413, 415, 422, ...V1],
  },
  postMetricsBulk: {
    method: 'post',
    path: '/v1/metrics/bulk',
    scope: 'ingest',
    body: { type: 'ndjson' },
    highVolume: true,
    rejections: 'bulk',
    tag: 'metrics',
    summary: 'Store many metrics from an NDJSON body (optionally gzip)',
    query: 'wait',
    ok: {
      200: ['every valid line committed; refused lines listed', 'BulkResult'],
      202: ['every valid line buffered (wait=false)', 'BulkResult'],
    },
    errors: [400, 408, 413, 415, ...V1],
    bulkErrors: [400, 408, 413, 429, 503],
  },
  createUser: {
    method: 'post',
    path: '/v1/users',
    scope: 'admin',
    body: { type: 'json', schema: 'NewUser', maxBytes: RECORD_BYTES },
    tag: 'users',
    summary: 'Register a user',
    ok: { 201: ['the stored user', 'User'] },
    errors: [400, 413, 415, ...V1],
  },
  getUser: {
    method: 'get',
    path: '/v1/users/:id',
    scope: 'admin',
    tag: 'users',
    summary: 'Read a user',
    params: 'userId',
    ok: { 200: ['the user', 'User'] },
    errors: [400, 404, ...V1],
  },
  listUserMetrics: {
    method: 'get',
    path: '/v1/users/:id/metrics',
    scope: 'admin',
    tag: 'users',
    summary: "A user's stored metrics, newest first, a page at a time",
    description:
      'Keyset pagination on (time_recorded, id), newest first: follow `next_cursor` until it is null. ' +
      'A row stored meanwhile with an older time_recorded than the page reached is not shown.',
    params: 'userId',
    query: 'userMetrics',
    ok: { 200: ['one page', 'MetricsPage'] },
    errors: [400, 404, ...V1],
  },
  summarizeUserMetrics: {
    method: 'get',
    path: '/v1/users/:id/summary',
    scope: 'admin',
    tag: 'users',
    summary: "Aggregates of a user's stored metrics in a time range",
    params: 'userId',
    query: 'userSummary',
    ok: { 200: ['the summary', 'MetricsSummary'] },
    errors: [400, 404, ...V1],
  },
  createDevice: {
    method: 'post',
    path: '/v1/devices',
    scope: 'admin',
    body: { type: 'json', schema: 'NewDevice', maxBytes: RECORD_BYTES },
    tag: 'devices',
    summary: 'Register a device',
    ok: { 201: ['the stored device', 'Device'] },
    errors: [400, 409, 413, 415, ...V1],
  },
  getDevice: {
    method: 'get',
    path: '/v1/devices/:id',
    scope: 'admin',
    tag: 'devices',
    summary: 'Read a device',
    params: 'deviceId',
    ok: { 200: ['the device', 'Device'] },
    errors: [404, ...V1],
  },
  health: {
    method: 'get',
    path: '/healthz',
    scope: 'open',
    quiet: true,
    summary: 'Liveness: 200 while the process is up',
    ok: { 200: ['up', 'Healthy'] },
  },
  ready: {
    method: 'get',
    path: '/readyz',
    scope: 'open',
    quiet: true,
    summary: 'Readiness: PostgreSQL answers and the migrations are applied',
    ok: { 200: ['ready', 'Ready'] },
    errors: [503],
  },
  prometheusMetrics: {
    method: 'get',
    path: '/metrics',
    scope: 'metricsAuth',
    quiet: true,
    summary: 'Prometheus metrics in the text exposition format',
    ok: {
      200: [
        'rows accepted, rejected and flushed, batch sizes, flush latency, buffer depth, and more',
        'text/plain; version=0.0.4',
      ],
    },
  },
  openApiDocument: {
    method: 'get',
    path: '/openapi.json',
    scope: 'docsAuth',
    summary: 'This document',
    ok: { 200: ['OpenAPI 3.1', 'object'] },
  },
  statusPage: {
    method: 'get',
    path: '/',
    scope: 'open',
    summary: 'A live status page: ingest rate, buffer, flush latency, rejections (reads /v1/stats)',
    ok: { 200: ['the page', 'text/html'] },
  },
  // The status page's files: they hold no data, and a browser cannot send a key to load them.
  statusFiles: { method: 'get', path: '/status', mount: true, scope: 'open' },
  stats: {
    method: 'get',
    path: '/v1/stats',
    // The same figures as /metrics, so behind a key exactly when /metrics is; an admin key sent along
    // shows the rejection messages too.
    scope: 'metricsAuth',
    keyOptional: true,
    // The status page polls it every second or two.
    quiet: true,
    summary: 'What the status page shows, as JSON',
    description:
      'Open like `/metrics`: with `AUTH_REQUIRED=true` and `METRICS_AUTH_REQUIRED=true` it needs a key of any scope. ' +
      'With `AUTH_REQUIRED=true`, the recent rejections carry their messages only for an admin key.',
    ok: { 200: ['the figures', 'Stats'] },
    errors: [401, 429],
  },
  // strict routing is off, so '/docs/' matches /docs too (the handler sends that on to /docs/).
  docsPage: {
    method: 'get',
    path: ['/docs/', '/docs/index.html'],
    scope: 'docsAuth',
    summary: 'An interactive page for this document (Swagger UI, served locally)',
    ok: { 200: ['the page', 'text/html'] },
  },
  docsScript: { method: 'get', path: '/docs/swagger-initializer.js', scope: 'docsAuth' },
  docsFiles: { method: 'get', path: '/docs', mount: true, scope: 'docsAuth' },
} as const satisfies Record<string, Route>;

export type RouteName = keyof typeof ROUTES;

/** The handlers of a route, and the middleware chain its declaration asks for (app.ts). */
export type RouteHandlers = Partial<Record<RouteName, RequestHandler | readonly RequestHandler[]>>;

/**
 * Registers each route that has handlers, with `chainOf(route)` before them. Express's router then
 * decides which route a request is, so no middleware works that out from the path again.
 */
export function mountRoutes(
  app: Express,
  handlers: RouteHandlers,
  chainOf: (route: Route) => readonly RequestHandler[],
): void {
  for (const [name, route] of Object.entries(ROUTES) as [RouteName, Route][]) {
    const handler = handlers[name];
    if (handler === undefined) continue;
    const chain = [...chainOf(route), ...[handler].flat()];
    if (route.mount) app.use(route.path as string, ...chain);
    else app[route.method](route.path as string | string[], ...chain);
  }
}
