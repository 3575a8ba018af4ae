import express, { Router } from 'express';
import type { MetricIntake } from '../ingest/intake';
import { assertJson, assertNdjson, decodedBody } from './body-source';
import { waitParam } from './wait-param';

export interface MetricsRoutesOptions {
  readonly intake: MetricIntake;
  readonly metricMaxBytes: number;
}

export function metricsRoutes({ intake, metricMaxBytes }: MetricsRoutesOptions): Router {
  const router = Router();

  router.post(
    '/v1/metrics',
    (req, _res, next) => {
      assertJson(req);
      next();
    },
    express.json({ limit: metricMaxBytes, strict: false }),
    async (req, res) => {
      const result = await intake.acceptOne(req.body, waitParam(req));
      res.status(result.status).json(result.body);
    },
  );

  router.post('/v1/metrics/bulk', async (req, res) => {
    assertNdjson(req);
    const wait = waitParam(req);
    const body = await intake.acceptBulk(decodedBody(req), wait);
    res.status(wait ? 200 : 202).json(body);
  });

  return router;
}
