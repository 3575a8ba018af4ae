import express, { type Express } from 'express';
import type { Pool } from 'pg';
import { pinoHttp } from 'pino-http';
import type { Logger } from 'pino';
import type { MetricIntake } from '../ingest/intake';
import type { ReferenceCache } from '../ingest/references';
import { adminRoutes } from './admin-routes';
import { errorHandler, notFoundHandler } from './error-handler';
import { healthRoutes, type ReadinessCheck } from './health-routes';
import { metricsRoutes } from './metrics-routes';

export interface AppDependencies {
  readonly logger: Logger;
  readonly pool: Pool;
  readonly intake: MetricIntake;
  readonly references: ReferenceCache;
  readonly readiness: ReadinessCheck;
  readonly metricMaxBytes: number;
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
      autoLogging: { ignore: (req) => req.url === '/healthz' || req.url === '/readyz' },
    }),
  );
  app.use(healthRoutes(deps.readiness));
  app.use(metricsRoutes({ intake: deps.intake, metricMaxBytes: deps.metricMaxBytes }));
  app.use(adminRoutes({ pool: deps.pool, references: deps.references }));
  app.use(notFoundHandler);
  app.use(errorHandler);
  return app;
}
