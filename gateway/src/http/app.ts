import express, { type Express, type RequestHandler } from 'express';
import type { Pool } from 'pg';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { IntakeOptions, MetricIntake } from '../ingest/intake';
import type { ReferenceCache } from '../ingest/references';
import type { IngestStats } from '../telemetry/ingest-stats';
import type { RecentRejections } from '../telemetry/recent-rejections';
import type { RouteAccess } from './access-control';
import { accessLog, observedAs, type AccessLogOptions } from './access-log';
import { smallBodyDeadline } from './body-deadline';
import type { BodyLimits } from './body-source';
import { bulkUploadLimit } from './bulk-upload-limit';
import { docsRoutes } from './docs-routes';
import { errorHandler, notFoundHandler } from './error-handler';
import { healthRoutes, type ReadinessCheck } from './health-routes';
import { ingestRoutes, reportingRefusals } from './ingest-routes';
import { jsonBody } from './json-body';
import { prometheusRoutes } from './prometheus-routes';
import { readRoutes } from './read-routes';
import { noRequestDeadline, requestDeadline } from './request-deadline';
import { ROUTES, mountRoutes, type Route } from './routes';
import { securityHeaders } from './security-headers';
import { rejectionRecorder, statusRoutes } from './status-routes';
import { usersDevicesRoutes } from './users-devices-routes';

export interface AppDependencies {
  readonly logger: Logger;
  /** ACCESS_LOG and ACCESS_LOG_SLOW_MS (access-log.ts). */
  readonly accessLog: Omit<AccessLogOptions, 'logger'>;
  /** The request pool (db/pool.ts), whose calls are bounded by parts of `requestDeadlineMs`. */
  readonly pool: Pool;
  readonly intake: MetricIntake;
  readonly references: ReferenceCache;
  readonly readiness: ReadinessCheck;
  readonly metricMaxBytes: number;
  /** The API key check of a route (access-control.ts), put before it; none when AUTH_REQUIRED=false. */
  readonly accessControl?: (route: RouteAccess) => RequestHandler;
  /** Limits on a bulk upload's body; none when unset. */
  readonly bulkBodyLimits?: BodyLimits;
  /** Bulk uploads in progress at once (BULK_MAX_CONCURRENT); 0 or unset: no limit. */
  readonly bulkMaxConcurrent?: number;
  /** Served at GET /metrics. */
  readonly metricsRegistry: Registry;
  /** Every non-bulk request is answered within this (503 if nothing else answered it); none: no deadline. */
  readonly requestDeadlineMs?: number;
  /** Observes single metrics refused before they reach the intake (not JSON, too large), for metrics. */
  readonly onRefused?: IntakeOptions['onRefused'];
  /** The live status page (GET /, GET /v1/stats) and the ring of recent rejections it lists; none: no page. */
  readonly status?: { readonly stats: IngestStats; readonly rejections: RecentRejections };
}

/** The Express application, without a listening server. */
export function createApp(deps: AppDependencies): Express {
  const app = express();
  app.disable('x-powered-by');
  // Answers are small and never cached: hashing each one for an ETag is wasted work on the hot path.
  app.set('etag', false);
  app.set('query parser', 'simple');
  app.use(securityHeaders());
  app.use(accessLog(app, { logger: deps.logger, ...deps.accessLog }));
  if (deps.requestDeadlineMs !== undefined) app.use(requestDeadline(deps.requestDeadlineMs));

  const bodyDeadline = smallBodyDeadline(deps.bulkBodyLimits?.idleTimeoutMs ?? 0);
  const { accessControl: access, status } = deps;
  /** The middleware that a route's declaration (routes.ts) asks for, in the order they run. */
  const chainOf = (route: Route): RequestHandler[] => {
    const bulk = route.body?.type === 'ndjson';
    const logging = route.quiet ? 'none' : route.highVolume ? 'exceptions' : 'every';
    const chain: RequestHandler[] = [observedAs([route.path].flat()[0] as string, logging)];
    if (bulk) chain.push(noRequestDeadline);
    if (access !== undefined) chain.push(access(route));
    if (!bulk) chain.push(bodyDeadline);
    if (bulk && (deps.bulkMaxConcurrent ?? 0) > 0) chain.push(bulkUploadLimit(deps.bulkMaxConcurrent ?? 0));
    if (route.rejections !== undefined && status !== undefined) {
      chain.push(rejectionRecorder(status.rejections, route.rejections));
    }
    if (route.body?.type === 'json') {
      const parse = jsonBody(route.body.maxBytes ?? deps.metricMaxBytes);
      // A metric refused before the intake sees it is counted here; the intake counts the rest.
      chain.push(route.body.schema === 'Metric' ? reportingRefusals(parse, deps.onRefused) : parse);
    }
    return chain;
  };
  mountRoutes(
    app,
    {
      ...ingestRoutes(deps),
      ...healthRoutes(deps.readiness),
      prometheusMetrics: prometheusRoutes(deps.metricsRegistry),
      ...docsRoutes(),
      ...(status === undefined ? {} : statusRoutes(status.stats, { clientContentOpen: access === undefined })),
      ...usersDevicesRoutes(deps),
      ...readRoutes(deps),
    },
    chainOf,
  );
  if (access !== undefined) {
    // A path that needs less than an admin key needs no more for another method or below it (a 404
    // then); anything else no route took needs an admin key (default deny).
    for (const route of Object.values(ROUTES) as Route[]) {
      if (route.scope === 'admin' || route.scope === 'ingest') continue;
      for (const path of [route.path].flat()) if (path !== '/') app.use(path, access(route));
    }
    app.use(access({ scope: 'admin' }));
  }
  app.use(notFoundHandler);
  app.use(errorHandler);
  return app;
}
