import { createServer, type Server } from 'node:http';
import type { Express } from 'express';
import type { Config } from '../config';

/**
 * The HTTP server for `app`, with Node's guards against slow clients: the headers must arrive within
 * HEADERS_TIMEOUT_MS and the whole request within REQUEST_TIMEOUT_MS, else Node answers 408 and closes
 * the connection. Node checks these every `connectionsCheckingInterval` (30 s by default, too coarse for
 * timeouts of seconds). A bulk body that stalls is cut off sooner by BODY_IDLE_TIMEOUT_MS (body-source.ts).
 * Past MAX_CONNECTIONS open connections, Node closes each new one at once.
 */
export function createHttpServer(
  app: Express,
  config: Pick<Config, 'headersTimeoutMs' | 'requestTimeoutMs' | 'maxConnections'>,
): Server {
  const server = createServer(
    {
      headersTimeout: config.headersTimeoutMs,
      requestTimeout: config.requestTimeoutMs,
      connectionsCheckingInterval: Math.min(1000, config.headersTimeoutMs),
    },
    app,
  );
  server.maxConnections = config.maxConnections;
  return server;
}
