import express, { type Express, type RequestHandler } from 'express';
import type { Pool } from 'pg';
import { pinoHttp } from 'pino-http';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { IntakeOptions, MetricIntake } from '../ingest/intake';
import type { ReferenceCache } from '../ingest/references';
import { adminRoutes } from './admin-routes';
import { smallBodyDeadline } from './body-deadline';
import { bulkUploadLimit } from './bulk-upload-limit';
import type { BodyLimits } from './body-source';
import { docsRoutes } from './docs-routes';
import { errorHandler, notFoundHandler } from './error-handler';
import { healthRoutes, type ReadinessCheck } from './health-routes';
import { metricsRoutes } from './metrics-routes';
import { prometheusRoutes } from './prometheus-routes';
import { readRoutes } from './read-routes';
import { requestDeadline } from './request-deadline';
import { securityHeaders } from './security-headers';
import { rejectionRecorder, statusRoutes } from './status-routes';
import type { IngestStats } from '../telemetry/ingest-stats';
import type { RecentRejections } from '../telemetry/recent-rejections';

export interface AppDependencies {
  readonly logger: Logger;
  /** The request pool (db/pool.ts), whose calls are bounded by parts of `requestDeadlineMs`. */
  readonly pool: Pool;
  readonly intake: MetricIntake;
  readonly references: ReferenceCache;
  readonly readiness: ReadinessCheck;
  readonly metricMaxBytes: number;
  /** API key checks (access-control.ts), run before every route; none when AUTH_REQUIRED=false. */
  readonly accessControl?: RequestHandler;
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
  app.use(
    pinoHttp({
      logger: deps.logger,
      customLogLevel: (_req, res, error) => (error !== undefined || res.statusCode >= 500 ? 'error' : 'info'),
      // The status page polls /v1/stats every second or two.
      autoLogging: {
        ignore: (req) =>
          req.url === '/healthz' || req.url === '/readyz' || req.url === '/metrics' || req.url === '/v1/stats',
      },
    }),
  );
  if (deps.requestDeadlineMs !== undefined) app.use(requestDeadline(deps.requestDeadlineMs));
  if (deps.accessControl !== undefined) app.use(deps.accessControl);
  app.use(smallBodyDeadline(deps.bulkBodyLimits?.idleTimeoutMs ?? 0));
  app.use(bulkUploadLimit(deps.bulkMaxConcurrent ?? 0));
  // The ingest routes first: they take nearly all requests, and Express tries routers in order.
  if (deps.status !== undefined) app.use(rejectionRecorder(deps.status.rejections));
  app.use(
    metricsRoutes({
      intake: deps.intake,
      metricMaxBytes: deps.metricMaxBytes,
      bulkBodyLimits: deps.bulkBodyLimits,
      onRefused: deps.onRefused,
    }),
  );
  app.use(healthRoutes(deps.readiness));
  app.use(prometheusRoutes(deps.metricsRegistry));
  app.use(docsRoutes());
  if (deps.status !== undefined) {
    app.use(statusRoutes(deps.status.stats, { clientContentOpen: deps.accessControl === undefined }));
  }
  app.use(adminRoutes({ pool: deps.pool, references: deps.references }));
  app.use(readRoutes({ pool: deps.pool }));
  app.use(notFoundHandler);
  app.use(errorHandler);
  return app;
}
