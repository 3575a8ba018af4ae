import express, { type RequestHandler, type Response } from 'express';
import path from 'node:path';
import type { ErrorDetail } from '../contract/errors';
import { PROJECT_ROOT } from '../paths';
import type { IngestStats } from '../telemetry/ingest-stats';
import type { RecentRejection, RecentRejections } from '../telemetry/recent-rejections';
import { principalOf } from './access-control';
import { pageSecurityPolicy } from './security-headers';

/** The page's files, in the repository (found from dist/ too, and in the Docker image). */
export const STATUS_PAGE_DIR = path.join(PROJECT_ROOT, 'gateway', 'static');

export interface StatusRoutesOptions {
  /**
   * Whether anyone may see what clients sent (the rejection messages): true when AUTH_REQUIRED=false,
   * where everything is open; otherwise only a request with an admin key sees them.
   */
  readonly clientContentOpen: boolean;
}

/** GET / (the live status page), its files under /status/, and GET /v1/stats (what it shows). */
export function statusRoutes(stats: IngestStats, { clientContentOpen }: StatusRoutesOptions) {
  // The page loads only its own files and asks only this gateway: no CDN, no inline script.
  const pagePolicy = pageSecurityPolicy();
  const statusPage: RequestHandler = (_req, res) => {
    res.setHeader('Cache-Control', 'no-cache');
    res.sendFile(path.join(STATUS_PAGE_DIR, 'index.html'));
  };
  const statsHandler: RequestHandler = async (_req, res) => {
    const snapshot = await stats.snapshot({ withMessages: clientContentOpen || principalOf(res)?.scope === 'admin' });
    res.setHeader('Cache-Control', 'no-store');
    res.json(snapshot);
  };
  return {
    statusPage: [pagePolicy, statusPage],
    statusFiles: [pagePolicy, express.static(STATUS_PAGE_DIR, { index: false, redirect: false })],
    stats: statsHandler,
  };
}

// ---- What the ingest endpoints refused, for the page's list of recent rejections ----

interface LineErrorBody {
  readonly line?: unknown;
  readonly error?: unknown;
  readonly details?: unknown;
}

function describe(details: unknown, fallback: string): string {
  if (!Array.isArray(details) || details.length === 0) return fallback;
  return (details as ErrorDetail[])
    .map((detail) => (detail.path ? `${detail.path}: ${detail.message}` : String(detail.message)))
    .join('; ');
}

/** The rejections in an answer of POST /v1/metrics or /v1/metrics/bulk, if it has any. */
export function rejectionsIn(
  endpoint: RecentRejection['endpoint'],
  status: number,
  body: unknown,
  time: string,
  keep: number,
): RecentRejection[] {
  if (body === null || typeof body !== 'object') return [];
  const answer = body as { error?: unknown; message?: unknown; details?: unknown; errors?: unknown };
  // 4xx: the metric or the upload was refused. 503 is not a refusal: the rows may still be committed.
  if (status >= 400 && status < 500 && typeof answer.error === 'string') {
    const lineDetail = Array.isArray(answer.details)
      ? (answer.details as ErrorDetail[]).find((detail) => typeof detail.line === 'number')
      : undefined;
    const message = typeof answer.message === 'string' ? answer.message : answer.error;
    return [
      {
        time,
        endpoint,
        line: endpoint === 'bulk' && lineDetail !== undefined ? (lineDetail.line as number) : null,
        error: answer.error,
        message: endpoint === 'single' ? describe(answer.details, message) : message,
      },
    ];
  }
  // A bulk answer lists its refused lines in line order; the last `keep` are the most recent.
  if (status < 300 && Array.isArray(answer.errors)) {
    return (answer.errors as LineErrorBody[]).slice(-keep).map((lineError) => ({
      time,
      endpoint,
      line: typeof lineError.line === 'number' ? lineError.line : null,
      error: String(lineError.error),
      message: describe(lineError.details, String(lineError.error)),
    }));
  }
  return [];
}

/** Express's own res.json, which the recorder calls once it has looked at the answer. */
const sendJson: Response['json'] = express.response.json;

/**
 * Notes the refusals in the answers of an ingest endpoint, as the client was told them, in
 * `rejections`. It observes answers (res.json) rather than the intake, so that every refusal, from a
 * body that is not JSON to a row refused at flush time, is shown the way the client saw it; the
 * counts by reason come from the Prometheus counters instead.
 */
export function rejectionRecorder(rejections: RecentRejections, endpoint: RecentRejection['endpoint']): RequestHandler {
  // One function for every answer of the route, not a closure per request: this is the hot path.
  const noting = function (this: Response, body: unknown): Response {
    // A single metric's answer below 400 (stored, queued) never holds a refusal.
    if (endpoint === 'bulk' || this.statusCode >= 400) {
      try {
        const time = new Date().toISOString();
        for (const entry of rejectionsIn(endpoint, this.statusCode, body, time, rejections.capacity)) {
          rejections.add(entry);
        }
      } catch (error) {
        this.req.log.warn({ err: error }, 'could not note a rejection for the status page');
      }
    }
    return sendJson.call(this, body);
  };
  return (_req, res, next) => {
    res.json = noting;
    next();
  };
}
