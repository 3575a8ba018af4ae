import express, { type Express, type RequestHandler } from 'express';
import type { Pool } from 'pg';
import { pinoHttp } from 'pino-http';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { IntakeOptions, MetricIntake } from '../ingest/intake';
import type { ReferenceCache } from '../ingest/references';
import { adminRoutes } from './admin-routes';
import type { BodyLimits } from './body-source';
import { docsRoutes } from './docs-routes';
import { errorHandler, notFoundHandler } from './error-handler';
import { healthRoutes, type ReadinessCheck } from './health-routes';
import { metricsRoutes } from './metrics-routes';
import { prometheusRoutes } from './prometheus-routes';
import { readRoutes } from './read-routes';

export interface AppDependencies {
  readonly logger: Logger;
  readonly pool: Pool;
  readonly intake: MetricIntake;
  readonly references: ReferenceCache;
  readonly readiness: ReadinessCheck;
  readonly metricMaxBytes: number;
  /** API key checks (access-control.ts), run before every route; none when AUTH_REQUIRED=false. */
  readonly accessControl?: RequestHandler;
  /** Limits on a bulk upload's body; none when unset. */
  readonly bulkBodyLimits?: BodyLimits;
  /** Served at GET /metrics. */
  readonly metricsRegistry: Registry;
  /** Observes single metrics refused before they reach the intake (not JSON, too large), for metrics. */
  readonly onRefused?: IntakeOptions['onRefused'];
}

/** The Express application, without a listening server. */
export function createApp(deps: AppDependencies): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('query parser', 'simple');
  app.use(
    pinoHttp({
      logger: deps.logger,
      customLogLevel: (_req, res, error) => (error !== undefined || res.statusCode >= 500 ? 'error' : 'info'),
      autoLogging: { ignore: (req) => req.url === '/healthz' || req.url === '/readyz' || req.url === '/metrics' },
    }),
  );
  if (deps.accessControl !== undefined) app.use(deps.accessControl);
  app.use(healthRoutes(deps.readiness));
  app.use(prometheusRoutes(deps.metricsRegistry));
  app.use(docsRoutes());
  app.use(
    metricsRoutes({
      intake: deps.intake,
      metricMaxBytes: deps.metricMaxBytes,
      bulkBodyLimits: deps.bulkBodyLimits,
      onRefused: deps.onRefused,
    }),
  );
  app.use(adminRoutes({ pool: deps.pool, references: deps.references }));
  app.use(readRoutes({ pool: deps.pool }));
  app.use(notFoundHandler);
  app.use(errorHandler);
  return app;
}
