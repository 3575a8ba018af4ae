import type { NextFunction, RequestHandler } from 'express';
import type { IntakeOptions, MetricIntake } from '../ingest/intake';
import { assertNdjson, decodedBody, type BodyLimits } from './body-source';
import { toAppError } from './error-handler';
import type { RouteHandlers } from './routes';
import { waitParam } from './wait-param';

export interface IngestRoutesOptions {
  readonly intake: MetricIntake;
  readonly bulkBodyLimits?: BodyLimits;
  /** Observes a single metric refused before it reaches the intake, which counts the rest. */
  readonly onRefused?: IntakeOptions['onRefused'];
}

/**
 * Tells `onRefused` of a single metric that `step` (a part of its route's chain: the JSON body's
 * checks) refuses before the intake sees it; the intake counts the rest.
 */
export function reportingRefusals(step: RequestHandler, onRefused: IntakeOptions['onRefused']): RequestHandler {
  return (req, res, next) => {
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
}

/** POST /v1/metrics (its body parsed by the route's chain, app.ts) and POST /v1/metrics/bulk. */
export function ingestRoutes({ intake, bulkBodyLimits }: IngestRoutesOptions) {
  return {
    postMetric: async (req, res) => {
      const result = await intake.acceptOne(req.body, waitParam(req) ? 'stored' : 'queued');
      res.status(result.status).json(result.body);
    },
    postMetricsBulk: async (req, res) => {
      assertNdjson(req);
      const wait = waitParam(req);
      const body = await intake.acceptBulk(decodedBody(req, bulkBodyLimits), wait ? 'stored' : 'queued');
      res.status(wait ? 200 : 202).json(body);
    },
  } satisfies RouteHandlers;
}
