import type { Request, RequestHandler } from 'express';
import { AppError } from '../contract/errors';
import { sendError } from './error-handler';

/** Node marks a request without Content-Length or Transfer-Encoding (a GET) as having no body. */
export function hasBody(req: Request): boolean {
  return req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
}

/**
 * A small body (one metric, a user, a device) must arrive whole within `timeoutMs`, or the request gets
 * 408 and its connection is closed: a client sending a byte now and then cannot hold a connection.
 * Bulk bodies may stream for as long as they keep sending (their idle timeout is in body-source.ts),
 * which is why Node's whole-request timeout is off by default, and why app.ts puts this before every
 * route but the bulk upload.
 */
export function smallBodyDeadline(timeoutMs: number): RequestHandler {
  return (req, res, next) => {
    if (timeoutMs === 0 || !hasBody(req) || req.complete) {
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
