import type { RequestHandler } from 'express';
import { AppError } from '../contract/errors';
import { hasBody } from './body-deadline';
import { sendError } from './error-handler';

/** How often a request past its deadline is looked at again while its body is still arriving. */
const BODY_RECHECK_MS = 250;

/**
 * The backstop behind the limits on each database call (db/pool.ts): a request not answered within
 * `deadlineMs` gets 503 with Retry-After, whatever it is waiting for. The work it started may still
 * finish; its late answer is dropped (error-handler.ts). A request whose small body is still arriving
 * is the client's delay, not ours: it is left to its body deadline (body-deadline.ts, 408), and
 * answered here only once the body is whole. Bulk uploads stream for as long as their body arrives
 * and are exempt (noRequestDeadline, which their route puts first); each of their database calls is
 * bounded all the same.
 */
export function requestDeadline(deadlineMs: number): RequestHandler {
  return (req, res, next) => {
    const bodyExpected = hasBody(req);
    let timer: NodeJS.Timeout;
    const expire = (): void => {
      if (res.headersSent) return;
      if (bodyExpected && !req.complete) {
        timer = setTimeout(expire, BODY_RECHECK_MS);
        return;
      }
      sendError(
        res,
        new AppError('unavailable', `the request could not be answered within ${deadlineMs} ms; retry later`),
      );
    };
    timer = setTimeout(expire, deadlineMs);
    const clear = (): void => clearTimeout(timer);
    res.locals.clearRequestDeadline = clear;
    res.once('finish', clear);
    res.once('close', clear);
    next();
  };
}

/** Lifts the request deadline from the route that this is put first on (the bulk upload). */
export const noRequestDeadline: RequestHandler = (_req, res, next) => {
  (res.locals.clearRequestDeadline as (() => void) | undefined)?.();
  next();
};
