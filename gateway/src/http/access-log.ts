import type { Express, Request, RequestHandler, Response } from 'express';
import type { Logger } from 'pino';
import type { AccessLogPolicy } from '../config';

declare module 'express-serve-static-core' {
  interface Request {
    /**
     * This request's logger: the root logger with the request bound (`req`, and `apiKey` once a key is
     * known). Made on first use, so that a request that logs nothing costs nothing.
     */
    log: Logger;
    /**
     * A number per logged request, counting from 1 in each process: `req.id` in its log lines. Given
     * when the request is first logged, so that the requests that are never logged cost nothing.
     */
    id?: number;
  }
}

/**
 * How a route's requests are logged: `every` one (admin and read routes), only the `exceptions`
 * (ingest routes, called per event by whole fleets: a line each would cost more than the route) unless
 * ACCESS_LOG=all, or `none` (probes and pollers).
 */
export type RouteLogging = 'every' | 'exceptions' | 'none';

export interface AccessLogOptions {
  readonly logger: Logger;
  readonly policy: AccessLogPolicy;
  /** A request on an `exceptions` route that takes this long (ms) is logged whatever its answer. */
  readonly slowMs: number;
  /**
   * Told of every request once it ends, logged or not: the route's path as declared (`unmatched` for a
   * request no route took) and the status answered (none when the client went away unanswered).
   */
  readonly onEnded?: (route: string, status: number | undefined) => void;
}

const STARTED_AT = Symbol('access log: started at');
const ROUTE_LOGGING = Symbol('access log: route logging');
const ROUTE_PATH = Symbol('access log: route path');
const LOGGER = Symbol('access log: request logger');
const API_KEY = Symbol('access log: api key name');

interface Marked {
  [STARTED_AT]?: number;
  [ROUTE_LOGGING]?: RouteLogging;
  [ROUTE_PATH]?: string;
  [LOGGER]?: Logger;
  [API_KEY]?: string;
}

/**
 * Gives every request of `app` its lazy `req.log` (and `req.id`), and returns the middleware, put before
 * any route, that writes one line per request as ACCESS_LOG and the route's logging (`observedAs`) say:
 * `request completed` at info, `request errored` at error for a 5xx, `request aborted` at info when the
 * client went away unanswered, each with `req` (id, method, url, headers, remote address and port),
 * `res` (statusCode, headers) and `responseTime` (ms), as pino-http wrote them.
 */
export function accessLog(app: Express, { logger, policy, slowMs, onEnded }: AccessLogOptions): RequestHandler {
  let lastId = 0;
  Object.defineProperty(app.request, 'log', {
    configurable: true,
    get(this: Request & Marked): Logger {
      if (this[LOGGER] !== undefined) return this[LOGGER];
      lastId = (lastId % 2_147_483_647) + 1;
      this.id ??= lastId;
      return (this[LOGGER] = logger.child({
        req: requestFields(this),
        ...(this[API_KEY] === undefined ? {} : { apiKey: this[API_KEY] }),
      }));
    },
    set(this: Request & Marked, value: Logger) {
      this[LOGGER] = value;
    },
  });
  function onClose(this: Response & Marked): void {
    const req = this.req;
    const answered = this.writableFinished;
    const status = answered ? this.statusCode : undefined;
    const responseTime = Date.now() - (this[STARTED_AT] ?? 0);
    const routeLogging = this[ROUTE_LOGGING] ?? 'every';
    onEnded?.(this[ROUTE_PATH] ?? UNMATCHED, status);
    if (policy === 'off' || routeLogging === 'none') return;
    if (policy === 'errors' && routeLogging === 'exceptions') {
      if (answered && (status as number) < 400 && responseTime < slowMs) return;
    }
    const res = { statusCode: status ?? null, headers: this.getHeaders() };
    if (status !== undefined && status >= 500) req.log.error({ res, responseTime }, 'request errored');
    else req.log.info({ res, responseTime }, answered ? 'request completed' : 'request aborted');
  }

  return (_req, res, next) => {
    (res as Response & Marked)[STARTED_AT] = Date.now();
    // 'close' comes after 'finish' when answered, or alone when the client went away first.
    res.on('close', onClose);
    next();
  };
}

/** The route of a request that no route took, in `onEnded`. */
export const UNMATCHED = 'unmatched';

/**
 * First on a route's chain: its requests are logged as `logging` says (see RouteLogging) and reported
 * to `onEnded` under `path`.
 */
export function observedAs(path: string, logging: RouteLogging): RequestHandler {
  return (_req, res, next) => {
    const marked = res as Response & Marked;
    marked[ROUTE_LOGGING] = logging;
    marked[ROUTE_PATH] = path;
    next();
  };
}

/** The API key a request came with, by name (never the key): in its log lines from now on. */
export function nameApiKey(req: Request, name: string): void {
  const marked = req as Request & Marked;
  marked[API_KEY] = name;
  marked[LOGGER]?.setBindings({ apiKey: name });
}

function requestFields(req: Request) {
  return {
    id: req.id,
    method: req.method,
    url: req.originalUrl,
    query: req.query,
    params: req.params,
    headers: req.headers,
    remoteAddress: req.socket.remoteAddress,
    remotePort: req.socket.remotePort,
  };
}
