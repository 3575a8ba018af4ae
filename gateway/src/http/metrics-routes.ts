import express, { Router, type NextFunction, type RequestHandler } from 'express';
import type { IntakeOptions, MetricIntake } from '../ingest/intake';
import { assertJson, assertNdjson, decodedBody, type BodyLimits } from './body-source';
import { toAppError } from './error-handler';
import { waitParam } from './wait-param';

export interface MetricsRoutesOptions {
  readonly intake: MetricIntake;
  readonly metricMaxBytes: number;
  readonly bulkBodyLimits?: BodyLimits;
  /** Observes a single metric refused before it reaches the intake, which counts the rest. */
  readonly onRefused?: IntakeOptions['onRefused'];
}

export function metricsRoutes({ intake, metricMaxBytes, bulkBodyLimits, onRefused }: MetricsRoutesOptions): Router {
  const router = Router();
  /** Tells onRefused of a single metric that `step` refuses before the intake sees it (it counts the rest). */
  const reportingRefusals =
    (step: RequestHandler): RequestHandler =>
    (req, res, next) => {
      const done: NextFunction = (error?: unknown) => {
        if (error !== undefined && error !== 'route' && error !== 'router') {
          onRefused?.(1, toAppError(error).code, 'single');
        }
        next(error);
      };
      try {
        step(req, res, done);
      } catch (error) {
        done(error);
      }
    };

  router.post(
    '/v1/metrics',
    reportingRefusals((req, _res, next) => {
      assertJson(req);
      next();
    }),
    reportingRefusals(express.json({ limit: metricMaxBytes, strict: false })),
    async (req, res) => {
      const result = await intake.acceptOne(req.body, waitParam(req) ? 'stored' : 'queued');
      res.status(result.status).json(result.body);
    },
  );

  router.post('/v1/metrics/bulk', async (req, res) => {
    assertNdjson(req);
    const wait = waitParam(req);
    const body = await intake.acceptBulk(decodedBody(req, bulkBodyLimits), wait ? 'stored' : 'queued');
    res.status(wait ? 200 : 202).json(body);
  });

  return router;
}
