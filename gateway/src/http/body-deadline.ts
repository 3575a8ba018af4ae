import type { RequestHandler } from 'express';
import { AppError } from '../errors';
import { sendError } from './error-handler';
import { routePath } from './route-path';

export const BULK_PATH = '/v1/metrics/bulk';

/**
 * A small body (one metric, a user, a device) must arrive whole within `timeoutMs`, or the request gets
 * 408 and its connection is closed: a client sending a byte now and then cannot hold a connection.
 * Bulk bodies may stream for as long as they keep sending (their idle timeout is in body-source.ts),
 * which is why Node's whole-request timeout is off by default.
 */
export function smallBodyDeadline(timeoutMs: number): RequestHandler {
  return (req, res, next) => {
    // Node marks a request without Content-Length or Transfer-Encoding (a GET) as having no body.
    const hasBody = req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
    if (timeoutMs === 0 || !hasBody || req.complete || routePath(req.path) === BULK_PATH) {
      next();
      return;
    }
    const timer = setTimeout(() => {
      if (req.complete || res.headersSent) return;
      res.setHeader('Connection', 'close');
      sendError(res, new AppError('request_timeout', `the body did not arrive within ${timeoutMs} ms`));
      res.once('finish', () => req.socket.destroy());
    }, timeoutMs);
    const clear = (): void => clearTimeout(timer);
    req.once('end', clear);
    req.once('close', clear);
    res.once('finish', clear);
    next();
  };
}
