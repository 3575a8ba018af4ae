import pg from 'pg';
import type { Logger } from 'pino';

export function createPool(connectionString: string, max: number, logger: Logger): pg.Pool {
  const pool = new pg.Pool({
    connectionString,
    max,
    application_name: 'metrics-gateway',
    // Never wait forever for a connection: a request should get 503, not hang, when PostgreSQL is gone.
    connectionTimeoutMillis: 5000,
    idleTimeoutMillis: 30_000,
  });
  // An idle client that loses its connection emits here; without a listener the process would crash.
  pool.on('error', (error) => logger.warn({ err: error }, 'idle PostgreSQL connection failed'));
  // So does a checked-out client between two queries (say, PostgreSQL was shut down): the pool only
  // listens while a client is idle. The failure surfaces again at the client's next query.
  pool.on('connect', (client) => {
    client.on('error', (error) => logger.warn({ err: error }, 'PostgreSQL connection failed'));
  });
  return pool;
}
